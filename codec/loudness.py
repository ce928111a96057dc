"""The level a model works at, and the gain that brings audio to it.

A codec model is not scale-invariant: it learned from crops normalised to one
loudness (``CodecConfig.input_dbfs``, -20 dBFS for speech16k), and it codes quieter
or louder speech worse. On 21 dev files whose levels range from -36 to -16 dBFS
(``python benchmarks/input_level.py``), scaling each file to -20 dBFS before coding
raised the shipped model's PESQ-WB at 6 kbps by 0.075 +/- 0.024 and STOI by 0.007,
while a fixed cut of 6 or 12 dB lowered PESQ-WB by 0.15 and 0.35. So
`codec.compress` and `codec encode` scale the audio to the model's level and record
the gain in the stream's header; the decoder divides it out again.

The level is a gated mean power over 400 ms blocks, like ITU-R BS.1770's gating but
without its frequency weighting or overlapping blocks: blocks below -70 dBFS are
left out, then blocks more than 10 dB below the mean of the rest, so pauses and
silence do not count. Training scaled each one-second crop by its plain RMS, pauses
included; measured this way, those crops sit at -19.9 dBFS on average (median -19.4),
so the two measures of "-20 dBFS" agree within about half a decibel.

Each channel is measured on its own and the loudest sets the level: the model codes
channels separately, and a silent channel must not make the others be coded too loud.
The gain is rounded down to a 0.5 dB step (one signed byte in the header) and held
low enough that the loudest sample stays within 0.99, as training's crops were. That
cap is per file: one click in a long recording holds the gain of all of it down.
"""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np
import torch

from .bitstream import GAIN_STEP_DB, MAX_GAIN_DB, MIN_GAIN_DB

BLOCK_SECONDS = 0.4
ABSOLUTE_GATE_DBFS = -70.0
RELATIVE_GATE_DB = -10.0
PEAK_LIMIT = 0.99


class LoudnessMeter:
    """Measures the gated level of audio that arrives in blocks: ``push`` each
    ``[channels, n]`` block, then read ``level_dbfs`` or ``gain_db``.

    Memory grows by one number per channel and 400 ms of audio.
    """

    def __init__(self, sample_rate: int) -> None:
        self.block_size = max(1, round(BLOCK_SECONDS * sample_rate))
        self.powers: list[np.ndarray] = []    # mean power of each complete block, [channels] each
        self.partial: np.ndarray | None = None  # [channels, n < block_size] squares not yet in a block
        self.peak = 0.0

    def push(self, wav: np.ndarray | torch.Tensor) -> None:
        """Add ``wav [channels, n]``; NaN and infinite samples count as silence."""
        wav = np.nan_to_num(np.asarray(wav, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        if wav.ndim != 2:
            raise ValueError(f"expected audio [channels, samples], got shape {list(wav.shape)}")
        if wav.size == 0:
            return
        self.peak = max(self.peak, float(np.abs(wav).max()))
        power = np.square(wav) if self.partial is None else np.concatenate([self.partial, np.square(wav)], axis=1)
        whole = power.shape[1] // self.block_size * self.block_size
        blocks = power[:, :whole].reshape(power.shape[0], -1, self.block_size).mean(axis=2)   # [channels, blocks]
        self.powers.extend(blocks.T)
        self.partial = power[:, whole:]

    @property
    def level_dbfs(self) -> float:
        """The gated level in dBFS of the loudest channel; ``-inf`` when nothing rises above
        the absolute gate. A last part-block of at least half a block counts as a block, so
        a clip shorter than one block is measured whole."""
        powers = list(self.powers)
        if self.partial is not None and self.partial.shape[1] and (
                not powers or self.partial.shape[1] >= self.block_size / 2):
            powers.append(self.partial.mean(axis=1))
        if not powers:
            return -math.inf
        return max(_gated_level(channel) for channel in np.stack(powers, axis=1))

    def gain_db(self, target_dbfs: float) -> float:
        """The gain, in 0.5 dB steps, that brings the audio to ``target_dbfs`` without
        taking its peak above 0.99; 0 for audio too quiet to measure."""
        level = self.level_dbfs
        if not math.isfinite(level):
            return 0.0
        gain = target_dbfs - level
        if self.peak > 0:
            gain = min(gain, 20 * math.log10(PEAK_LIMIT / self.peak))
        gain = math.floor(gain / GAIN_STEP_DB) * GAIN_STEP_DB
        return min(max(gain, MIN_GAIN_DB), MAX_GAIN_DB)


def _gated_level(powers: np.ndarray) -> float:
    """The level in dBFS of one channel's block powers ``[blocks]``, gated; ``-inf`` if none pass."""
    powers = powers[powers > 10 ** (ABSOLUTE_GATE_DBFS / 10)]
    if powers.size == 0:
        return -math.inf
    powers = powers[powers > powers.mean() * 10 ** (RELATIVE_GATE_DB / 10)]
    return 10 * math.log10(powers.mean())


def gain_db_of_blocks(blocks: Iterable[np.ndarray | torch.Tensor], sample_rate: int, target_dbfs: float) -> float:
    """The gain (dB, 0.5 dB steps) that brings audio arriving in ``[channels, n]`` blocks
    to ``target_dbfs``: what `codec encode` measures in its first pass over a file."""
    meter = LoudnessMeter(sample_rate)
    for block in blocks:
        meter.push(block)
    return meter.gain_db(target_dbfs)


def gain_db(wav: np.ndarray | torch.Tensor, sample_rate: int, target_dbfs: float) -> float:
    """The gain (dB, 0.5 dB steps) that brings ``wav`` (``[channels, samples]`` or
    ``[samples]``) to ``target_dbfs``.

    For tokens from ``model.encode``, which codes audio as given: multiply speech by
    ``amplitude(gain_db(wav, rate, model.config.input_dbfs))`` first, and divide what
    ``model.decode`` returns by the same factor.
    """
    wav = np.asarray(wav)
    wav = wav[None] if wav.ndim == 1 else wav
    step = max(1, sample_rate)                     # a second at a time: bounded memory
    return gain_db_of_blocks((wav[:, i:i + step] for i in range(0, wav.shape[-1], step)), sample_rate, target_dbfs)


def amplitude(gain: float) -> float:
    """The factor of a gain in dB."""
    return 10 ** (gain / 20)
