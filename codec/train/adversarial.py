"""Adversarial training: multi-scale complex-STFT and multi-period discriminators, and their losses.

Spectral losses compare magnitudes only, so they leave the decoder free to choose
any phase; the shipped model's output is almost uncorrelated with its reference
(SI-SDR about -20 dB, benchmarks/bottleneck.py). A discriminator
that sees the real and imaginary parts of the STFT at several resolutions judges
phase as well as magnitude, and its feature-matching loss gives the decoder a
dense, learned distance to the real signal. Off unless the config sets ``adversarial``.
Period discriminators (HiFi-GAN's) add judges of the waveform itself, folded at a
few periods so that each sees it sampled every p samples at each of p offsets: fine
time structure that magnitude spectra average away; off unless the config gives
``discriminator_periods``.

Losses are the hinge form: the discriminator pushes real logits above 1 and
decoded ones below -1; the decoder pushes its logits above 1 and matches each
discriminator layer's features on real audio (L1, relative to their mean size).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.parametrizations import weight_norm

# One discriminator output: the logits map and the feature maps before it.
Judgement = tuple[torch.Tensor, list[torch.Tensor]]


def judge(x: torch.Tensor, layers: nn.ModuleList, logits: nn.Module) -> Judgement:
    """Leaky-ReLU convolutions over ``x [B, C, H, W]``, keeping each layer's output as a feature."""
    features = []
    for conv in layers:
        x = F.leaky_relu(conv(x), 0.2)
        features.append(x)
    return logits(x), features


class STFTDiscriminator(nn.Module):
    """Judges one STFT resolution: ``[B, 1, N] -> (logits [B, 1, T', F'], features)``.

    The spectrogram enters as two channels (real, imaginary) over (time, frequency),
    its magnitudes raised to ``magnitude_exponent`` with the phase kept. Raw, speech
    at -20 dBFS gives bins of about 0.003 (median), some 30 times smaller than the first
    layer's initial biases, so the discriminator starts almost blind and its logits
    barely move (benchmarks/discriminator.py); compressed by 0.3, the same bins are about
    0.2, and quiet high-frequency bins count as well as loud low ones. Even so, the raw
    spectrum (1, the default) is what raised PESQ-WB in fine-tuning, and 0.3 lowered it
    (TrainConfig.discriminator_magnitude_exponent).
    Convolutions dilate along time (1, 2, 4) to see a few tens of milliseconds and
    halve the frequency axis at each of those layers.
    """

    def __init__(self, window: int, channels: int = 32, magnitude_exponent: float = 1.0) -> None:
        super().__init__()
        self.window = window
        self.magnitude_exponent = magnitude_exponent
        self.register_buffer("hann", torch.hann_window(window), persistent=False)
        layers = [nn.Conv2d(2, channels, (3, 9), padding=(1, 4))]
        for dilation in (1, 2, 4):
            layers.append(nn.Conv2d(channels, channels, (3, 9), stride=(1, 2),
                                    dilation=(dilation, 1), padding=(dilation, 4)))
        layers.append(nn.Conv2d(channels, channels, (3, 3), padding=(1, 1)))
        self.layers = nn.ModuleList(weight_norm(conv) for conv in layers)
        self.logits = weight_norm(nn.Conv2d(channels, 1, (3, 3), padding=(1, 1)))

    def spectrum(self, wav: torch.Tensor) -> torch.Tensor:
        """``[B, 1, N] -> [B, 2, T, F]``: the compressed spectrum as (real, imaginary) channels."""
        spec = torch.stft(wav[:, 0].float(), self.window, self.window // 4, window=self.hann,
                          normalized=True, return_complex=True)         # [B, F, T]
        if self.magnitude_exponent != 1:
            # |X| ** (exponent - 1), smoothed below |X| = 1e-4 so that its gradient stays bounded
            spec = spec * (spec.real.square() + spec.imag.square() + 1e-8).pow((self.magnitude_exponent - 1) / 2)
        return torch.view_as_real(spec).permute(0, 3, 2, 1)

    def forward(self, wav: torch.Tensor) -> Judgement:
        return judge(self.spectrum(wav), self.layers, self.logits)


class PeriodDiscriminator(nn.Module):
    """Judges the waveform folded at one period: ``[B, 1, N] -> (logits [B, 1, T', p], features)``.

    The signal is cut into rows of ``period`` samples, ``[B, 1, N / period, period]``, and
    convolved down the rows only (kernels ``(5, 1)``): column j is the waveform sampled
    every ``period`` samples from offset j, and each is judged by the same filters. So the
    judge sees the waveform's shape, which a decoder with free phase gets wrong and
    magnitude spectra cannot see, at a resolution of ``period`` samples and consistently
    across offsets. Strides of 3 down the rows widen each logit's view to 647 rows:
    81 ms at period 2, 445 ms at period 11.
    """

    def __init__(self, period: int, channels: int = 32) -> None:
        super().__init__()
        self.period = period
        widths = [1, channels, 2 * channels, 4 * channels, 4 * channels]
        layers = [nn.Conv2d(c_in, c_out, (5, 1), stride=(3, 1), padding=(2, 0))
                  for c_in, c_out in zip(widths[:-1], widths[1:])]
        layers.append(nn.Conv2d(widths[-1], widths[-1], (5, 1), padding=(2, 0)))
        self.layers = nn.ModuleList(weight_norm(conv) for conv in layers)
        self.logits = weight_norm(nn.Conv2d(widths[-1], 1, (3, 1), padding=(1, 0)))

    def fold(self, wav: torch.Tensor) -> torch.Tensor:
        """``[B, 1, N] -> [B, 1, ceil(N / period), period]``, reflect-padded to whole rows."""
        pad = -wav.shape[-1] % self.period
        if pad:
            wav = F.pad(wav, (0, pad), mode="reflect")
        return wav.float().reshape(wav.shape[0], 1, -1, self.period)

    def forward(self, wav: torch.Tensor) -> Judgement:
        return judge(self.fold(wav), self.layers, self.logits)


class Discriminator(nn.Module):
    """Every judge of adversarial training: ``[B, 1, N] -> [Judgement] * (len(windows) + len(periods))``.

    One ``STFTDiscriminator`` per window length (short windows see onsets and pitch
    pulses, long ones harmonics), then one ``PeriodDiscriminator`` per period (best
    coprime, as HiFi-GAN's 2, 3, 5, 7, 11, so that no judge's samples are a subset of
    another's).
    """

    def __init__(self, windows: tuple[int, ...] = (2048, 1024, 512, 256, 128), channels: int = 32,
                 magnitude_exponent: float = 1.0, periods: tuple[int, ...] = ()) -> None:
        super().__init__()
        self.scales = nn.ModuleList(STFTDiscriminator(w, channels, magnitude_exponent) for w in windows)
        self.period_judges = nn.ModuleList(PeriodDiscriminator(p, channels) for p in periods)

    def forward(self, wav: torch.Tensor) -> list[Judgement]:
        return [member(wav) for member in (*self.scales, *self.period_judges)]


def discriminator_loss(real: list[Judgement], decoded: list[Judgement]) -> torch.Tensor:
    """Hinge loss, mean over judges: 2 when every logit is 0, 0 once real > 1 and decoded < -1."""
    total = sum(F.relu(1 - r).mean() + F.relu(1 + d).mean() for (r, _), (d, _) in zip(real, decoded))
    return total / len(real)


def generator_losses(real: list[Judgement], decoded: list[Judgement]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(adversarial, feature matching)``, each a mean over judges (and layers).

    ``real`` should carry no gradient; the feature distance of each layer is
    divided by the mean magnitude of its real features, so all layers count alike.
    """
    adversarial = sum(F.relu(1 - d).mean() for d, _ in decoded) / len(decoded)
    matching, count = 0, 0
    for (_, real_features), (_, decoded_features) in zip(real, decoded):
        for r, d in zip(real_features, decoded_features):
            matching = matching + (r - d).abs().mean() / r.abs().mean().clamp_min(1e-8)
            count += 1
    return adversarial, matching / count
