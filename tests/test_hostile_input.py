"""Hostile input end to end: malformed audio through `codec encode` and `codec decode`, and
runs interrupted by signals or by a full disk. Either the audio codes and decodes to the
right shape, or the command says what is wrong in one line and leaves nothing behind."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf


from .conftest import one_line_error, run, speech_like

ROOT = Path(__file__).resolve().parent.parent


def speech(seconds: float, rate: int = 16000, channels: int = 1) -> np.ndarray:
    """``[samples, channels]`` float32."""
    return speech_like(seconds, rate=rate, channels=channels).T


# name -> (samples [n, channels], rate, subtype)
CODABLE = {
    "one sample": (np.array([[0.3]], np.float32), 16000, "PCM_16"),
    "full-scale clipping": (np.sign(speech(1.0)) * 1.0, 16000, "PCM_16"),
    "DC offset": (np.clip(speech(1.0) * 0.3 + 0.5, -1, 1), 16000, "PCM_16"),
    "8-bit": (speech(0.7), 16000, "PCM_U8"),
    "24-bit": (speech(0.7), 16000, "PCM_24"),
    "32-bit float": (speech(0.7), 16000, "FLOAT"),
    "8 kHz": (speech(0.7, rate=8000), 8000, "PCM_16"),
    "96 kHz": (speech(0.5, rate=96000), 96000, "PCM_16"),
    "6 channels": (speech(0.5, channels=6), 16000, "PCM_16"),
}


@pytest.mark.parametrize("name", sorted(CODABLE))
def test_unusual_audio_codes_and_comes_back_in_shape(tmp_path, shared_tiny_model_file, name):
    samples, rate, subtype = CODABLE[name]
    src, rvq, out = tmp_path / "in.wav", tmp_path / "in.rvq", tmp_path / "out.wav"
    sf.write(src, samples, rate, subtype=subtype)
    result = run("encode", src, rvq, "--kbps", "1.8", "--model", shared_tiny_model_file)
    assert result.exit_code == 0, result.stderr
    result = run("decode", rvq, out, "--model", shared_tiny_model_file)
    assert result.exit_code == 0, result.stderr
    info = sf.info(out)
    assert (info.frames, info.channels, info.samplerate) == (samples.shape[0], samples.shape[1], rate)
    decoded, _ = sf.read(out, dtype="float32")
    assert np.isfinite(decoded).all()


def write_nan(path: Path) -> None:
    wav = speech(0.5)
    wav[100] = np.nan
    sf.write(path, wav, 16000, subtype="FLOAT")


def write_inf(path: Path) -> None:
    wav = speech(0.5)
    wav[100] = np.inf
    sf.write(path, wav, 16000, subtype="FLOAT")


def write_overclaiming_wav(path: Path) -> None:
    """A WAV whose data chunk claims ten times the samples it holds."""
    sf.write(path, speech(0.1), 16000, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    at = data.index(b"data")
    data[at + 4:at + 8] = (10 * 1600 * 2).to_bytes(4, "little")
    path.write_bytes(bytes(data))


REFUSED = {
    "zero length": (lambda p: sf.write(p, np.zeros((0, 1), np.float32), 16000), "no audio samples"),
    "silence": (lambda p: sf.write(p, np.zeros((8000, 1), np.float32), 16000), "silent"),
    "NaN": (write_nan, "NaN or infinite"),
    "Inf": (write_inf, "NaN or infinite"),
    "text named .wav": (lambda p: p.write_text("not audio at all\n"), "not an audio file"),
    "directory": (lambda p: p.mkdir(), "is a directory"),
    "empty file": (lambda p: p.write_bytes(b""), "empty file"),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_bad_audio_gets_one_line_and_no_output(tmp_path, shared_tiny_model_file, name):
    make, fragment = REFUSED[name]
    src = tmp_path / "in.wav"
    make(src)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    result = run("encode", src, out_dir / "x.rvq", "--kbps", "1.8", "--model", shared_tiny_model_file)
    one_line_error(result, fragment)
    assert list(out_dir.iterdir()) == []


def test_a_wav_that_claims_more_samples_than_it_holds(tmp_path, shared_tiny_model_file):
    src, rvq, out = tmp_path / "over.wav", tmp_path / "over.rvq", tmp_path / "out.wav"
    write_overclaiming_wav(src)
    assert run("encode", src, rvq, "--kbps", "1.8", "--model", shared_tiny_model_file).exit_code == 0
    assert run("decode", rvq, out, "--model", shared_tiny_model_file).exit_code == 0
    assert sf.info(out).frames == 1600                    # what it holds, not what it claims


# -- interruptions and write errors -------------------------------------------------------


def codec_process(*args, setup=None, stdin=None) -> subprocess.Popen:
    """`codec ARGS` in a child process with SIGINT at its default, as in a terminal (a test
    runner started in the background inherits SIGINT ignored, and Python keeps it so)."""
    def child_setup() -> None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        if setup is not None:
            setup()
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    return subprocess.Popen([sys.executable, "-m", "codec", *map(str, args)], env=env, preexec_fn=child_setup,
                            stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for_part_file(directory: Path, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(p.name.endswith(".part") for p in directory.iterdir()):
            return
        assert proc.poll() is None, proc.stderr.read().decode()
        time.sleep(0.02)
    raise AssertionError("the command never started writing")


@pytest.fixture
def long_wav(tmp_path) -> Path:
    """Half a minute of sound: long enough to be caught mid-way by a signal."""
    path = tmp_path / "long.wav"
    sf.write(path, np.tile(speech(3.0), (10, 1)), 16000, subtype="PCM_16")
    return path


def command_args(command: str, wav: Path, out_dir: Path, model_file: Path) -> list:
    """Arguments of `codec encode` of ``wav``, or of `codec decode` of its stream, into ``out_dir``."""
    if command == "encode":
        return ["encode", wav, out_dir / "long.rvq", "--kbps", "2.4", "--refine", "0", "--model", model_file]
    rvq = wav.with_suffix(".rvq")
    assert run("encode", wav, rvq, "--kbps", "2.4", "--refine", "0", "--model", model_file).exit_code == 0
    return ["decode", rvq, out_dir / "long.wav", "--model", model_file]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("command", ["encode", "decode"])
def test_a_signal_mid_way_leaves_no_output(tmp_path, shared_tiny_model_file, long_wav, signum, command):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    args = command_args(command, long_wav, out_dir, shared_tiny_model_file)
    stream = None
    if command == "decode":
        # the stream arrives on stdin, and its second half only after the signal: the decoder
        # is then certain to be mid-way, however fast it runs or however loaded the machine is
        stream = Path(args[1]).read_bytes()
        args[1] = "-"
    proc = codec_process(*args, stdin=None if stream is None else subprocess.PIPE)
    try:
        if stream is not None:
            proc.stdin.write(stream[: len(stream) // 2])
            proc.stdin.flush()
        wait_for_part_file(out_dir, proc)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=60)         # closes stdin, if the decoder still reads it
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert b"Traceback" not in err
    assert list(out_dir.iterdir()) == []


def limit_file_size() -> None:
    """In the child: files may not grow past 4 kB, and writing past that fails with EFBIG
    (the signal that would otherwise kill the process is ignored), as on a full disk."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4_000, 4_000))


@pytest.mark.parametrize("command", ["encode", "decode"])
def test_a_write_error_gives_one_line_and_no_output(tmp_path, shared_tiny_model_file, long_wav, command):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    args = command_args(command, long_wav, out_dir, shared_tiny_model_file)
    proc = codec_process(*args, setup=limit_file_size)
    _, err = proc.communicate(timeout=300)
    lines = err.decode().strip().splitlines()
    assert proc.returncode != 0
    assert len(lines) == 1 and lines[0].startswith("codec: error: cannot write"), err
    assert list(out_dir.iterdir()) == []
