"""Encoder-side refinement (codec.model.refine): codes whose decoding sounds nearer the input."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

import codec
from codec.bitstream import decode_bytes
from codec.model import load_model
from codec.model.refine import DEFAULT_REFINE, SpectralDistance, refine_codes

from .conftest import one_line_error, run, speech_like


def distance_of(model, codes: torch.Tensor, audio: torch.Tensor) -> float:
    """Spectral distance of the decoding of ``codes [1, levels, T]`` from ``audio [1, T * hop]``."""
    with torch.no_grad():
        return SpectralDistance(audio[:, None], model.sample_rate)(model.decode_batch(codes)).item()


def test_refined_codes_decode_nearer_the_audio_and_leave_the_weights_alone(shared_tiny_model_file):
    model = load_model(shared_tiny_model_file)
    audio = torch.from_numpy(speech_like(0.4))
    latent = model.encoder(model.pad_to_hop(audio[:, None])).detach()
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    empty = torch.zeros(1, 4, 0, dtype=torch.int64)

    unrefined = refine_codes(model, latent, audio, 4, 8, 0, empty)
    refined = refine_codes(model, latent, audio, 4, 8, 10, empty)
    assert torch.equal(unrefined, model.quantizer.encode(latent, 4, 8))      # 0 steps: the encoder's codes
    assert distance_of(model, refined, audio) < 0.99 * distance_of(model, unrefined, audio)
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


def test_refined_streaming_equals_whole_file_coding_across_blocks(shared_tiny_model_file):
    """Three blocks of 50 frames and a partial one, pushed in uneven chunks."""
    model = load_model(shared_tiny_model_file)
    audio = torch.from_numpy(speech_like(3.3))
    whole = model.encode(audio, 16000, levels=3, refine=2)
    assert whole.shape == (1, 3, 165)
    assert not torch.equal(whole, model.encode(audio, 16000, levels=3))       # refinement changed codes

    encoder = model.streaming_encoder(levels=3, refine=2)
    rng = np.random.default_rng(1)
    parts, start = [], 0
    while start < audio.shape[-1]:
        n = int(rng.integers(1, 12000))
        parts.append(encoder.push(audio[:, start:start + n]))
        start += n
    assert all(p.shape[-1] % 50 == 0 for p in parts)                          # a block at a time
    parts.append(encoder.flush())
    assert torch.equal(torch.cat(parts, dim=-1), whole)


def test_each_channel_is_refined_on_its_own(shared_tiny_model_file):
    model = load_model(shared_tiny_model_file)
    stereo = torch.from_numpy(speech_like(0.5, channels=2))
    both = model.encode(stereo, 16000, levels=2, refine=3)
    for c in range(2):
        assert torch.equal(both[c], model.encode(stereo[c], 16000, levels=2, refine=3)[0])


@pytest.mark.parametrize("steps", [-1, 2.5, True])
def test_refine_steps_that_are_not_a_whole_number_are_refused(shared_tiny_model_file, steps):
    model = load_model(shared_tiny_model_file)
    with pytest.raises(ValueError, match="refine"):
        model.streaming_encoder(levels=2, refine=steps)
    with pytest.raises(ValueError, match="refine"):
        codec.compress(speech_like(0.2), 16000, kbps=1, model=model, refine=steps)


@pytest.mark.default_refine
def test_file_coding_refines_by_default(tmp_path, wav_file, shared_tiny_model_file):
    model = load_model(shared_tiny_model_file)
    wav, rate = sf.read(wav_file, dtype="float32", always_2d=True)
    expected = model.encode(wav.T, rate, kbps=1.5, refine=DEFAULT_REFINE).numpy()
    data = codec.compress(wav.T, rate, kbps=1.5, model=model, normalize=False)
    assert np.array_equal(decode_bytes(data)[1], expected)

    out = tmp_path / "a.rvq"
    result = run("encode", wav_file, out, "--kbps", "1.5", "--no-normalize", "--model", shared_tiny_model_file)
    assert result.exit_code == 0, result.stderr
    assert np.array_equal(decode_bytes(out.read_bytes())[1], expected)
    assert f"(default {DEFAULT_REFINE})" in run("encode", "--help").stdout


def test_encode_refines_with_the_steps_it_is_given(tmp_path, wav_file, shared_tiny_model_file):
    model = load_model(shared_tiny_model_file)
    wav, rate = sf.read(wav_file, dtype="float32", always_2d=True)
    out = tmp_path / "a.rvq"
    result = run("encode", wav_file, out, "--kbps", "1.5", "--no-normalize", "--refine", "3",
                 "--model", shared_tiny_model_file)
    assert result.exit_code == 0, result.stderr
    assert np.array_equal(decode_bytes(out.read_bytes())[1], model.encode(wav.T, rate, kbps=1.5, refine=3).numpy())
    one_line_error(run("encode", wav_file, tmp_path / "b.rvq", "--refine", "-1"),
                   "--refine", "codec encode --help")
    assert not (tmp_path / "b.rvq").exists()
