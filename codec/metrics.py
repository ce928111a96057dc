"""Objective quality measures shared by validation during training and `codec eval`.

All take float tensors ``[..., samples]`` of equal length at the same rate.
"""

from __future__ import annotations

import functools

import torch
import torchaudio


def si_sdr(reference: torch.Tensor, estimate: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Scale-invariant signal-to-distortion ratio in dB (higher is better), per item."""
    reference = reference - reference.mean(-1, keepdim=True)
    estimate = estimate - estimate.mean(-1, keepdim=True)
    scale = (estimate * reference).sum(-1, keepdim=True) / (reference.pow(2).sum(-1, keepdim=True) + eps)
    target = scale * reference
    noise = estimate - target
    return 10 * torch.log10((target.pow(2).sum(-1) + eps) / (noise.pow(2).sum(-1) + eps))


@functools.lru_cache(maxsize=4)
def _mel(sample_rate: int) -> torchaudio.transforms.MelSpectrogram:
    return torchaudio.transforms.MelSpectrogram(
        sample_rate=sample_rate, n_fft=1024, win_length=1024, hop_length=256, n_mels=80, power=1.0)


def mel_distance(reference: torch.Tensor, estimate: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """Mean L1 distance between log10 mel spectrograms (lower is better), per item."""
    mel = _mel(sample_rate)
    ref = torch.log10(mel(reference).clamp_min(1e-5))
    est = torch.log10(mel(estimate).clamp_min(1e-5))
    return (ref - est).abs().mean(dim=(-2, -1))
