"""A decoder that works at frame rates and lets an inverse STFT make the samples.

SEANet's decoder (seanet.py) spends most of its work at the sample rate: its last stages
run 32 to 64 channels at 8 and 16 kHz, where a convolution is a thin, memory-bound loop.
This one (after Vocos, Siuzdak 2023, made causal) keeps all its work at 50 and 200 frames
per second, where each layer is one large matrix product: its forward and backward pass
takes a fifth of SEANet's time on the development machine's two cores, for twice the
weights, and it decodes six times faster (docs/experiments.md, "A decoder at frame
rates"). It also states the phase of every bin outright, where SEANet must build the
waveform's fine timing (the pitch pulses, model card "What limits it") out of many
upsampling layers.

Layout, for latent frames ``[B, latent_dim, T]``:

1. a causal convolution to ``widths[0]`` channels, then ``blocks[0]`` ConvNeXt blocks at
   the frame rate;
2. a causal transposed convolution that multiplies the rate by ``upsample`` (50 to 200
   frames per second for speech16k) and sets ``widths[1]`` channels, then ``blocks[1]``
   blocks;
3. a channel norm and a 1x1 convolution to the log-magnitude and phase of each bin of a
   ``window``-sample spectrum, one spectrum per frame;
4. the synthesis: a causal transposed convolution with kernel ``window`` and stride
   ``window // 2`` from each spectrum's real and imaginary parts to samples. It starts as
   the inverse DFT times a Hann window, whose copies at half-window steps add up to one,
   so it starts as an inverse STFT; it trains with the rest.

Why a window of two hops: a spectrum is computed from latent frames up to its own, and the
window of a latent frame's last spectrum reaches one hop past the audio they cover. With the
5 ms hops of speech16k's 200 Hz spectra, the first 5 ms of each 20 ms latent frame's audio are
then half made by the latent frame before; a longer window would hand more of it to spectra
computed before that audio was heard.

Every layer is causal or pointwise, so the decoder streams (stateful.py) like SEANet's.
Shapes: ``[B, latent_dim, T] -> [B, 1, T * hop]``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .conv import CausalConv1d, CausalConvTranspose1d, Residual, history_frames

MAX_LOG_MAGNITUDE = 6.0     # exp(6) ~ 400: far above speech's bins; keeps a wild step from overflowing


class ChannelNorm(nn.Module):
    """Layer norm over the channels of each frame, with a learned scale and shift per channel.

    Shapes: ``[B, C, T] -> [B, C, T]``; pointwise in time, so it streams as it is."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1, channels, 1))
        self.bias = nn.Parameter(torch.zeros(1, channels, 1))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=1, keepdim=True)
        centred = x - mean
        return centred * torch.rsqrt(centred.pow(2).mean(dim=1, keepdim=True) + self.eps) * self.weight + self.bias


class LayerScale(nn.Module):
    """Multiplies each channel by a learned scale that starts small, so that a deep stack of
    residual blocks starts near the identity (ConvNeXt). Shapes: ``[B, C, T] -> [B, C, T]``."""

    def __init__(self, channels: int, initial: float) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.full((1, channels, 1), initial))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


class ConvNeXtBlock(Residual):
    """``x + scale * pointwise(gelu(pointwise(norm(depthwise_k(x)))))``, the depthwise
    convolution causal; the hidden width is three times the block's.

    Shapes: ``[B, C, T] -> [B, C, T]``."""

    def __init__(self, channels: int, kernel_size: int, initial_scale: float) -> None:
        super().__init__()
        self.block = nn.Sequential(
            CausalConv1d(channels, channels, kernel_size, groups=channels),
            ChannelNorm(channels),
            CausalConv1d(channels, 3 * channels, 1),
            nn.GELU(),
            CausalConv1d(3 * channels, channels, 1),
            LayerScale(channels, initial_scale),
        )


class PolarToComplex(nn.Module):
    """``[B, 2F, T]`` log-magnitudes (first F channels) and phases (last F) to the real parts
    (first F) and imaginary parts (last F) of F bins. Pointwise in time."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        log_magnitude, phase = x.chunk(2, dim=1)
        magnitude = torch.exp(log_magnitude.clamp(max=MAX_LOG_MAGNITUDE))
        return torch.cat([magnitude * torch.cos(phase), magnitude * torch.sin(phase)], dim=1)


def inverse_stft_synthesis(window: int) -> CausalConvTranspose1d:
    """A causal transposed convolution ``[B, 2F, T] -> [B, 1, T * window / 2]`` set to the
    inverse real DFT of each frame's F = window / 2 + 1 bins (real parts, then imaginary),
    times a periodic Hann window: overlap-added at half-window steps, an inverse STFT."""
    bins = window // 2 + 1
    n = torch.arange(window, dtype=torch.float64)
    k = torch.arange(bins, dtype=torch.float64)
    angle = 2 * math.pi * k[:, None] * n[None] / window                     # [F, window]
    weight = torch.full((bins, 1), 2.0, dtype=torch.float64)                # both halves of the spectrum
    weight[0] = weight[-1] = 1.0                                            # DC and Nyquist appear once
    hann = torch.hann_window(window, periodic=True, dtype=torch.float64)
    basis = torch.cat([weight * torch.cos(angle), -weight * torch.sin(angle)]) * hann / window
    synthesis = CausalConvTranspose1d(2 * bins, 1, window, window // 2)
    with torch.no_grad():
        synthesis.weight.copy_(basis[:, None].float())
        synthesis.bias.zero_()
    return synthesis


class ISTFTDecoder(nn.Module):
    """Latent frames to waveform through ConvNeXt blocks at frame rates and an inverse STFT.

    Shapes: ``[B, latent_dim, T] -> [B, 1, T * hop]`` with ``hop = upsample * window / 2``.
    """

    def __init__(self, latent_dim: int, hop: int, widths: tuple[int, int], blocks: tuple[int, int],
                 upsample: int, window: int, kernel_size: int = 7) -> None:
        super().__init__()
        if upsample * window // 2 != hop or window % 2:
            raise ValueError(f"an even window of {window} samples at {upsample} frames per latent "
                             f"frame makes a hop of {upsample * window // 2} samples, not the encoder's {hop}")
        initial_scale = 1 / sum(blocks)
        layers: list[nn.Module] = [CausalConv1d(latent_dim, widths[0], kernel_size)]
        layers += [ConvNeXtBlock(widths[0], kernel_size, initial_scale) for _ in range(blocks[0])]
        layers += [CausalConvTranspose1d(widths[0], widths[1], 2 * upsample, upsample)]
        layers += [ConvNeXtBlock(widths[1], kernel_size, initial_scale) for _ in range(blocks[1])]
        layers += [ChannelNorm(widths[1]), CausalConv1d(widths[1], 2 * (window // 2 + 1), 1),
                   PolarToComplex(), inverse_stft_synthesis(window)]
        self.net = nn.Sequential(*layers)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.net(latent)

    def history_frames(self) -> int:
        """Latent frames of context an output sample can depend on (conv.history_frames)."""
        return history_frames(self.net)
