"""Reconstruction losses: multi-resolution STFT, multi-scale log-mel L1, waveform L1."""

from __future__ import annotations

import torch
from torch import nn

from ..spectral import MultiScaleMelLoss, multi_resolution_stft_loss
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

    def forward(self, recon: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        recon, target = recon.float(), target.float()
        parts = {
            "stft": self.stft(recon, target),
            "mel": self.mel(recon, target),
            "waveform": (recon - target).abs().mean(),
        }
        c = self.config
        total = c.stft_weight * parts["stft"] + c.mel_weight * parts["mel"] + c.waveform_weight * parts["waveform"]
        return total, parts
