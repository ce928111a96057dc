"""The discriminator and the hinge and feature-matching losses of adversarial training."""

from __future__ import annotations

import math

import pytest
import torch

from codec.train.adversarial import MultiScaleSTFTDiscriminator, discriminator_loss, generator_losses


def small_discriminator() -> MultiScaleSTFTDiscriminator:
    torch.manual_seed(0)
    return MultiScaleSTFTDiscriminator(windows=(512, 128), channels=8)


def test_each_scale_judges_time_and_frequency_and_returns_its_features():
    judged = small_discriminator()(torch.randn(3, 1, 8000))
    assert len(judged) == 2
    for (logits, features), window in zip(judged, (512, 128)):
        frames, bins = 8000 // (window // 4) + 1, window // 2 + 1
        assert logits.shape == (3, 1, frames, math.ceil(bins / 8))     # frequency halved three times
        assert len(features) == 5 and features[0].shape == (3, 8, frames, bins)


def test_the_spectrum_is_compressed_in_magnitude_with_its_phase_kept():
    # Raw, speech bins are far smaller than the first layer's biases; compressed by 0.3,
    # a signal 100 times quieter is only 100 ** 0.3 = 4 times smaller, in the same phase.
    scale = MultiScaleSTFTDiscriminator(windows=(512,), channels=8, magnitude_exponent=0.3).scales[0]
    wav = torch.randn(2, 1, 4000) * 0.5
    loud = torch.view_as_complex(scale.spectrum(wav).permute(0, 3, 2, 1).contiguous())
    quiet = torch.view_as_complex(scale.spectrum(wav / 100).permute(0, 3, 2, 1).contiguous())
    audible = quiet.abs() > 2e-3 ** 0.3               # |X| > 2e-3: far above the 1e-4 smoothing floor
    assert audible.float().mean() > 0.5
    torch.testing.assert_close((loud.abs() / quiet.abs())[audible], torch.full_like(quiet.abs()[audible], 100 ** 0.3),
                               rtol=2e-3, atol=0)
    assert (loud * quiet.conj()).angle()[audible].abs().max() < 1e-3
    raw = MultiScaleSTFTDiscriminator(windows=(512,), channels=8).scales[0]       # the default: raw
    torch.testing.assert_close(raw.spectrum(wav / 100), raw.spectrum(wav) / 100)
    silence = torch.zeros(1, 1, 4000, requires_grad=True)
    scale.spectrum(silence).sum().backward()
    assert torch.isfinite(silence.grad).all()


def test_hinge_losses_at_their_reference_points():
    def judgement(value: float) -> list:
        return [(torch.full((2, 1, 4, 4), value), [torch.full((2, 3, 4, 4), value)])]
    assert float(discriminator_loss(judgement(0.0), judgement(0.0))) == pytest.approx(2.0)
    assert float(discriminator_loss(judgement(1.5), judgement(-1.5))) == 0.0       # confident and right
    assert float(discriminator_loss(judgement(-1.0), judgement(1.0))) == pytest.approx(4.0)
    adversarial, matching = generator_losses(judgement(2.0), judgement(2.0))
    assert float(adversarial) == 0.0 and float(matching) == 0.0
    adversarial, matching = generator_losses(judgement(2.0), judgement(-1.0))
    assert float(adversarial) == pytest.approx(2.0)
    assert float(matching) == pytest.approx(1.5)                                  # |2 - (-1)| / |2|


def test_discriminator_learns_to_tell_real_from_decoded_and_its_losses_reach_the_decoder():
    discriminator = small_discriminator()
    t = torch.arange(4000) / 16000
    real = torch.sin(2 * math.pi * 220 * t).expand(4, 1, -1) * torch.linspace(0.2, 1, 4)[:, None, None]
    decoded = torch.nn.Parameter(real + 0.3 * torch.randn(real.shape, generator=torch.Generator().manual_seed(1)))
    optimizer = torch.optim.Adam(discriminator.parameters(), lr=1e-3)
    losses = []
    for _ in range(30):
        loss = discriminator_loss(discriminator(real), discriminator(decoded.detach()))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]

    with torch.no_grad():
        judged_real = discriminator(real)
    adversarial, matching = generator_losses(judged_real, discriminator(decoded))
    (adversarial + matching).backward()
    assert decoded.grad is not None and decoded.grad.abs().sum() > 0


def test_the_trainer_builds_the_discriminator_the_config_asks_for():
    from codec.train.config import TrainConfig
    from codec.train.train import build_adversary

    config = TrainConfig.from_dict({"adversarial": True, "discriminator_channels": 4,
                                    "discriminator_windows": [256], "discriminator_magnitude_exponent": 0.5})
    (scale,) = build_adversary(config, torch.device("cpu")).discriminator.scales
    assert scale.magnitude_exponent == 0.5 and scale.window == 256
    assert TrainConfig().discriminator_magnitude_exponent == 1.0
