"""The differentiable STOI that refinement optimises (codec/intelligibility.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from codec.intelligibility import Intelligibility, band_envelopes, min_samples

from .conftest import tensor, voiced

RATE = 16000


@pytest.mark.parametrize("snr_db", [0, 10])
def test_it_agrees_with_the_reference_stoi(snr_db):
    from pystoi import stoi
    clean = voiced(3.0)
    noise = np.random.default_rng(1).standard_normal(len(clean)).astype(np.float32)
    noise *= np.sqrt(np.mean(clean ** 2) / np.mean(noise ** 2) / 10 ** (snr_db / 10))
    noisy = clean + noise
    ours = float(Intelligibility(tensor(clean), RATE)(tensor(noisy)))
    assert ours == pytest.approx(stoi(clean, noisy, RATE), abs=0.01)


def test_the_clean_audio_scores_one_and_noise_scores_less():
    clean = voiced(2.0)
    score = Intelligibility(tensor(clean), RATE)
    assert float(score(tensor(clean))) == pytest.approx(1.0, abs=1e-5)
    noisy = clean + 0.05 * np.random.default_rng(2).standard_normal(len(clean)).astype(np.float32)
    assert float(score(tensor(noisy))) < 0.95


def test_its_gradient_leads_towards_the_clean_audio():
    clean = voiced(1.0)
    score = Intelligibility(tensor(clean), RATE)
    degraded = tensor(clean + 0.05 * np.random.default_rng(3).standard_normal(len(clean)).astype(np.float32))
    degraded.requires_grad_(True)
    before = score(degraded)
    (gradient,) = torch.autograd.grad(before, degraded)
    assert gradient.abs().sum() > 0
    after = score(degraded.detach() + 1e-3 * gradient / gradient.abs().max())
    assert after > before


@pytest.mark.parametrize("rate", [8000, 16000, 24000])
def test_the_shortest_audio_it_takes_holds_one_segment(rate):
    assert band_envelopes(torch.zeros(1, 1, min_samples(rate)), rate).shape[-1] >= 30
    Intelligibility(torch.ones(1, 1, min_samples(rate)), rate)
    with pytest.raises(ValueError, match="at least"):
        Intelligibility(torch.ones(1, 1, min_samples(rate) - 40), rate)
