"""A differentiable perceptual disturbance of decoded speech, after PESQ (ITU-T P.862).

PESQ predicts how listeners rate degraded speech from the difference between loudness
spectra on a Bark scale, frame by frame. Differences smaller than a quarter of the
softer of the two loudnesses fall in a dead zone. Components the degraded signal adds,
such as noise between a voice's harmonics, weigh more than components it drops (the
asymmetric disturbance). The worst moments weigh most: an L6 norm over 320 ms windows,
then an L2 norm over the whole.

A log-mel distance sees none of this structure: it weighs an added and a missing
component alike, and every frame alike. The encoder's refinement (codec/model/refine.py)
adds this measure to its objective (docs/experiments.md, "Refining for perceived quality").

This follows P.862's published structure, not its reference code or tables: the Bark
bands are even on Traunmueller's Bark scale, the hearing threshold is Terhardt's
approximation, and speech is taken to be heard at 79 dB SPL. PESQ also forgives a fixed
spectral tilt and slow gain changes before it compares; this measure does not, because
refinement gained as much or more without them (prototypes on 8 dev files). It also leaves
out P.862.2's 100 Hz high-pass, the steeper loudness below 4 Bark, the weighting of frames by
their energy and the cap on a frame's disturbance, and it has no time alignment, because
refinement compares a decoding with the very input it codes. Two known weaknesses: the last
partial 320 ms window is dropped, so up to 9 frames at the end go unscored, and each signal's
level is aligned on its own, so near silence is scored as if its noise were speech.
It is a stand-in for the PESQ score `codec eval` reports, which is measured by the
reference implementation. Shapes: audio ``[1, 1, N]`` at ``sample_rate``.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch

RATE = 16_000               # PESQ's wide-band rate
FFT = 512                   # 32 ms Hann frames, hop 16 ms, as P.862 at 16 kHz
HOP = FFT // 2
BANDS = 49                  # P.862's band count at 16 kHz
ALIGN_HZ = (325.0, 3250.0)  # the speech band whose power is aligned to 1
LISTENING_DB_SPL = 79.0     # the aligned level is heard at this level
LOUDNESS_EXPONENT = 0.23    # Zwicker's compression of power into loudness
DEAD_ZONE = 0.25            # of the softer loudness: smaller differences are not heard
ASYMMETRY_POWER = 1.2
ASYMMETRY_FLOOR, ASYMMETRY_CAP = 3.0, 12.0   # of the factor: added power below 2.5 times the reference's is not weighted
WINDOW_FRAMES, WINDOW_HOP = 20, 10           # P.862's "split second": 320 ms, half overlapping
SYMMETRIC_WEIGHT, ASYMMETRIC_WEIGHT = 0.1, 0.0309   # P.862's weights of its two disturbances in its MOS


def bark(hz: torch.Tensor) -> torch.Tensor:
    """Traunmueller's Bark scale."""
    return 26.81 * hz / (1960.0 + hz) - 0.53


BAND_BARK = float(bark(torch.tensor(RATE / 2)) - bark(torch.tensor(RATE / FFT))) / BANDS   # each band's width


def threshold_db_spl(hz: torch.Tensor) -> torch.Tensor:
    """Terhardt's approximation of the threshold of hearing in quiet, dB SPL."""
    khz = hz.clamp_min(20.0) / 1000
    return 3.64 * khz ** -0.8 - 6.5 * torch.exp(-0.6 * (khz - 3.3) ** 2) + 1e-3 * khz ** 4


@lru_cache(maxsize=None)
def bark_bands() -> tuple[torch.Tensor, torch.Tensor]:
    """``([BANDS, FFT / 2 + 1] 0/1 matrix, [BANDS] hearing thresholds)``.

    The matrix sums the power bins of each band (the DC bin is in none); the thresholds
    are powers on the aligned scale, where 1 is the aligned speech band at
    LISTENING_DB_SPL. Bands are BANDS even steps of the Bark scale up to the Nyquist
    frequency; each low band holds at least one bin.
    """
    hz = torch.arange(FFT // 2 + 1) * RATE / FFT
    position = (bark(hz) - bark(hz[1])) / (bark(hz[-1]) - bark(hz[1])) * BANDS
    band = position.floor().clamp(max=BANDS - 1).long()
    band[0] = -1
    matrix = (band[None] == torch.arange(BANDS)[:, None]).float()
    if (matrix.sum(1) == 0).any():
        raise AssertionError("a Bark band holds no FFT bin")
    centre = (matrix @ hz) / matrix.sum(1)
    thresholds = 10 ** ((threshold_db_spl(centre) - LISTENING_DB_SPL) / 10)
    return matrix, thresholds


def band_powers(audio: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """Bark-band powers of ``audio [1, 1, N]`` level-aligned as P.862 does: ``[BANDS, frames]``.

    The level is aligned per signal, so that the mean power between 325 Hz and 3.25 kHz
    is 1: a decoding is not penalised for a gain.
    """
    from .audio import resample    # here: audio imports file handling the model does not need

    wav = resample(audio.reshape(-1), sample_rate, RATE)
    window = torch.hann_window(FFT, device=wav.device)
    spectrum = torch.stft(wav, FFT, HOP, window=window, center=False, return_complex=True)
    # one-sided power per bin, so that summing the bins gives the frame's mean power (the
    # Nyquist bin is doubled too, a negligible error in the top band)
    power = (spectrum.real ** 2 + spectrum.imag ** 2) * (2 / (FFT * window.pow(2).sum()))
    level = power[_aligned_bins().to(wav.device)].sum(0).mean().clamp_min(1e-12)
    matrix, _ = bark_bands()
    return matrix.to(wav.device) @ (power / level)


@lru_cache(maxsize=None)
def _aligned_bins() -> torch.Tensor:
    """``[FFT / 2 + 1]`` bool: the bins between ALIGN_HZ's edges."""
    hz = torch.arange(FFT // 2 + 1) * RATE / FFT
    return (hz >= ALIGN_HZ[0]) & (hz <= ALIGN_HZ[1])


def loudness(power: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """Zwicker's loudness of band powers ``[BANDS, frames]``: 0 at the threshold, growing as
    power ** LOUDNESS_EXPONENT well above it."""
    t, g = thresholds[:, None], LOUDNESS_EXPONENT
    return ((t / 0.5) ** g * ((0.5 + 0.5 * power / t) ** g - 1)).clamp_min(0)


def min_samples(sample_rate: int) -> int:
    """The shortest audio that holds one frame."""
    return math.ceil(FFT * sample_rate / RATE) + 1      # + 1: resampling may round down


class PerceptualDisturbance:
    """How much worse decoded audio sounds than one fixed clean ``target [1, 1, N]``:
    ``self(decoded [1, 1, N])`` is a scalar tensor, 0 for a perfect match, differentiable.

    It weighs its two disturbances as P.862 does, but its loudness scale is its own: its
    values fall as PESQ rises, not in proportion to PESQ's. The target's band powers and
    loudness are computed once. Audio shorter than one 32 ms frame (``min_samples``) raises
    ValueError.
    """

    def __init__(self, target: torch.Tensor, sample_rate: int) -> None:
        if target.shape[-1] < min_samples(sample_rate):
            raise ValueError(f"the perceptual disturbance needs at least {min_samples(sample_rate)} samples, "
                             f"the target has {target.shape[-1]}")
        self.sample_rate = sample_rate
        self.thresholds = bark_bands()[1].to(target.device)
        self.reference = band_powers(target, sample_rate)
        self.wanted = loudness(self.reference, self.thresholds)     # fixed: computed once, not per step

    def __call__(self, decoded: torch.Tensor) -> torch.Tensor:
        reference, wanted, t = self.reference, self.wanted, self.thresholds[:, None]
        degraded = band_powers(decoded, self.sample_rate)
        heard = loudness(degraded, self.thresholds)
        difference = heard - wanted
        dead_zone = DEAD_ZONE * torch.minimum(heard, wanted)
        disturbance = difference.sign() * (difference.abs() - dead_zone).clamp_min(0)
        added = ((degraded + t) / (reference + t)) ** ASYMMETRY_POWER
        added = torch.where(added < ASYMMETRY_FLOOR, torch.zeros_like(added), added.clamp(max=ASYMMETRY_CAP))

        symmetric = (disturbance.pow(2).sum(0) * BAND_BARK).clamp_min(1e-20).sqrt()      # [frames]
        asymmetric = (disturbance * added).abs().sum(0) * BAND_BARK
        return SYMMETRIC_WEIGHT * _worst_moments(symmetric) + ASYMMETRIC_WEIGHT * _worst_moments(asymmetric)


def _worst_moments(per_frame: torch.Tensor) -> torch.Tensor:
    """P.862's aggregation of frame disturbances ``[frames]``: L6 over 320 ms windows, then L2
    over the windows (one window if the audio is shorter)."""
    size = min(WINDOW_FRAMES, per_frame.shape[0])
    windows = per_frame.unfold(0, size, WINDOW_HOP if size == WINDOW_FRAMES else size)
    # floored: the roots' gradients are infinite at 0, where the audio matches exactly
    return windows.pow(6).mean(1).clamp_min(1e-30).pow(1 / 6).pow(2).mean().clamp_min(1e-30).sqrt()
