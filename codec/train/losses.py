"""Reconstruction losses: multi-resolution STFT, multi-scale log-mel L1, waveform L1, and
optionally the PESQ-like and STOI terms that the encoder's refinement lowers."""

from __future__ import annotations

from typing import Callable

import auraloss
import torch
from torch import nn

from .. import intelligibility, perceptual
from ..spectral import LowBandDistance, log_mel, magnitudes, mel_filters
from .config import TrainConfig


class ReconstructionLoss(nn.Module):
    """Weighted sum of spectral and waveform distances; returns (total, parts).

    The STFT term (spectral convergence + log magnitude at three resolutions)
    shapes the spectrum; the log-mel term at three scales weights errors the way
    hearing does; the small waveform L1 anchors phase and level.
    Shapes: ``[B, 1, N]`` for both arguments.
    """

    def __init__(self, config: TrainConfig) -> None:
        super().__init__()
        self.config = config
        self.stft = multi_resolution_stft_loss()
        self.mel = MultiScaleMelLoss(config.model.sample_rate, config.mel_windows)
        self.low_band = LowBandDistance(config.model.sample_rate, config.low_band_hz, config.low_band_compare)

    def forward(self, recon: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        recon, target = recon.float(), target.float()
        parts = {
            "stft": self.stft(recon, target),
            "mel": self.mel(recon, target),
            "waveform": (recon - target).abs().mean(),
        }
        c = self.config
        total = c.stft_weight * parts["stft"] + c.mel_weight * parts["mel"] + c.waveform_weight * parts["waveform"]
        rate = c.model.sample_rate
        if c.low_band_weight:
            parts["low_band"] = self.low_band(recon, target)
            total = total + c.low_band_weight * parts["low_band"]
        if c.perceptual_weight:
            parts["perceptual"] = per_item(perceptual.PerceptualDisturbance, recon, target, rate)
            total = total + c.perceptual_weight * parts["perceptual"]
        if c.stoi_weight:
            parts["stoi"] = per_item(intelligibility.Intelligibility, recon, target, rate)
            total = total + c.stoi_weight * (1 - parts["stoi"])
        return total, parts


def per_item(measure: Callable[[torch.Tensor, int], Callable[[torch.Tensor], torch.Tensor]],
             recon: torch.Tensor, target: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """The mean over the batch of ``measure(target[b], sample_rate)(recon[b])``, for the
    measures that compare one decoding with one fixed target ``[1, 1, N]``."""
    return torch.stack([measure(t[None], sample_rate)(r[None]) for r, t in zip(recon, target)]).mean()


def multi_resolution_stft_loss() -> auraloss.freq.MultiResolutionSTFTLoss:
    """Spectral convergence plus log-magnitude distance at FFT sizes 2048, 1024 and 512."""
    return auraloss.freq.MultiResolutionSTFTLoss(
        fft_sizes=[2048, 1024, 512], hop_sizes=[512, 256, 128], win_lengths=[2048, 1024, 512])


class MultiScaleMelLoss(nn.Module):
    """Mean L1 distance of log-mel spectrograms at several window sizes.

    Short windows resolve onsets, long ones resolve pitch harmonics.
    Shapes: ``[B, 1, N]`` for both arguments.
    """

    def __init__(self, sample_rate: int, windows: tuple[int, ...] = (256, 512, 1024, 2048)) -> None:
        super().__init__()
        self.windows = tuple(windows)
        for w in self.windows:
            self.register_buffer(f"filters_{w}", mel_filters(sample_rate, w).clone(), persistent=False)

    def forward(self, recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        total = 0
        for w in self.windows:
            filters = getattr(self, f"filters_{w}")
            ours, theirs = log_mel(magnitudes(recon, w), filters), log_mel(magnitudes(target, w), filters)
            total = total + (ours - theirs).abs().mean()
        return total / len(self.windows)
