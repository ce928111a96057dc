"""Spectral distances between decoded and reference audio.

Training minimises them over the weights (codec/train/losses.py); the encoder's
refinement minimises them over one file's latents (codec/model/refine.py).
Shapes: audio ``[B, 1, N]``; spectra ``[B, bins, frames]``.
"""

from __future__ import annotations

import auraloss
import torch
import torchaudio
from torch import nn


def multi_resolution_stft_loss() -> auraloss.freq.MultiResolutionSTFTLoss:
    """Spectral convergence plus log-magnitude distance at FFT sizes 2048, 1024 and 512."""
    return auraloss.freq.MultiResolutionSTFTLoss(
        fft_sizes=[2048, 1024, 512], hop_sizes=[512, 256, 128], win_lengths=[2048, 1024, 512])


def magnitudes(audio: torch.Tensor, window: int) -> torch.Tensor:
    """STFT magnitudes of ``audio [B, 1, N]`` with a Hann window, hop ``window / 4`` and no
    padding: ``[B, window / 2 + 1, frames]``."""
    return torch.stft(audio.flatten(0, 1), window, window // 4, window=torch.hann_window(window, device=audio.device),
                      center=False, return_complex=True).abs()


def mel_filters(sample_rate: int, window: int) -> torch.Tensor:
    """Mel filterbank ``[window / 2 + 1, n_mels]`` for a window of ``window`` samples.

    The mel count grows with the window (``window / 8``, at most 128) so that no filter
    is narrower than an FFT bin.
    """
    return torchaudio.functional.melscale_fbanks(window // 2 + 1, 0.0, sample_rate / 2, min(128, window // 8),
                                                 sample_rate)


def log_mel(spectrum: torch.Tensor, filters: torch.Tensor) -> torch.Tensor:
    """Log of the mel spectrum of magnitudes ``[B, bins, frames]``: ``[B, n_mels, frames]``."""
    return torch.log((filters.t() @ spectrum).clamp_min(1e-5))


class MultiScaleMelLoss(nn.Module):
    """Mean L1 distance of log-mel spectrograms at several window sizes.

    Short windows resolve onsets, long ones resolve pitch harmonics.
    """

    def __init__(self, sample_rate: int, windows: tuple[int, ...] = (256, 512, 1024, 2048)) -> None:
        super().__init__()
        self.windows = tuple(windows)
        for w in self.windows:
            self.register_buffer(f"filters_{w}", mel_filters(sample_rate, w), persistent=False)

    def forward(self, recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        total = 0
        for w in self.windows:
            filters = getattr(self, f"filters_{w}")
            total = total + (log_mel(magnitudes(recon, w), filters) - log_mel(magnitudes(target, w), filters)).abs().mean()
        return total / len(self.windows)
