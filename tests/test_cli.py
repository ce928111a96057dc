"""`codec encode/decode/info` end to end, and every bad input a user can give them."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from codec.bitstream import HEADER_SIZE, StreamHeader, encode_bytes
from codec.model import CodecModel, save_model

from .conftest import one_line_error, run, speech_like, tiny_config


@pytest.fixture
def rvq_file(tmp_path, wav_file, tiny_model_file) -> Path:
    out = tmp_path / "in.rvq"
    result = run("encode", wav_file, out, "--kbps", "1.8", "--model", tiny_model_file)
    assert result.exit_code == 0, result.stderr
    return out


def test_encode_decode_round_trip(tmp_path, rvq_file, tiny_model_file):
    out = tmp_path / "out.wav"
    result = run("decode", rvq_file, out, "--model", tiny_model_file)
    assert result.exit_code == 0, result.stderr
    audio, rate = sf.read(out)
    assert rate == 16000 and len(audio) == int(1.3 * 16000)


def test_encode_reports_the_rate_used(tmp_path, wav_file, tiny_model_file):
    # The tiny model: 6-bit codes at 50 frames/s, 0.3 kbps a level: 1.8 kbps is 6 levels.
    result = run("encode", wav_file, tmp_path / "x.rvq", "--kbps", "1.8", "--model", tiny_model_file)
    assert "1.80 kbps, 6 levels" in result.stderr


def test_encode_codes_at_the_models_level_unless_told_not_to(tmp_path, wav_file, tiny_model_file):
    from codec.loudness import gain_db
    from codec.model import load_model

    wav, rate = sf.read(wav_file, dtype="float32", always_2d=True)
    expected = gain_db(wav.T, rate, load_model(tiny_model_file).config.input_dbfs)
    assert expected != 0
    for flags, gain in [((), expected), (("--no-normalize",), 0.0)]:
        out = tmp_path / f"{gain}.rvq"
        result = run("encode", wav_file, out, "--kbps", "1.8", "--model", tiny_model_file, *flags)
        assert result.exit_code == 0 and f"coded at {gain:+g} dB" in result.stderr, result.stderr
        assert StreamHeader.from_bytes(out.read_bytes()).gain_db == gain
        assert f"gain         {gain:+g} dB" in run("info", out).stdout


def test_encode_searches_with_the_beam_it_is_given(tmp_path, wav_file, tiny_model_file):
    from codec.bitstream import decode_bytes
    from codec.model import load_model
    from codec.model.quantizer import DEFAULT_BEAM

    model = load_model(tiny_model_file)
    wav, rate = sf.read(wav_file, dtype="float32", always_2d=True)
    for i, (flags, beam) in enumerate([((), DEFAULT_BEAM), (("--beam", "1"), 1), (("--beam", "3"), 3)]):
        out = tmp_path / f"{i}.rvq"
        result = run("encode", wav_file, out, "--kbps", "1.8", "--no-normalize", "--model", tiny_model_file, *flags)
        assert result.exit_code == 0, result.stderr
        assert np.array_equal(decode_bytes(out.read_bytes())[1], model.encode(wav.T, rate, kbps=1.8, beam=beam).numpy())
    assert f"(default {DEFAULT_BEAM})" in run("encode", "--help").stdout


@pytest.mark.parametrize("args, fragments", [
    (["--beam", "0"], ["--beam", "1<=x<=64", "codec encode --help"]),
    (["--kbps", "six"], ["--kbps", "not a valid float"]),
    (["--bogus"], ["--bogus"]),
])
def test_a_usage_error_is_one_line(tmp_path, wav_file, args, fragments):
    result = run("encode", wav_file, tmp_path / "x.rvq", *args)
    one_line_error(result, *fragments)
    assert result.exit_code == 2 and not (tmp_path / "x.rvq").exists()


@pytest.mark.parametrize("args, fragment", [(["--bogus"], "'codec --help'"), (["encdoe"], "No such command")])
def test_a_usage_error_at_the_top_level_is_one_line(args, fragment):
    result = run(*args)
    one_line_error(result, fragment)
    assert result.exit_code == 2


def test_codec_alone_shows_its_help():
    result = run()
    assert "Usage: codec" in result.output and "encode" in result.output and "codec: error" not in result.output


def test_decoding_with_the_stream_fingerprint_finds_no_model(rvq_file, tmp_path):
    """Without --model, decode looks for a shipped model with the stream's fingerprint."""
    result = run("decode", rvq_file, tmp_path / "out.wav")
    one_line_error(result, "not a shipped model", "--model")


def test_scalable_decoding_uses_fewer_levels(tmp_path, rvq_file, tiny_model_file):
    full, coarse = tmp_path / "full.wav", tmp_path / "coarse.wav"
    assert run("decode", rvq_file, full, "--model", tiny_model_file).exit_code == 0
    assert run("decode", rvq_file, coarse, "--kbps", "0.6", "--model", tiny_model_file).exit_code == 0
    a, b = sf.read(full)[0], sf.read(coarse)[0]
    assert a.shape == b.shape and not np.array_equal(a, b)


def test_original_rate_and_channels_are_restored(tmp_path, tiny_model_file):
    src = tmp_path / "stereo8k.flac"
    sf.write(src, speech_like(0.7, rate=8000, channels=2).T, 8000, subtype="PCM_24")
    assert run("encode", src, tmp_path / "s.rvq", "--kbps", "2.4", "--model", tiny_model_file).exit_code == 0
    assert run("decode", tmp_path / "s.rvq", tmp_path / "s.wav", "--model", tiny_model_file).exit_code == 0
    audio, rate = sf.read(tmp_path / "s.wav", always_2d=True)
    assert rate == 8000 and audio.shape == (int(0.7 * 8000), 2)
    assert run("decode", tmp_path / "s.rvq", tmp_path / "s48.flac", "--sample-rate", "48000",
               "--model", tiny_model_file).exit_code == 0
    audio, rate = sf.read(tmp_path / "s48.flac", always_2d=True)
    assert rate == 48000 and audio.shape == (int(0.7 * 48000), 2)


def test_info_describes_the_stream(rvq_file):
    result = run("info", rvq_file)
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert "1.300 s (20800 samples at 16000 Hz)" in out
    assert "6 x 6 bits" in out and "1.80 kbps nominal" in out
    assert "channels     1" in out and "overhead" in out


def test_existing_output_needs_force(tmp_path, wav_file, rvq_file, tiny_model_file):
    before = rvq_file.read_bytes()
    result = run("encode", wav_file, rvq_file, "--kbps", "1.5", "--model", tiny_model_file)
    one_line_error(result, "exists", "--force")
    assert rvq_file.read_bytes() == before
    assert run("encode", wav_file, rvq_file, "--kbps", "2.4", "--model", tiny_model_file, "--force").exit_code == 0
    assert rvq_file.read_bytes() != before


def test_input_is_never_overwritten(wav_file, tiny_model_file):
    before = wav_file.read_bytes()
    result = run("encode", wav_file, wav_file, "--force", "--kbps", "1.8", "--model", tiny_model_file)
    one_line_error(result)
    assert wav_file.read_bytes() == before


# -- bad input: one clear line, non-zero exit, no output ---------------------------

def no_outputs(directory: Path, *keep: Path) -> bool:
    return sorted(directory.iterdir()) == sorted(keep)


@pytest.mark.parametrize("make,fragment", [
    (lambda d: d / "missing.wav", "no such file"),
    (lambda d: (d / "text.wav").write_text("hello, not audio") and d / "text.wav", "not an audio file"),
    (lambda d: d, "is a directory"),
    (lambda d: (d / "empty.wav").write_bytes(b"") or d / "empty.wav", "empty"),
])
def test_unusable_input_files(tmp_path, tiny_model_file, make, fragment):
    src_dir = tmp_path / "src"
    src_dir.mkdir()
    src = make(src_dir)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    one_line_error(run("encode", src, out_dir / "x.rvq", "--model", tiny_model_file, "--kbps", "1.8"), fragment)
    assert no_outputs(out_dir)


@pytest.mark.parametrize("samples,fragment", [
    (np.zeros((0, 1), np.float32), "no audio samples"),
    (np.zeros((1600, 1), np.float32), "silent"),
    (np.array([[0.1], [np.nan], [0.2]] * 100, np.float32), "NaN"),
    (np.array([[0.1], [np.inf], [0.2]] * 100, np.float32), "NaN or infinite"),
])
def test_unusable_audio(tmp_path, tiny_model_file, samples, fragment):
    src = tmp_path / "in.wav"
    sf.write(src, samples, 16000, subtype="FLOAT")
    one_line_error(run("encode", src, tmp_path / "x.rvq", "--model", tiny_model_file, "--kbps", "1.8"), fragment)
    assert not (tmp_path / "x.rvq").exists()


@pytest.mark.parametrize("kbps", ["0.1", "100", "-3", "nan"])
def test_absurd_bitrate(tmp_path, wav_file, tiny_model_file, kbps):
    one_line_error(run("encode", wav_file, tmp_path / "x.rvq", "--kbps", kbps, "--model", tiny_model_file),
                   "outside this model's range", "0.3 to 2.4 kbps")
    assert not (tmp_path / "x.rvq").exists()


def test_bitstream_from_another_model(tmp_path, rvq_file, tiny_model_file):
    other = CodecModel(tiny_config())       # same shape, different weights
    other_path = tmp_path / "other.safetensors"
    digest = save_model(other, other_path)
    result = run("decode", rvq_file, tmp_path / "out.wav", "--model", other_path)
    one_line_error(result, digest[:16], "made by model")
    assert not (tmp_path / "out.wav").exists()


def test_bitstream_with_more_levels_than_its_model(tmp_path, rvq_file, tiny_model_file):
    """A well-formed stream (valid CRCs) whose header claims levels the model does not have."""
    header = StreamHeader.from_bytes(rvq_file.read_bytes()[:HEADER_SIZE])
    header = dataclasses.replace(header, levels=9)                  # the tiny model has 8
    frames = -(-header.num_samples * header.sample_rate // header.original_sample_rate // header.hop)
    codes = np.random.randint(0, 64, (header.channels, 9, frames))
    bad = tmp_path / "bad.rvq"
    bad.write_bytes(encode_bytes(header, codes, header.num_samples))
    one_line_error(run("decode", bad, tmp_path / "out.wav", "--model", tiny_model_file), "9 levels")
    assert not (tmp_path / "out.wav").exists()


def test_too_many_channels(tmp_path, tiny_model_file):
    src = tmp_path / "many.wav"
    sf.write(src, np.random.uniform(-0.5, 0.5, (1600, 256)).astype(np.float32), 16000, subtype="FLOAT")
    one_line_error(run("encode", src, tmp_path / "x.rvq", "--model", tiny_model_file, "--kbps", "1.8"),
                   "256 channels")
    assert not (tmp_path / "x.rvq").exists()


def corrupt(data: bytes, offset: int) -> bytes:
    return data[:offset] + bytes([data[offset] ^ 0x40]) + data[offset + 1:]


@pytest.mark.parametrize("damage,fragment", [
    (lambda d: corrupt(d, HEADER_SIZE + 5), "packet 0"),
    (lambda d: d[: len(d) // 2], "truncated"),
    (lambda d: d[:HEADER_SIZE - 3], "truncated"),
    (lambda d: b"RIFF" + d[4:], "not a .rvq"),
    (lambda d: d[:4] + bytes([9]) + d[5:], "version 9"),
    (lambda d: b"", "not a .rvq"),
])
def test_damaged_bitstreams(tmp_path, rvq_file, tiny_model_file, damage, fragment):
    bad = tmp_path / "bad.rvq"
    bad.write_bytes(damage(rvq_file.read_bytes()))
    one_line_error(run("decode", bad, tmp_path / "out.wav", "--model", tiny_model_file), fragment)
    assert not (tmp_path / "out.wav").exists()
    one_line_error(run("info", bad))


def test_unsupported_output_format(tmp_path, rvq_file, tiny_model_file):
    one_line_error(run("decode", rvq_file, tmp_path / "out.mp3", "--model", tiny_model_file), ".mp3")


# -- the real command, as a user runs it ---------------------------------------------

def codec_cmd(*args, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "codec", *map(str, args)], input=stdin,
                          capture_output=True, timeout=120)


def test_pipes_and_no_traceback(tmp_path, wav_file, tiny_model_file):
    encoded = codec_cmd("encode", "-", "-", "--kbps", "1.8", "--model", tiny_model_file,
                        stdin=wav_file.read_bytes())
    assert encoded.returncode == 0, encoded.stderr.decode()
    # standard input is measured as the file is: the same gain
    from codec.loudness import gain_db
    from codec.model import load_model
    wav, rate = sf.read(wav_file, dtype="float32", always_2d=True)
    expected = gain_db(wav.T, rate, load_model(tiny_model_file).config.input_dbfs)
    assert StreamHeader.from_bytes(encoded.stdout).gain_db == expected != 0
    decoded = codec_cmd("decode", "-", "-", "--model", tiny_model_file, stdin=encoded.stdout)
    assert decoded.returncode == 0, decoded.stderr.decode()
    audio, rate = sf.read(__import__("io").BytesIO(decoded.stdout))
    assert rate == 16000 and len(audio) == int(1.3 * 16000)
    broken = codec_cmd("decode", "-", tmp_path / "x.wav", "--model", tiny_model_file, stdin=encoded.stdout[:-7])
    assert broken.returncode != 0
    assert b"Traceback" not in broken.stderr and b"truncated" in broken.stderr
    assert not (tmp_path / "x.wav").exists()


# -- damaged packets: an error that locates them, or --conceal ---------------------------


def three_second_stream(tmp_path, tiny_model_file) -> tuple[Path, bytes]:
    src = tmp_path / "three.wav"
    sf.write(src, speech_like(3.0).T, 16000, subtype="PCM_16")
    rvq = tmp_path / "three.rvq"
    assert run("encode", src, rvq, "--kbps", "1.8", "--model", tiny_model_file).exit_code == 0
    return rvq, rvq.read_bytes()


def damage_packet(data: bytes, index: int, bits_per_frame: int, frames_per_packet: int = 50) -> bytes:
    """Flip a payload byte of packet ``index`` (all packets before it are full)."""
    packet = 2 + (frames_per_packet * bits_per_frame + 7) // 8 + 4
    return corrupt(data, HEADER_SIZE + index * packet + 2 + 10)


def test_a_damaged_packet_is_named_with_its_time(tmp_path, tiny_model_file):
    rvq, data = three_second_stream(tmp_path, tiny_model_file)
    rvq.write_bytes(damage_packet(data, 1, bits_per_frame=6 * 6))   # 1.8 kbps: 6 levels of 6 bits
    one_line_error(run("decode", rvq, tmp_path / "out.wav", "--model", tiny_model_file),
                   "packet 1 (at 1.00 s)", "CRC")
    assert not (tmp_path / "out.wav").exists()


@pytest.mark.parametrize("damage", ["payload", "count", "smaller count"])
def test_conceal_fills_damaged_packets_with_silence(tmp_path, tiny_model_file, damage):
    rvq, data = three_second_stream(tmp_path, tiny_model_file)
    assert StreamHeader.from_bytes(data).gain_db != 0   # concealed silence stays silence after the gain
    clean = tmp_path / "clean.wav"
    assert run("decode", rvq, clean, "--model", tiny_model_file).exit_code == 0
    if damage == "payload":
        bad = damage_packet(data, 1, bits_per_frame=6 * 6)   # 1.8 kbps: 6 levels of 6 bits
    else:                                  # a count no packet can have (> 50), or a wrong one (49)
        packet = 2 + (50 * 6 * 6 + 7) // 8 + 4
        count = b"\xff\xff" if damage == "count" else (49).to_bytes(2, "little")
        bad = data[:HEADER_SIZE + packet] + count + data[HEADER_SIZE + packet + 2:]
    rvq.write_bytes(bad)
    out = tmp_path / "out.wav"
    result = run("decode", rvq, out, "--model", tiny_model_file, "--conceal")
    assert result.exit_code == 0, result.stderr
    assert "concealed 1.00 s" in result.stderr and "1 (at 1.00 s)" in result.stderr
    got, _ = sf.read(out, dtype="float32")
    want, _ = sf.read(clean, dtype="float32")
    assert got.shape == want.shape == (3 * 16000,)
    np.testing.assert_array_equal(got[:16000], want[:16000])          # before the damage: as clean
    assert not got[16000:32000].any()                                  # the damaged second: silence
    assert np.abs(got[32000:]).max() > 0.01                            # after it: decoded again
