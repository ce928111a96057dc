"""The Python API and model files: compress/decompress, encode/decode, fingerprints."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import codec
from codec.errors import BitrateError, ModelError
from codec.loudness import LoudnessMeter, amplitude, gain_db
from codec.model import load_model, save_model

from .conftest import speech_like, tiny_config


def test_codes_are_integer_tokens(tiny_model_file):
    model = load_model(tiny_model_file)
    wav = torch.from_numpy(speech_like(1.0, channels=2))
    codes = model.encode(wav, 16000, kbps=1.5)
    assert codes.dtype == torch.int64 and codes.shape == (2, 5, 50)
    assert 0 <= int(codes.min()) and int(codes.max()) < 64
    audio = model.decode(codes)
    assert audio.shape == (2, 50 * 320)


def test_encode_resamples_any_rate(tiny_model_file):
    model = load_model(tiny_model_file)
    codes = model.encode(speech_like(1.0, rate=44100)[0], 44100, kbps=2.4)
    assert codes.shape == (1, 8, 50)


def test_compress_decompress_round_trip(tiny_model_file):
    model = load_model(tiny_model_file)
    wav = speech_like(0.9, rate=22050, channels=3)
    data = codec.compress(wav, 22050, kbps=2.4, model=model)
    out, rate = codec.decompress(data, model=model)
    assert rate == 22050 and out.shape == (3, wav.shape[1])
    coarse, _ = codec.decompress(data, kbps=0.3, model=model)
    assert coarse.shape == out.shape and not torch.equal(coarse, out)
    # Decompressing is deterministic: the same bytes give the same audio.
    again, _ = codec.decompress(data, model=model)
    assert torch.equal(again, out)


def test_stream_codes_match_model_codes(tiny_model_file):
    from codec.bitstream import decode_bytes
    model = load_model(tiny_model_file)
    wav = speech_like(1.0)
    data = codec.compress(wav, 16000, kbps=2.4, model=model)
    header, codes, num_samples = decode_bytes(data)
    assert num_samples == 16000
    assert header.gain_db == gain_db(wav, 16000, model.config.input_dbfs) != 0
    assert np.array_equal(codes, model.encode(wav * amplitude(header.gain_db), 16000, kbps=2.4).numpy())


@pytest.mark.parametrize("level_db", [-45, -20, -6])
def test_compress_codes_at_the_models_level_and_decompress_restores_the_input_level(tiny_model_file, level_db):
    from codec.bitstream import decode_bytes
    model = load_model(tiny_model_file)
    wav = speech_like(1.0)
    wav = wav * (10 ** (level_db / 20) / np.sqrt(np.mean(wav ** 2)))
    data = codec.compress(wav, 16000, kbps=2.4, model=model)
    header, codes, _ = decode_bytes(data)
    meter = LoudnessMeter(16000)
    meter.push(wav * amplitude(header.gain_db))
    assert model.config.input_dbfs - 0.5 < meter.level_dbfs <= model.config.input_dbfs
    audio, _ = codec.decompress(data, model=model)
    # the decoder's output, scaled back by exactly the recorded gain
    expected = model.decode(torch.from_numpy(codes))[:, :16000] / amplitude(header.gain_db)
    torch.testing.assert_close(audio, expected, rtol=1e-4, atol=1e-7)
    coarse, _ = codec.decompress(data, model=model, kbps=0.6)          # scalable decoding: 2 levels
    expected = model.decode(torch.from_numpy(codes[:, :2]))[:, :16000] / amplitude(header.gain_db)
    torch.testing.assert_close(coarse, expected, rtol=1e-4, atol=1e-7)


def test_compress_without_normalize_codes_the_audio_as_given(tiny_model_file):
    from codec.bitstream import decode_bytes
    model = load_model(tiny_model_file)
    wav = speech_like(1.0) * 0.01
    header, codes, _ = decode_bytes(codec.compress(wav, 16000, kbps=2.4, model=model, normalize=False))
    assert header.gain_db == 0
    assert np.array_equal(codes, model.encode(wav, 16000, kbps=2.4).numpy())


def test_compress_codes_with_the_beam_it_is_given(tiny_model_file):
    from codec.bitstream import decode_bytes
    model = load_model(tiny_model_file)
    wav = speech_like(1.0)
    greedy = decode_bytes(codec.compress(wav, 16000, kbps=2.4, model=model, normalize=False, beam=1))[1]
    wide = decode_bytes(codec.compress(wav, 16000, kbps=2.4, model=model, normalize=False, beam=8))[1]
    assert np.array_equal(greedy, model.encode(wav, 16000, kbps=2.4, beam=1).numpy())
    assert np.array_equal(wide, model.encode(wav, 16000, kbps=2.4, beam=8).numpy())
    assert not np.array_equal(greedy, wide)
    # the wider search leaves the latents nearer the encoder's output
    latent = model.encoder(model.pad_to_hop(torch.from_numpy(wav)[None].float())).detach()

    def error(codes: np.ndarray) -> float:
        return float((model.quantizer.decode(torch.from_numpy(codes)) - latent).pow(2).sum())
    assert error(wide) < error(greedy)


def test_absurd_bitrate_in_python(tiny_model_file):
    with pytest.raises(BitrateError, match="outside"):
        codec.compress(speech_like(0.5), 16000, kbps=50, model=load_model(tiny_model_file))


def test_fingerprint_is_stable_and_recorded(tiny_model_file):
    a, b = load_model(tiny_model_file), load_model(tiny_model_file)
    assert a.fingerprint == b.fingerprint and len(a.fingerprint) == 64
    data = codec.compress(speech_like(0.5), 16000, kbps=0.6, model=a)
    from codec.bitstream import decode_bytes
    header, _, _ = decode_bytes(data)
    assert header.fingerprint == bytes.fromhex(a.fingerprint[:16])


def test_fp16_model_files_load_as_float32(tmp_path, tiny_model_file):
    model = load_model(tiny_model_file)
    half = tmp_path / "half.safetensors"
    save_model(model, half, dtype=torch.float16)
    loaded = load_model(half)
    assert next(loaded.parameters()).dtype == torch.float32
    assert loaded.fingerprint != model.fingerprint


def test_tampered_weights_are_caught(tmp_path, tiny_model_file):
    from codec.model.files import read_metadata
    tensors = load_file(str(tiny_model_file))
    name = next(iter(tensors))
    tensors[name] = tensors[name] + 1e-3
    bad = tmp_path / "tampered.safetensors"
    save_file(tensors, str(bad), metadata=read_metadata(tiny_model_file))
    with pytest.raises(ModelError, match="fingerprint"):
        load_model(bad)


def test_truncated_model_file(tmp_path, tiny_model_file):
    bad = tmp_path / "cut.safetensors"
    bad.write_bytes(tiny_model_file.read_bytes()[:1000])
    with pytest.raises(ModelError, match="not a readable safetensors"):
        load_model(bad)


def test_pickles_are_refused(tmp_path):
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    with pytest.raises(ModelError, match="pickle"):
        load_model(bad)
    torch.save({"w": torch.ones(2)}, tmp_path / "model.pt")
    with pytest.raises(ModelError, match="pickle"):
        load_model(tmp_path / "model.pt")


def test_unknown_model_name():
    with pytest.raises(ModelError, match="no model named 'nonesuch'"):
        load_model("nonesuch")


def test_saved_config_round_trips(tiny_model_file):
    from codec.model.files import read_metadata
    config = json.loads(read_metadata(tiny_model_file)["config"])
    assert config["strides"] == [2, 4, 5, 8] and config["levels"] == 8
    assert load_model(tiny_model_file).config == tiny_config()


def test_the_default_model_is_shipped_and_loads():
    model = codec.load_model()
    assert model.config.name == "speech16k"
    assert model.sample_rate == 16000 and model.hop == 320
    assert model.config.levels == 32 and model.config.codebook_bits == 10
    assert model.levels_for_kbps(6) == 12


def test_a_quiet_recording_is_coded_as_the_same_recording_loud(tiny_model_file):
    """Coding at the model's level makes the codes independent of the recording level
    (in whole 0.5 dB steps of the gain), and the decoder gives each its own level back."""
    from codec.bitstream import decode_bytes
    model = load_model(tiny_model_file)
    loud = speech_like(1.0)
    quiet = loud * amplitude(-20.0)
    loud_header, loud_codes, _ = decode_bytes(codec.compress(loud, 16000, kbps=2.4, model=model))
    quiet_header, quiet_codes, _ = decode_bytes(codec.compress(quiet, 16000, kbps=2.4, model=model))
    assert quiet_header.gain_db == loud_header.gain_db + 20
    # float rounding may flip a near tie between two of a frame's candidate code sequences
    assert (loud_codes == quiet_codes).all(axis=1).mean() > 0.95
    loud_out, _ = codec.decompress(codec.compress(loud, 16000, kbps=2.4, model=model), model=model)
    quiet_out, _ = codec.decompress(codec.compress(quiet, 16000, kbps=2.4, model=model), model=model)
    ratio = np.sqrt(np.mean(quiet_out.numpy() ** 2) / np.mean(loud_out.numpy() ** 2))
    assert ratio == pytest.approx(amplitude(-20.0), rel=0.05)
