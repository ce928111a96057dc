"""Reconstruction losses: multi-resolution STFT, multi-scale log-mel L1, waveform L1."""

from __future__ import annotations

import auraloss
import torch
import torchaudio
from torch import nn

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
        self.stft = auraloss.freq.MultiResolutionSTFTLoss(
            fft_sizes=[2048, 1024, 512], hop_sizes=[512, 256, 128], win_lengths=[2048, 1024, 512])
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


class MultiScaleMelLoss(nn.Module):
    """Mean L1 distance of log-mel spectrograms at several window sizes.

    Short windows resolve onsets, long ones resolve pitch harmonics; the mel
    count grows with the window so no filter is narrower than an FFT bin.
    Shapes: ``[B, 1, N]`` for both arguments.
    """

    def __init__(self, sample_rate: int, windows: tuple[int, ...] = (256, 512, 1024, 2048)) -> None:
        super().__init__()
        self.mels = nn.ModuleList(
            torchaudio.transforms.MelSpectrogram(
                sample_rate=sample_rate, n_fft=w, win_length=w, hop_length=w // 4,
                n_mels=min(128, w // 8), power=1.0, center=False)
            for w in windows)

    def forward(self, recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        total = 0
        for mel in self.mels:
            total = total + (torch.log(mel(recon).clamp_min(1e-5)) - torch.log(mel(target).clamp_min(1e-5))).abs().mean()
        return total / len(self.mels)
