"""Objective quality of a decoded signal against its reference.

PESQ-WB (ITU-T P.862.2, through the ``pesq`` package; 1.0 to 4.64, higher is
better), STOI (``pystoi``; 0 to 1, higher is better), log-mel L1 distance
(``codec.metrics``; lower is better) and SI-SDR (``codec.metrics``; dB, higher
is better). PESQ and STOI come from optional packages: ``pip install 'codec[eval]'``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from types import ModuleType

import numpy as np
import torch

from ..errors import CodecError
from ..metrics import mel_distance, si_sdr

SCORE_RATE = 16000           # PESQ wide-band is defined at 16 kHz
# pystoi needs 30 frames of 256 samples at 10 kHz, hop 128 (~0.4 s of speech); shorter
# input returns this sentinel, not a score.
STOI_MIN_SAMPLES = SCORE_RATE * (30 * 128 + 128) // 10000
STOI_TOO_SHORT = 1e-5
MEL_MIN_SAMPLES = 1024                 # codec.metrics.mel_distance's FFT size
INSTALL_HINT = "pip install pesq pystoi (or pip install 'codec[eval]')"


@dataclass(frozen=True)
class Scores:
    """The four measures of one decoded signal; ``pesq`` and ``stoi`` are NaN where they could not run."""

    pesq: float
    stoi: float
    mel_l1: float
    si_sdr: float


def metric_packages() -> tuple[ModuleType, ModuleType]:
    """Import and return the ``pesq`` and ``pystoi`` modules.

    Raises CodecError naming what to install when either is missing, so that a
    run fails before any coding rather than after it.
    """
    missing, modules = [], []
    for name in ("pesq", "pystoi"):
        try:
            modules.append(__import__(name))
        except ImportError:
            missing.append(name)
    if missing:
        raise CodecError(f"codec eval needs the package{'s' if len(missing) > 1 else ''} "
                         f"{' and '.join(missing)} for PESQ and STOI: {INSTALL_HINT}")
    return modules[0], modules[1]


def pesq_wb(reference: np.ndarray, decoded: np.ndarray) -> float:
    """PESQ-WB MOS-LQO of ``decoded`` ``[N]`` against ``reference`` ``[N]`` at 16 kHz.

    Returns NaN where PESQ refuses the input (silence, no speech found, too short).
    """
    pesq, _ = metric_packages()
    if not reference.any() or not decoded.any():
        return math.nan                           # PESQ would divide by a zero peak
    try:
        return float(pesq.pesq(SCORE_RATE, reference.astype(np.float32), decoded.astype(np.float32), "wb"))
    except pesq.PesqError:
        return math.nan


def stoi(reference: np.ndarray, decoded: np.ndarray) -> float:
    """STOI (0 to 1) of ``decoded`` ``[N]`` against ``reference`` ``[N]`` at 16 kHz.

    Returns NaN for a silent reference and where pystoi finds too little speech
    (fewer than 30 frames of 25.6 ms once silent frames are dropped).
    """
    _, pystoi = metric_packages()
    if not reference.any() or len(reference) < STOI_MIN_SAMPLES:
        return math.nan                           # pystoi fails on input shorter than one frame
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")           # its "not enough STFT frames" warning: see below
        value = float(pystoi.stoi(reference.astype(np.float64), decoded.astype(np.float64), SCORE_RATE))
    return math.nan if value == STOI_TOO_SHORT else value


def score(reference: np.ndarray, decoded: np.ndarray) -> Scores:
    """All four measures of ``decoded`` against ``reference``: both ``[N]`` float, mono, 16 kHz, aligned."""
    if reference.shape != decoded.shape or reference.ndim != 1:
        raise ValueError(f"score needs two [N] signals of equal length, got {reference.shape} and {decoded.shape}")
    ref = torch.from_numpy(np.ascontiguousarray(reference, dtype=np.float32))
    dec = torch.from_numpy(np.ascontiguousarray(decoded, dtype=np.float32))
    # The mel spectrogram's reflect padding needs more samples than its FFT size: pad very short clips.
    short = max(0, MEL_MIN_SAMPLES - len(reference))
    mel = mel_distance(torch.nn.functional.pad(ref, (0, short)), torch.nn.functional.pad(dec, (0, short)),
                       SCORE_RATE)
    return Scores(pesq=pesq_wb(reference, decoded), stoi=stoi(reference, decoded),
                  mel_l1=float(mel), si_sdr=float(si_sdr(ref, dec)))
