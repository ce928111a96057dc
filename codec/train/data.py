"""Training data: random fixed-length crops of speech files, reproducible from a seed.

Crop ``k`` of a run is a pure function of ``(seed, k)``: which file, where in
it, and the gain. A run that resumes at step ``s`` therefore sees exactly the
batches it would have seen, with no data-loader state to save, and any number
of DataLoader workers or torchrun ranks produce the same stream.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Iterator, Sequence

import soundfile as sf
import torch
from torch.utils.data import Dataset, Sampler

from ..audio import resample
from ..loudness import amplitude


def split_files(files: Sequence[Path], valid_fraction: float) -> tuple[list[Path], list[Path]]:
    """Deterministic train/validation split by a hash of each file's name."""
    def bucket(p: Path) -> float:
        return int(hashlib.sha1(p.name.encode()).hexdigest()[:8], 16) / 16 ** 8
    valid = [p for p in files if bucket(p) < valid_fraction]
    train = [p for p in files if bucket(p) >= valid_fraction]
    return train, valid


def load_mono(path: Path, sample_rate: int) -> torch.Tensor:
    """A whole file as mono float32 ``[samples]`` at ``sample_rate``."""
    wav, sr = sf.read(str(path), dtype="float32", always_2d=True)
    return resample(torch.from_numpy(wav.mean(axis=1)), sr, sample_rate)


class CropDataset(Dataset):
    """Crop ``k``: ``[1, segment]`` float32 at ``sample_rate``, loudness-normalised.

    Files are chosen in proportion to their length, so every second of the
    corpus is equally likely. Crops quieter than ``silence_dbfs`` are redrawn.
    With ``preload`` the corpus is decoded once and kept in memory as int16.
    """

    def __init__(self, files: Sequence[Path], sample_rate: int, segment: int, seed: int,
                 target_dbfs: float = -20.0, silence_dbfs: float = -50.0,
                 preload: bool = True) -> None:
        self.files = list(files)
        self.sample_rate = sample_rate
        self.segment = segment
        self.seed = seed
        self.target = amplitude(target_dbfs)
        self.silence = amplitude(silence_dbfs)
        self.audio: list[torch.Tensor] | None = None
        if preload:
            self.audio = [(load_mono(p, sample_rate).clamp(-1, 1) * 32767).to(torch.int16)
                          for p in self.files]
            lengths = [len(a) for a in self.audio]
        else:
            infos = [sf.info(str(p)) for p in self.files]
            lengths = [math.ceil(i.frames * sample_rate / i.samplerate) for i in infos]
        self.weights = torch.tensor(lengths, dtype=torch.float64)

    def __len__(self) -> int:
        return 2 ** 62   # crops are drawn, not enumerated; the sampler decides how many

    def _read(self, index: int, start: int) -> torch.Tensor:
        """``segment`` samples of file ``index`` from ``start`` (model rate), zero-padded."""
        if self.audio is not None:
            clip = self.audio[index][start:start + self.segment].float() / 32767
        else:
            path = self.files[index]
            file_rate = sf.info(str(path)).samplerate
            first = int(start * file_rate / self.sample_rate)
            count = math.ceil(self.segment * file_rate / self.sample_rate) + 1
            wav, _ = sf.read(str(path), start=first, frames=count, dtype="float32", always_2d=True)
            clip = resample(torch.from_numpy(wav.mean(axis=1)), file_rate, self.sample_rate)[:self.segment]
        return torch.nn.functional.pad(clip, (0, self.segment - len(clip)))

    def __getitem__(self, k: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + k)
        for _ in range(10):
            index = int(torch.multinomial(self.weights, 1, generator=g))
            room = max(1, int(self.weights[index]) - self.segment + 1)
            start = int(torch.randint(0, room, (1,), generator=g))
            clip = self._read(index, start)
            rms = clip.pow(2).mean().sqrt()
            if rms > self.silence:
                break
        clip = clip * (self.target / rms.clamp_min(self.silence))
        peak = clip.abs().max()
        if peak > 0.99:                      # keep the normalised crop from clipping
            clip = clip * (0.99 / peak)
        return clip[None]


class StepBatchSampler(Sampler[list[int]]):
    """Batches of crop indices for steps ``start_step .. total_steps - 1`` of one rank.

    Step ``s`` of rank ``r`` gets indices ``((s * world + r) * batch + i)``, so
    the data stream depends only on the step, never on when the run resumed.
    """

    def __init__(self, batch_size: int, start_step: int, total_steps: int,
                 rank: int = 0, world_size: int = 1) -> None:
        self.batch_size, self.start, self.total = batch_size, start_step, total_steps
        self.rank, self.world = rank, world_size

    def __len__(self) -> int:
        return max(0, self.total - self.start)

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start, self.total):
            base = (step * self.world + self.rank) * self.batch_size
            yield list(range(base, base + self.batch_size))
