"""The differentiable PESQ-like disturbance that refinement lowers (codec/perceptual.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from codec import perceptual
from codec.perceptual import BANDS, PerceptualDisturbance, bark_bands, min_samples

from .conftest import tensor, voiced

RATE = 16000


def with_noise(clean: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal(len(clean))
    return clean + noise * np.sqrt(np.mean(clean ** 2) / 10 ** (snr_db / 10))


def test_every_band_holds_a_bin_and_the_threshold_dips_in_the_middle():
    matrix, thresholds = bark_bands()
    assert matrix.shape[0] == BANDS and (matrix.sum(1) >= 1).all()
    assert (matrix.sum(0)[1:] == 1).all() and matrix[:, 0].sum() == 0     # each bin but DC in one band
    assert thresholds.argmin() > BANDS // 2 and thresholds[0] > 100 * thresholds.min()


def test_a_match_scores_zero_at_any_gain_with_a_finite_gradient():
    clean = voiced(1.0)
    disturbance = PerceptualDisturbance(tensor(clean), RATE)
    for gain in (1.0, 0.5, 3.0):
        decoded = (gain * tensor(clean)).requires_grad_(True)
        d = disturbance(decoded)
        assert d.item() == pytest.approx(0, abs=1e-4)
        d.backward()
        assert torch.isfinite(decoded.grad).all()


def test_it_rises_with_noise_as_pesq_falls():
    from pesq import pesq
    clean = voiced(3.0)
    disturbance = PerceptualDisturbance(tensor(clean), RATE)
    ours, theirs = [], []
    for snr_db in (40, 30, 20, 10):
        noisy = with_noise(clean, snr_db).astype(np.float32)
        ours.append(float(disturbance(tensor(noisy))))
        theirs.append(pesq(RATE, clean, noisy, "wb"))
    assert ours == sorted(ours) and ours[0] < ours[-1] / 5
    assert theirs == sorted(theirs, reverse=True)


def test_added_components_weigh_more_than_missing_ones(monkeypatch):
    # the same harmonic, once added where the voice has none, once taken away
    t = np.arange(RATE) / RATE
    base = 0.1 * sum(np.sin(2 * np.pi * f * t) for f in (300, 600, 900, 1200))
    tone = 0.1 * np.sin(2 * np.pi * 2400 * t)

    def added_over_missing() -> float:
        missing = float(PerceptualDisturbance(tensor(base + tone), RATE)(tensor(base)))
        added = float(PerceptualDisturbance(tensor(base), RATE)(tensor(base + tone)))
        return added / missing

    assert added_over_missing() > 3
    monkeypatch.setattr(perceptual, "ASYMMETRIC_WEIGHT", 0.0)
    assert added_over_missing() == pytest.approx(1, rel=1e-3)    # the symmetric part cannot tell them apart


def test_gradient_points_away_from_noise():
    clean = voiced(1.0)
    noisy = tensor(with_noise(clean, 10)).requires_grad_(True)
    disturbance = PerceptualDisturbance(tensor(clean), RATE)
    d = disturbance(noisy)
    d.backward()
    with torch.no_grad():
        stepped = noisy - 1e-3 * noisy.grad / noisy.grad.abs().max()
    assert float(disturbance(stepped)) < d.item()


def test_short_audio_is_refused_with_a_clear_error():
    with pytest.raises(ValueError, match="at least"):
        PerceptualDisturbance(torch.zeros(1, 1, min_samples(RATE) - 2), RATE)
    # one frame is enough
    PerceptualDisturbance(torch.randn(1, 1, min_samples(RATE)), RATE)(torch.randn(1, 1, min_samples(RATE)))


def test_other_rates_are_scored_at_16_khz():
    from codec.audio import resample

    clean = torch.from_numpy(voiced(1.0))
    noisy = torch.from_numpy(with_noise(voiced(1.0), 15).astype(np.float32))
    at_24k = [resample(x, RATE, 24000)[None, None] for x in (clean, noisy)]
    at_16k = [resample(x[0, 0], 24000, RATE)[None, None] for x in at_24k]
    ours = float(PerceptualDisturbance(at_24k[0], 24000)(at_24k[1]))
    assert ours == pytest.approx(float(PerceptualDisturbance(at_16k[0], RATE)(at_16k[1])), rel=1e-4)
