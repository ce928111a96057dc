"""A differentiable short-time objective intelligibility (STOI) of decoded audio.

STOI (Taal et al., 2011) predicts how intelligible degraded speech is from how well
its slow envelopes in one-third-octave bands follow the clean speech's, over windows
of 384 ms. A log-mel distance measures the spectrum frame by frame and never sees
that correlation, so codes chosen for it alone can blur the envelopes that carry
intelligibility. The encoder's refinement (codec/model/refine.py) adds this measure to
its spectral distance to keep them: on the dev set at 6 kbps that is worth +0.037
STOI (docs/experiments.md, "Refining for intelligibility").

This follows the published definition: 10 kHz audio, 25.6 ms Hann frames with half
overlap, 15 bands from 150 Hz, 30-frame segments, the degraded envelope scaled to the
clean one's energy and clipped at -15 dB signal-to-distortion. Unlike the reference
implementation it keeps silent frames (it does not drop frames 40 dB below the loudest),
so it is a close stand-in for, not a copy of, the score `codec eval` reports.
Shapes: audio ``[1, 1, N]`` at ``sample_rate``.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch

RATE = 10_000               # STOI's sample rate
FRAME = 256                 # 25.6 ms
FFT = 512
BANDS = 15                  # one-third octaves, centred from 150 Hz up to about 3.8 kHz
LOWEST_CENTRE = 150.0
SEGMENT = 30                # frames: 384 ms
CLIP = 1 + 10 ** (15 / 20)  # the degraded envelope may exceed the clean one by 15 dB at most


@lru_cache(maxsize=None)
def third_octave_bands() -> torch.Tensor:
    """``[BANDS, FFT / 2 + 1]`` 0/1 matrix: which FFT bins each band sums."""
    bin_hz = torch.arange(FFT // 2 + 1) * RATE / FFT
    centres = LOWEST_CENTRE * 2.0 ** (torch.arange(BANDS) / 3)
    low, high = centres * 2 ** (-1 / 6), centres * 2 ** (1 / 6)
    return ((bin_hz >= low[:, None]) & (bin_hz < high[:, None])).float()


@lru_cache(maxsize=None)
def frame_window() -> torch.Tensor:
    """STOI's Hann window of FRAME samples (no zero ends)."""
    return torch.hann_window(FRAME + 2, periodic=False)[1:-1]


def band_envelopes(audio: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """One-third-octave band magnitudes of ``audio [1, 1, N]``: ``[BANDS, frames]``."""
    from .audio import resample    # here: audio imports file handling the model does not need

    wav = resample(audio.reshape(-1), sample_rate, RATE)
    # torch.stft centres the FRAME-sample window in FFT samples; padding by the difference
    # makes its frames start where STOI's do, at 0, FRAME / 2, ...
    wav = torch.nn.functional.pad(wav, ((FFT - FRAME) // 2, (FFT - FRAME) // 2))
    spectrum = torch.stft(wav, FFT, FRAME // 2, FRAME, window=frame_window().to(wav.device), center=False, return_complex=True)
    power = spectrum.real ** 2 + spectrum.imag ** 2                           # [bins, frames]
    return (third_octave_bands().to(wav.device) @ power).clamp_min(1e-20).sqrt()


def segments(envelopes: torch.Tensor) -> torch.Tensor:
    """Every window of SEGMENT consecutive frames: ``[BANDS, windows, SEGMENT]``."""
    return envelopes.unfold(-1, SEGMENT, 1)


def min_samples(sample_rate: int) -> int:
    """The shortest audio that holds one segment."""
    at_rate = FRAME + (SEGMENT - 1) * FRAME // 2
    return math.ceil(at_rate * sample_rate / RATE) + 1      # + 1: resampling may round down


class Intelligibility:
    """STOI of decoded audio against one fixed clean ``target [1, 1, N]``: ``self(decoded)``
    is a scalar tensor, 1 for a perfect match, differentiable in ``decoded [1, 1, N]``.

    The target's envelopes are computed once. Audio too short for one 384 ms segment
    (``min_samples``) raises ValueError.
    """

    def __init__(self, target: torch.Tensor, sample_rate: int) -> None:
        if target.shape[-1] < min_samples(sample_rate):
            raise ValueError(f"STOI needs at least {min_samples(sample_rate)} samples, "
                             f"the target has {target.shape[-1]}")
        self.sample_rate = sample_rate
        self.clean = clean = segments(band_envelopes(target, sample_rate))
        self.clean_norm = clean.norm(dim=-1, keepdim=True)
        self.clean_centred = _unit(clean - clean.mean(dim=-1, keepdim=True))

    def __call__(self, decoded: torch.Tensor) -> torch.Tensor:
        degraded = segments(band_envelopes(decoded, self.sample_rate))
        scaled = degraded * self.clean_norm / degraded.norm(dim=-1, keepdim=True).clamp_min(1e-10)
        clipped = torch.minimum(scaled, self.clean * CLIP)
        return (self.clean_centred * _unit(clipped - clipped.mean(dim=-1, keepdim=True))).sum(-1).mean()


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-10)
