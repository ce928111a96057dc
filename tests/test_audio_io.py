"""Reading, checking and writing audio; atomic output files; resampling.

Every file is made here, small, in tmp_path: the whole module runs in seconds.
"""

from __future__ import annotations

import errno
import io
import os
import struct
import sys
import types

import numpy as np
import pytest
import soundfile as sf
import torch

from codec import fileio
from codec.audio import AudioReader, check_audio, format_for_path, is_silent, read_audio, resample, write_audio
from codec.errors import AudioError, CodecError
from codec.fileio import atomic_output, open_input, refuse_same_file

RATE = 16000


def tone(channels: int = 1, samples: int = 1600, rate: int = RATE) -> np.ndarray:
    """float32 [channels, samples]: a different sine per channel, peak 0.5."""
    t = np.arange(samples) / rate
    return np.stack([0.5 * np.sin(2 * np.pi * (220 + 110 * c) * t) for c in range(channels)]).astype(np.float32)


def write_file(path, wav: np.ndarray, rate: int = RATE, **kwargs) -> str:
    sf.write(str(path), wav.T, rate, **kwargs)
    return str(path)


def leftovers(directory) -> list[str]:
    return sorted(os.listdir(directory))


# --- reading ------------------------------------------------------------------

@pytest.mark.parametrize("name, fmt, subtype, tolerance", [
    ("u8.wav", "WAV", "PCM_U8", 1e-2),
    ("s16.wav", "WAV", "PCM_16", 1e-4),
    ("s24.wav", "WAV", "PCM_24", 1e-6),
    ("s32.wav", "WAV", "PCM_32", 1e-8),
    ("f32.wav", "WAV", "FLOAT", 0.0),
    ("s16.flac", "FLAC", "PCM_16", 1e-4),
    ("s24.flac", "FLAC", "PCM_24", 1e-6),
])
def test_lossless_round_trip(tmp_path, name, fmt, subtype, tolerance):
    wav = tone(2)
    path = write_file(tmp_path / name, wav, format=fmt, subtype=subtype)
    got, rate = read_audio(path)
    assert rate == RATE and got.dtype == np.float32 and got.shape == wav.shape
    assert np.abs(got - wav).max() <= tolerance


def test_ogg_vorbis_round_trip(tmp_path):
    wav = tone(1, samples=8000)
    got, rate = read_audio(write_file(tmp_path / "a.ogg", wav, format="OGG", subtype="VORBIS"))
    assert rate == RATE and got.shape[0] == 1 and abs(got.shape[1] - wav.shape[1]) < 100
    n = min(got.shape[1], wav.shape[1])
    # Lossy: compare energy rather than samples.
    assert abs(np.sqrt(np.mean(got[:, :n] ** 2)) - np.sqrt(np.mean(wav[:, :n] ** 2))) < 0.05


def test_multichannel_shape(tmp_path):
    got, _ = read_audio(write_file(tmp_path / "six.wav", tone(6, samples=500)))
    assert got.shape == (6, 500) and got.flags.c_contiguous


@pytest.mark.parametrize("rate", [8000, 96000])
def test_sample_rate_reported(tmp_path, rate):
    assert read_audio(write_file(tmp_path / "r.wav", tone(1, 800, rate), rate))[1] == rate


def test_shipped_sample_reads():
    from tests.conftest import SAMPLES
    wav, rate = read_audio(str(SAMPLES / "speechocean_0094.flac"))
    assert wav.ndim == 2 and wav.shape[1] > rate // 2 and not is_silent(wav)


def test_read_from_stdin(tmp_path, monkeypatch):
    data = open(write_file(tmp_path / "a.flac", tone(1), format="FLAC"), "rb").read()
    monkeypatch.setattr(sys, "stdin", types.SimpleNamespace(buffer=io.BytesIO(data)))
    got, rate = read_audio("-")
    assert got.shape == (1, 1600) and rate == RATE


def test_header_claiming_more_samples_reads_what_is_there(tmp_path):
    # libsndfile trims the data chunk's claimed length to what the file holds.
    buffer = io.BytesIO()
    sf.write(buffer, tone(1, 1000).T, RATE, format="WAV", subtype="PCM_16")
    data = bytearray(buffer.getvalue())
    at = data.index(b"data")
    data[at + 4:at + 8] = struct.pack("<I", 10 * 2000)     # claims 10000 samples, holds 1000
    path = tmp_path / "over.wav"
    path.write_bytes(bytes(data))
    assert read_audio(str(path))[0].shape == (1, 1000)
    path.write_bytes(bytes(data[:44 + 600]))              # cut in the middle of the data
    assert read_audio(str(path))[0].shape == (1, 300)


# --- reading errors -------------------------------------------------------------

def expect_audio_error(path, *fragments):
    with pytest.raises(AudioError) as info:
        read_audio(str(path))
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    for fragment in fragments:
        assert fragment in message
    return message


def test_text_file_named_wav(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("these are not samples\n")
    expect_audio_error(path, "is not an audio file soundfile can read", "format not recognised")


def test_directory(tmp_path):
    expect_audio_error(tmp_path, "is a directory")


def test_missing_file(tmp_path):
    expect_audio_error(tmp_path / "absent.wav", "no such file")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root can read any file")
def test_unreadable_file(tmp_path):
    path = write_file(tmp_path / "locked.wav", tone())
    os.chmod(path, 0)
    try:
        expect_audio_error(path, "cannot read", "Permission denied")
    finally:
        os.chmod(path, 0o644)


def test_unreadable_file_simulated(tmp_path, monkeypatch):
    # Runs even as root: the open itself is made to fail the way chmod 000 would.
    path = write_file(tmp_path / "locked.wav", tone())

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", path)
    monkeypatch.setattr(fileio, "open", refuse, raising=False)
    expect_audio_error(path, "cannot read", "Permission denied")


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    expect_audio_error(path, "empty file")


def test_wav_with_no_samples(tmp_path):
    expect_audio_error(write_file(tmp_path / "none.wav", np.zeros((1, 0), np.float32)), "contains no audio samples")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples(tmp_path, bad):
    wav = tone()
    wav[0, 100] = bad
    expect_audio_error(write_file(tmp_path / "bad.wav", wav, subtype="FLOAT"), "NaN or infinite")


def test_silence_is_flagged_by_check_not_by_read(tmp_path):
    path = write_file(tmp_path / "quiet.wav", np.zeros((1, 100), np.float32))
    wav, _ = read_audio(path)
    assert is_silent(wav) and not is_silent(tone())
    check_audio(wav, path, reject_silence=False)
    with pytest.raises(AudioError, match="is silent"):
        check_audio(wav, path)


# --- writing ------------------------------------------------------------------------

@pytest.mark.parametrize("path, fmt", [("a.wav", "WAV"), ("b.FLAC", "FLAC"), ("c.ogg", "OGG"), ("-", "WAV")])
def test_format_for_path(path, fmt):
    assert format_for_path(path) == fmt


def test_unknown_extension_lists_supported():
    with pytest.raises(AudioError, match=r"\.wav, \.flac, \.ogg"):
        format_for_path("out.mp3")


@pytest.mark.parametrize("fmt", ["WAV", "FLAC", "OGG"])
def test_write_audio_formats(fmt):
    buffer = io.BytesIO()
    write_audio(buffer, torch.from_numpy(tone(2, 4000)), RATE, format=fmt)
    got, rate = sf.read(io.BytesIO(buffer.getvalue()), dtype="float32", always_2d=True)
    assert rate == RATE and got.shape[1] == 2


def test_write_audio_clips_instead_of_wrapping():
    buffer = io.BytesIO()
    write_audio(buffer, np.array([[1.5, -1.5, 0.25]], np.float32), RATE, subtype="PCM_16")
    got, _ = sf.read(io.BytesIO(buffer.getvalue()), dtype="float32")
    assert got[0] > 0.99 and got[1] < -0.99 and abs(got[2] - 0.25) < 1e-4


def test_flac_channel_limit_is_explained():
    with pytest.raises(AudioError, match="at most 8 channels"):
        write_audio(io.BytesIO(), tone(9, 100), RATE, format="FLAC")


# --- atomic output ------------------------------------------------------------------

def test_atomic_output_success(tmp_path):
    path = tmp_path / "out.bin"
    with atomic_output(str(path)) as f:
        f.write(b"payload")
        assert not path.exists()                 # nothing under the final name until done
    assert path.read_bytes() == b"payload" and leftovers(tmp_path) == ["out.bin"]
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_atomic_output_exception_leaves_nothing(tmp_path):
    for error in (RuntimeError, KeyboardInterrupt, SystemExit):
        with pytest.raises(error):
            with atomic_output(str(tmp_path / "out.bin")) as f:
                f.write(b"half")
                raise error()
        assert leftovers(tmp_path) == []


def test_atomic_output_refuses_existing(tmp_path):
    path = tmp_path / "out.bin"
    path.write_bytes(b"precious")
    with pytest.raises(CodecError, match="exists; use --force to overwrite"):
        with atomic_output(str(path)) as f:
            f.write(b"new")
    assert path.read_bytes() == b"precious" and leftovers(tmp_path) == ["out.bin"]
    with atomic_output(str(path), force=True) as f:
        f.write(b"new")
    assert path.read_bytes() == b"new" and leftovers(tmp_path) == ["out.bin"]


def test_atomic_output_refuses_directory(tmp_path):
    with pytest.raises(CodecError, match="is a directory"):
        with atomic_output(str(tmp_path), force=True):
            pass


def test_atomic_output_missing_directory(tmp_path):
    with pytest.raises(CodecError, match="cannot write .*No such file or directory"):
        with atomic_output(str(tmp_path / "nowhere" / "out.wav")):
            pass


def test_atomic_output_disk_full(tmp_path):
    path = tmp_path / "out.wav"

    def full(*args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    with pytest.raises(CodecError) as info:
        with atomic_output(str(path)) as f:
            f.write = full
            f.write(b"RIFF")
    assert str(info.value) == f"cannot write {path}: No space left on device"
    assert leftovers(tmp_path) == []


def test_atomic_output_disk_full_on_flush(tmp_path, monkeypatch):
    # Buffered data often fails only when flushed or synced at the end.
    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(fileio.os, "fsync", full)
    with pytest.raises(CodecError, match="No space left on device"):
        with atomic_output(str(tmp_path / "out.wav")) as f:
            f.write(b"data")
    assert leftovers(tmp_path) == []


def test_atomic_output_special_file_written_directly():
    with atomic_output(os.devnull) as f:
        f.write(b"discarded")
    assert os.path.exists(os.devnull)


def test_atomic_output_stdout(monkeypatch):
    sink = io.BytesIO()
    monkeypatch.setattr(sys, "stdout", types.SimpleNamespace(buffer=sink))
    with atomic_output("-") as f:
        f.write(b"out")
    assert sink.getvalue() == b"out"


def test_refuse_same_file(tmp_path):
    path = write_file(tmp_path / "in.wav", tone())
    for output in (path, str(tmp_path / "." / "in.wav")):
        with pytest.raises(CodecError, match="is the input file"):
            refuse_same_file(path, output)
    link = tmp_path / "link.wav"
    link.symlink_to(path)
    with pytest.raises(CodecError):
        refuse_same_file(path, str(link))
    refuse_same_file(path, str(tmp_path / "out.rvq"))
    refuse_same_file("-", "-")


def test_open_input_errors(tmp_path):
    with pytest.raises(CodecError, match="no such file"):
        with open_input(str(tmp_path / "absent.rvq")):
            pass
    with pytest.raises(CodecError, match="is a directory"):
        with open_input(str(tmp_path)):
            pass


@pytest.fixture
def signal_handlers():
    """The CLI's signal handlers, installed for one test and taken away afterwards."""
    import signal
    names = [n for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n)]
    previous = {n: signal.getsignal(getattr(signal, n)) for n in names}
    hook = sys.unraisablehook
    signal.signal(signal.SIGINT, signal.default_int_handler)   # as in a terminal: CI may start us with it ignored
    fileio.install_signal_handlers()
    yield signal
    for n, handler in previous.items():
        signal.signal(getattr(signal, n), handler)
    sys.unraisablehook = hook
    fileio._received_signal = None


def test_sigterm_handler_unwinds(signal_handlers):
    with pytest.raises(SystemExit) as info:
        signal_handlers.raise_signal(signal_handlers.SIGTERM)
    assert info.value.code == 128 + signal_handlers.SIGTERM


def test_a_swallowed_signal_still_stops_the_output(tmp_path, signal_handlers):
    out = tmp_path / "out.rvq"
    with pytest.raises(SystemExit):
        with atomic_output(str(out)) as f:
            f.write(b"half")
            try:                            # as a C library's callback would
                signal_handlers.raise_signal(signal_handlers.SIGTERM)
            except SystemExit:
                pass
    assert list(tmp_path.iterdir()) == []


class SignallingBytes(io.BytesIO):
    """In-memory audio whose reads raise ``signum`` once armed, as Ctrl-C would mid-read."""

    def __init__(self, data: bytes, signum: int) -> None:
        super().__init__(data)
        self.signum, self.armed = signum, False

    def readinto(self, buffer) -> int:
        if self.armed:
            self.armed = False
            import signal
            signal.raise_signal(self.signum)
        return super().readinto(buffer)


@pytest.mark.parametrize("name", ["SIGINT", "SIGTERM"])
def test_a_signal_inside_a_soundfile_callback_is_not_lost(capfd, signal_handlers, name):
    # libsndfile reads in-memory audio through cffi callbacks, which print and drop
    # any exception: without the handlers' memory the read would go on, cut short.
    buffer = io.BytesIO()
    sf.write(buffer, np.zeros((16000 * 4, 1), np.float32) + 0.1, 16000, format="WAV")
    source = SignallingBytes(buffer.getvalue(), getattr(signal_handlers, name))
    expected = KeyboardInterrupt if name == "SIGINT" else SystemExit
    with sf.SoundFile(source) as sound:
        reader = AudioReader(sound, "in.wav")
        blocks = reader.blocks(seconds=0.5)
        next(blocks)
        source.armed = True
        with pytest.raises(expected):
            list(blocks)
    assert "Traceback" not in capfd.readouterr().err     # nor the callback's traceback printed


# --- resampling ------------------------------------------------------------------------

@pytest.mark.parametrize("src, dst", [(16000, 16000), (48000, 16000), (8000, 16000), (44100, 16000), (22051, 16000)])
def test_resample_length(src, dst):
    wav = torch.randn(2, src // 10, dtype=torch.float64)
    out = resample(wav, src, dst)
    assert out.dtype == torch.float32 and out.shape[0] == 2
    assert abs(out.shape[-1] - wav.shape[-1] * dst / src) <= 1
