"""Shared fixtures: small models and short clips keep the suite fast on two cores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

from codec.cli import main
from codec.model import CodecConfig, CodecModel, save_model
from codec.model import refine as refinement

SAMPLES = Path(__file__).resolve().parent.parent / "audio_samples"


def tiny_config(**overrides) -> CodecConfig:
    """A model small enough to build and run in milliseconds: hop 320, 8 levels of 6 bits."""
    base = dict(name="tiny", channels=4, strides=(2, 4, 5, 8), dilations=(1,), latent_dim=16,
                levels=8, codebook_bits=6)
    base.update(overrides)
    return CodecConfig(**base)


# istft.py's decoder, small; two blocks at each rate make it see further back than
# refine.CONTEXT_FRAMES (24 frames)
TINY_ISTFT = dict(decoder="istft", istft_widths=(16, 8), istft_blocks=(2, 2), istft_upsample=4, istft_window=160)


def tiny_istft(**overrides) -> CodecConfig:
    """tiny_config's encoder and quantizer with a small decoder of istft.py's kind."""
    return tiny_config(**{**TINY_ISTFT, **overrides})


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)


@pytest.fixture(autouse=True)
def _encode_without_refinement(request, monkeypatch):
    """File coding refines its codes by default (codec.model.refine), which makes encoding
    many times slower. Tests in this process that are not about refinement code without it,
    so the suite stays fast; tests marked ``default_refine`` keep the shipped default. Tests
    that start `codec` in a child process get the default unless they pass ``--refine 0``."""
    if "default_refine" not in request.keywords:
        monkeypatch.setattr(refinement, "DEFAULT_REFINE", 0)


@pytest.fixture
def tiny_model() -> CodecModel:
    return CodecModel(tiny_config()).eval()


def save_fitted_tiny_model(directory: Path) -> Path:
    """Save a tiny model whose codebooks were fitted to a few batches of sound."""
    torch.manual_seed(0)
    model = CodecModel(tiny_config())
    model.train()
    batch = torch.from_numpy(np.concatenate([speech_like(1.0, seed=s) for s in range(4)]))[:, None]
    with torch.no_grad():
        for _ in range(3):
            model(batch + 0.05 * torch.randn_like(batch))
    path = directory / "tiny.safetensors"
    save_model(model, path)
    return path


@pytest.fixture
def tiny_model_file(tmp_path) -> Path:
    """A fitted tiny model of the test's own, free to be damaged or replaced."""
    return save_fitted_tiny_model(tmp_path)


@pytest.fixture(scope="session")
def shared_tiny_model_file(tmp_path_factory) -> Path:
    """The same model, built once for the tests that only read it."""
    return save_fitted_tiny_model(tmp_path_factory.mktemp("model"))


@pytest.fixture
def wav_file(tmp_path) -> Path:
    """A 1.3 s speech-like mono WAV at 16 kHz."""
    path = tmp_path / "in.wav"
    sf.write(path, speech_like(1.3).T, 16000, subtype="PCM_16")
    return path


def run(*args):
    """``codec ARGS`` in this process."""
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False, prog_name="codec")


def one_line_error(result, *fragments: str) -> None:
    """A user error: non-zero exit, one line on stderr that says what went wrong."""
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("codec: error:")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def speech_like(seconds: float = 1.0, rate: int = 16000, channels: int = 1, seed: int = 0) -> np.ndarray:
    """A harmonic tone with a moving pitch and an envelope: float32 [channels, samples]."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    f0 = 120 + 30 * np.sin(2 * np.pi * 1.5 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    wav = sum(np.sin(k * phase) / k for k in range(1, 12)) * (0.3 + 0.2 * np.sin(2 * np.pi * 3 * t))
    wav = 0.2 * wav + 0.005 * rng.standard_normal(len(t))
    return np.stack([np.roll(wav, 97 * c) for c in range(channels)]).astype(np.float32)


def voiced(seconds: float, seed: int = 0, rate: int = 16000) -> np.ndarray:
    """A gliding harmonic voice whose loudness moves at syllable rate but never falls silent,
    so the reference STOI keeps every frame (it drops those 40 dB below the loudest)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    pitch = 120 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    voice = sum(np.sin(k * phase) / k for k in range(1, 25))
    envelope = 0.65 + 0.35 * np.sin(2 * np.pi * 4 * t + rng.uniform(0, 6))
    return (0.1 * envelope * voice).astype(np.float32)


def tensor(wav: np.ndarray) -> torch.Tensor:
    """``wav [N]`` as a ``[1, 1, N]`` tensor, the shape of one mono decoding."""
    return torch.from_numpy(wav)[None, None]
