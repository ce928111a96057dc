"""The discriminator and the hinge and feature-matching losses of adversarial training."""

from __future__ import annotations

import math

import pytest
import torch

from codec.train.adversarial import Discriminator, PeriodDiscriminator, discriminator_loss, generator_losses


def small_discriminator(windows: tuple[int, ...] = (512, 128), periods: tuple[int, ...] = ()) -> Discriminator:
    torch.manual_seed(0)
    return Discriminator(windows, channels=8, periods=periods)


def test_each_scale_judges_time_and_frequency_and_returns_its_features():
    judged = small_discriminator()(torch.randn(3, 1, 8000))
    assert len(judged) == 2
    for (logits, features), window in zip(judged, (512, 128)):
        frames, bins = 8000 // (window // 4) + 1, window // 2 + 1
        assert logits.shape == (3, 1, frames, math.ceil(bins / 8))     # frequency halved three times
        assert len(features) == 5 and features[0].shape == (3, 8, frames, bins)


def test_a_period_judge_folds_the_waveform_into_rows_one_period_long():
    judge = PeriodDiscriminator(5, channels=4)
    wav = torch.randn(2, 1, 8003)                      # not a whole number of periods: padded
    folded = judge.fold(wav)
    assert folded.shape == (2, 1, 1601, 5)
    torch.testing.assert_close(folded[:, 0, 7], wav[:, 0, 35:40])      # row k is samples 5k .. 5k + 4
    cycle = torch.randn(5)
    periodic = judge.fold(cycle.repeat(400).expand(1, 1, -1))
    torch.testing.assert_close(periodic[0, 0], cycle.expand(400, 5))    # a 5-periodic signal: equal rows
    logits, features = judge(wav)
    assert len(features) == 5 and features[0].shape == (2, 4, 534, 5)   # stride 3 down the rows only
    assert logits.shape == (2, 1, 1601 // 81 + 1, 5)


def test_the_discriminator_has_one_judge_per_window_and_per_period():
    judged = small_discriminator(periods=(2, 3))(torch.randn(1, 1, 4000))
    assert len(judged) == 4
    assert [logits.shape[-1] for logits, _ in judged[2:]] == [2, 3]


def test_the_spectrum_is_compressed_in_magnitude_with_its_phase_kept():
    # Raw, speech bins are far smaller than the first layer's biases; compressed by 0.3,
    # a signal 100 times quieter is only 100 ** 0.3 = 4 times smaller, in the same phase.
    scale = Discriminator(windows=(512,), channels=8, magnitude_exponent=0.3).scales[0]
    wav = torch.randn(2, 1, 4000) * 0.5
    loud = torch.view_as_complex(scale.spectrum(wav).permute(0, 3, 2, 1).contiguous())
    quiet = torch.view_as_complex(scale.spectrum(wav / 100).permute(0, 3, 2, 1).contiguous())
    audible = quiet.abs() > 2e-3 ** 0.3               # |X| > 2e-3: far above the 1e-4 smoothing floor
    assert audible.float().mean() > 0.5
    torch.testing.assert_close((loud.abs() / quiet.abs())[audible], torch.full_like(quiet.abs()[audible], 100 ** 0.3),
                               rtol=2e-3, atol=0)
    assert (loud * quiet.conj()).angle()[audible].abs().max() < 1e-3
    raw = Discriminator(windows=(512,), channels=8).scales[0]       # the default: raw
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


@pytest.mark.parametrize("windows, periods, lr", [((512, 128), (), 1e-3), ((), (2, 3), 3e-3)], ids=["stft", "period"])
def test_discriminator_learns_to_tell_real_from_decoded_and_its_losses_reach_the_decoder(windows, periods, lr):
    discriminator = small_discriminator(windows, periods)
    t = torch.arange(4000) / 16000
    real = torch.sin(2 * math.pi * 220 * t).expand(4, 1, -1) * torch.linspace(0.2, 1, 4)[:, None, None]
    decoded = torch.nn.Parameter(real + 0.3 * torch.randn(real.shape, generator=torch.Generator().manual_seed(1)))
    optimizer = torch.optim.Adam(discriminator.parameters(), lr=lr)
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

    def generator_loss(wav: torch.Tensor) -> torch.Tensor:
        adversarial, matching = generator_losses(judged_real, discriminator(wav))
        return adversarial + matching

    before = generator_loss(decoded)
    before.backward()
    with torch.no_grad():       # a small step down the gradient the decoder would get lowers its loss
        after = generator_loss(decoded - 1e-3 * decoded.grad / decoded.grad.norm())
    assert after < before


def test_the_trainer_builds_the_discriminator_the_config_asks_for():
    from codec.train.config import TrainConfig
    from codec.train.train import build_adversary

    config = TrainConfig.from_dict({"adversarial": True, "discriminator_channels": 4,
                                    "discriminator_windows": [256], "discriminator_magnitude_exponent": 0.5,
                                    "discriminator_periods": [3, 7]})
    discriminator = build_adversary(config, torch.device("cpu")).discriminator
    (scale,) = discriminator.scales
    assert scale.magnitude_exponent == 0.5 and scale.window == 256
    assert [judge.period for judge in discriminator.period_judges] == [3, 7]
    assert TrainConfig().discriminator_magnitude_exponent == 1.0 and TrainConfig().discriminator_periods == ()


def test_an_adversarial_step_trains_the_decoder_through_the_judges_and_the_judges_every_step():
    """The decoder's adversarial losses pass through judges frozen for that pass (their weights get
    one gradient per step, their own step's, not a second one to discard); freezing must end with
    that pass, or the judges would stop learning after their first step."""

    from codec.train.config import TrainConfig
    from codec.train.export import training_model
    from codec.train.losses import ReconstructionLoss
    from codec.train.train import build_adversary, build_optimizer, train_mode, train_step

    from .conftest import tiny_config, voiced

    wav = torch.from_numpy(voiced(0.5)).expand(2, 1, -1).contiguous()

    def decoder_after_two_steps(**loss_weights) -> tuple[dict, list[bool]]:
        c = TrainConfig(model=tiny_config(), adversarial=True, discriminator_channels=4,
                        discriminator_windows=(256, 128), warmup_steps=0, batch_size=2, **loss_weights)
        torch.manual_seed(0)
        model = training_model(c)
        train_mode(model, c)
        optimizer = build_optimizer(model, c)
        ema = {name: p.detach().clone() for name, p in model.named_parameters()}
        loss_fn, adversary = ReconstructionLoss(c), build_adversary(c, torch.device("cpu"))
        judge_weights = list(adversary.discriminator.parameters())
        kernels = [p for name, p in adversary.discriminator.named_parameters() if "bias" not in name]
        gradients = [0]
        for p in judge_weights:
            p.register_hook(lambda grad: gradients.__setitem__(0, gradients[0] + 1))
        judges_learnt = []
        for step in range(2):
            before = [p.detach().clone() for p in kernels]
            gradients[0] = 0
            train_step(model, model, loss_fn, optimizer, ema, wav, step, 0, c, adversary)
            # (biases may not move: near chance, the hinge's pulls on a logit's bias cancel)
            judges_learnt.append(all(not torch.equal(b, p) for b, p in zip(before, kernels))
                                 and gradients[0] == len(judge_weights))
        return {k: v.detach().clone() for k, v in model.decoder.state_dict().items()}, judges_learnt

    judged, learnt = decoder_after_two_steps()
    unjudged, _ = decoder_after_two_steps(adversarial_weight=0.0, feature_matching_weight=0.0)
    assert learnt == [True, True]
    assert any(not torch.equal(judged[k], unjudged[k]) for k in judged)
