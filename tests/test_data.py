"""The training data pipeline: crops, resampling, mono, loudness, silence, seeding, splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from codec.loudness import amplitude
from codec.train.data import CropDataset, StepBatchSampler, split_files

from .conftest import speech_like


@pytest.fixture
def corpus(tmp_path) -> list[Path]:
    """A stereo 44.1 kHz file of speech-like sound, and one that is half silence."""
    loud = tmp_path / "loud.wav"
    sf.write(loud, np.stack([speech_like(2.0, rate=44100, seed=1)[0] * 0.5] * 2, axis=1), 44100)
    half = tmp_path / "half.flac"
    sound = speech_like(1.0, rate=16000, seed=2)[0] * 0.05
    sf.write(half, np.concatenate([np.zeros(16000, np.float32), sound]), 16000)
    return [loud, half]


@pytest.mark.parametrize("preload", [True, False])
def test_crops_are_mono_resampled_normalised_and_not_silent(corpus, preload):
    data = CropDataset(corpus, 16000, segment=8000, seed=3, target_dbfs=-20, silence_dbfs=-50, preload=preload)
    assert data.weights.tolist() == pytest.approx([32000, 32000], abs=2)   # lengths at 16 kHz
    for k in range(40):
        crop = data[k]
        assert crop.shape == (1, 8000) and crop.dtype == torch.float32
        rms = crop.pow(2).mean().sqrt()
        peak = crop.abs().max()
        # -20 dBFS, unless a peak had to be brought down to 0.99
        assert rms == pytest.approx(amplitude(-20), rel=1e-3) or peak == pytest.approx(0.99, rel=1e-4)
        assert rms > amplitude(-50)                                 # silence is redrawn


def test_crops_are_reproducible_and_depend_on_the_seed(corpus):
    a = CropDataset(corpus, 16000, 4000, seed=0)
    b = CropDataset(corpus, 16000, 4000, seed=0)
    c = CropDataset(corpus, 16000, 4000, seed=1)
    assert all(torch.equal(a[k], b[k]) for k in range(10))
    assert not all(torch.equal(a[k], c[k]) for k in range(10))
    assert not torch.equal(a[0], a[1])


def test_preloaded_and_streamed_crops_agree(tmp_path):
    """Preloading keeps int16 copies in memory; reading from disk must give the same crops.
    (A file at the model's rate with no silence: a resampled crop differs at its edges, and a
    crop near the silence threshold may be kept by one and redrawn by the other.)"""
    path = tmp_path / "speech.flac"
    sf.write(path, speech_like(2.0, seed=4)[0] * 0.3, 16000)
    memory, disk = CropDataset([path], 16000, 4000, seed=5), CropDataset([path], 16000, 4000, seed=5, preload=False)
    for k in range(10):
        torch.testing.assert_close(memory[k], disk[k], atol=2e-3, rtol=0)


def test_the_sampler_depends_only_on_the_step():
    whole = list(StepBatchSampler(4, 0, 6, rank=1, world_size=2))
    resumed = list(StepBatchSampler(4, 3, 6, rank=1, world_size=2))
    assert resumed == whole[3:]
    other_rank = list(StepBatchSampler(4, 0, 6, rank=0, world_size=2))
    assert not set(sum(whole, [])) & set(sum(other_rank, []))           # ranks never share a crop


def test_the_validation_split_is_disjoint_and_deterministic():
    files = [Path(f"speaker{i}/utt{i}.flac") for i in range(400)]
    train, valid = split_files(files, 0.1)
    assert sorted(train + valid) == sorted(files) and not set(train) & set(valid)
    assert 20 <= len(valid) <= 60
    assert split_files(list(reversed(files)), 0.1)[1] == list(reversed(valid))
