"""Audio in and out: reading any file soundfile understands, checking it, writing
WAV/FLAC/OGG, and resampling.

Arrays are ``[channels, samples]`` float32 at the usual [-1, 1] scale throughout.
Every failure the user can cause is an AudioError with a one-line message that
names the file; soundfile's own exceptions never escape as tracebacks.
"""

from __future__ import annotations

import io
import math
import os
import stat
from contextlib import contextmanager
from typing import BinaryIO, Iterator

import numpy as np
import soundfile as sf
import torch
from torch.nn import functional as F

from .errors import AudioError
from .rates import resampling_ratio, scaled_length
from .fileio import STDIO, open_input, raise_if_interrupted

# Output extension -> soundfile format, and the subtype each format gets by default.
FORMATS = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG"}
DEFAULT_SUBTYPES = {"WAV": "PCM_16", "FLAC": "PCM_16", "OGG": "VORBIS"}
# Subtypes stored as floats (or lossy-coded from floats) need no clipping to be representable.
_FLOAT_SUBTYPES = {"FLOAT", "DOUBLE"}


MAX_CHANNELS = 255        # the .rvq header's channel count is one byte


def _display(path: str) -> str:
    return "standard input" if path == STDIO else path


def _soundfile_reason(e: Exception) -> str:
    """libsndfile's message without its "Error opening <object>:" prefix or final period.

    Every soundfile error is explained here, so this is also where one caused by a
    signal swallowed inside a read, seek or write callback is told as what it is:
    raise_if_interrupted raises the interruption instead of a bogus "corrupt file".
    """
    raise_if_interrupted()
    text = getattr(e, "error_string", None) or str(e) or type(e).__name__
    text = text.strip().rstrip(".")
    return text[:1].lower() + text[1:]


def _is_empty(f: BinaryIO) -> bool:
    end = f.seek(0, io.SEEK_END)
    f.seek(0)
    return end == 0


class AudioReader:
    """An open audio file, read block by block: ``with open_audio(path) as audio: ...``.

    ``rate``, ``channels`` and ``frames`` (None when unknown) describe it;
    ``blocks(seconds)`` yields float32 ``[channels, n]`` arrays, checked for NaN
    and infinite samples as they come. Every failure is an AudioError naming the file.
    """

    def __init__(self, sound: sf.SoundFile, name: str) -> None:
        self.sound, self.name = sound, name
        self.rate, self.channels = sound.samplerate, sound.channels
        # libsndfile reports a FLAC stream of unknown length as 2**63 - 1 frames.
        self.frames: int | None = sound.frames if sound.seekable() and sound.frames < 2 ** 62 else None
        if self.rate <= 0:
            raise AudioError(f"{name} has an invalid sample rate ({self.rate} Hz)")

    def rewind(self) -> None:
        """Go back to the first sample, to read the audio again (open_audio's sources can seek)."""
        try:
            self.sound.seek(0)
        except (sf.SoundFileError, RuntimeError, OSError) as e:
            raise AudioError(f"cannot read {self.name} a second time ({_soundfile_reason(e)})") from None

    def blocks(self, seconds: float = 1.0) -> Iterator[np.ndarray]:
        size = max(1, int(seconds * self.rate))
        while True:
            try:
                block = self.sound.read(size, dtype="float32", always_2d=True)    # [samples, channels]
            except OSError as e:
                raise AudioError(f"cannot read {self.name}: {e.strerror or e}") from None
            except (sf.SoundFileError, RuntimeError, TypeError, ValueError) as e:
                raise AudioError(f"{self.name} is corrupt: its audio cannot be decoded "
                                 f"({_soundfile_reason(e)})") from None
            raise_if_interrupted()     # Ctrl-C may have landed in a read callback, and been lost
            if not len(block):
                return
            yield np.ascontiguousarray(block.T)


@contextmanager
def open_audio(path: str) -> Iterator[AudioReader]:
    """Open an audio file ("-" for standard input) for reading in blocks.

    A file is read where it lies, so memory does not grow with its length;
    standard input is read into memory first, because libsndfile needs to seek
    and pipes cannot. A WAV whose header claims more samples than the file holds
    is read up to where the data ends (libsndfile trims the count to the file's size).
    """
    name = _display(path)
    with open_input(path, error=AudioError) as f:
        try:
            source: BinaryIO = f if path != STDIO and f.seekable() else io.BytesIO(f.read())
            if _is_empty(source):
                raise AudioError(f"{name} is an empty file (0 bytes), not audio")
        except OSError as e:
            raise AudioError(f"cannot read {name}: {e.strerror or e}") from None
        # A regular file goes to libsndfile by descriptor, so it reads without callbacks into Python.
        fd = _file_descriptor(source)
        try:
            sound = sf.SoundFile(source if fd is None else fd, closefd=False)
        except (sf.SoundFileError, RuntimeError, TypeError, ValueError) as e:
            raise AudioError(f"{name} is not an audio file soundfile can read ({_soundfile_reason(e)})") from None
        with sound:
            yield AudioReader(sound, name)


def read_audio(path: str) -> tuple[np.ndarray, int]:
    """Read a whole audio file ("-" for standard input).

    Returns ``(wav, sample_rate)`` with ``wav`` float32 ``[channels, samples]``;
    integer formats are scaled to [-1, 1). Raises AudioError for a missing,
    unreadable or non-audio file, no samples, or NaN/infinite samples. Silence is
    *not* rejected here: see ``check_audio`` and ``is_silent``.
    """
    with open_audio(path) as audio:
        blocks = list(audio.blocks(seconds=60.0))
        wav = np.concatenate(blocks, axis=1) if blocks else np.zeros((audio.channels, 0), np.float32)
        check_audio(wav, audio.name, reject_silence=False)
        return wav, audio.rate


def is_silent(wav: np.ndarray | torch.Tensor) -> bool:
    """True when every sample is exactly zero (or there are none)."""
    return not np.any(np.asarray(wav))


def check_audio(wav: np.ndarray | torch.Tensor, name: str, reject_silence: bool = True) -> None:
    """Raise AudioError unless ``wav`` ``[channels, samples]`` holds finite, codable audio.

    ``name`` is the file name (or description) the message starts with. All-zero
    audio is rejected only when ``reject_silence``: a codec has nothing to encode
    there, but callers handling audio programmatically may want to allow it.
    """
    wav = np.asarray(wav)
    if wav.size == 0:
        raise AudioError(f"{name} contains no audio samples")
    if not np.isfinite(wav).all():
        raise AudioError(f"{name} contains NaN or infinite samples")
    if reject_silence and is_silent(wav):
        raise AudioError(f"{name} is silent (every sample is zero); nothing to encode")


def format_for_path(path: str) -> str:
    """The soundfile format ("WAV", "FLAC", "OGG") for an output path; "-" is WAV."""
    if path == STDIO:
        return "WAV"
    extension = os.path.splitext(path)[1].lower()
    if extension not in FORMATS:
        supported = ", ".join(FORMATS)
        found = f"extension {extension!r}" if extension else "no extension"
        raise AudioError(f"{path}: unsupported output format ({found}); use one of {supported}")
    return FORMATS[extension]


class AudioWriter:
    """Writes ``[channels, samples]`` blocks to an open binary file as one audio file.

    Samples are clipped to [-1, 1] (unless the subtype is float) so that loud
    decoder output saturates instead of wrapping around in integer formats, and
    NaN becomes silence. A seekable file is written as blocks arrive; a pipe
    (standard output) gets the whole file at ``close``, because libsndfile seeks
    back to patch the header. Write errors then surface from ``f.write`` alone.
    """

    def __init__(self, f: BinaryIO, sample_rate: int, channels: int, format: str = "WAV",
                 subtype: str | None = None) -> None:
        format = format.upper()
        subtype = (subtype or DEFAULT_SUBTYPES.get(format, "PCM_16")).upper()
        if not sf.check_format(format, subtype):
            raise AudioError(f"cannot write {format} audio with subtype {subtype}")
        if format == "FLAC" and channels > 8:
            # libsndfile would only say "format not recognised".
            raise AudioError(f"FLAC holds at most 8 channels, this audio has {channels}; write a .wav file instead")
        self.f, self.clip = f, subtype not in _FLOAT_SUBTYPES
        # A real file is handed to libsndfile by descriptor: it writes and seeks there itself,
        # and its errors come back as soundfile errors rather than from inside a callback.
        self.buffer, target = None, _file_descriptor(f)
        if target is None:
            self.buffer = target = io.BytesIO()
        else:
            f.flush()
        try:
            self.sound = sf.SoundFile(target, "w", sample_rate, channels, subtype, format=format, closefd=False)
        except (sf.SoundFileError, RuntimeError, ValueError) as e:
            raise AudioError(f"cannot write {format} audio ({channels} channels, {sample_rate} Hz): "
                             f"{_soundfile_reason(e)}") from None

    def write(self, wav: np.ndarray | torch.Tensor) -> None:
        if torch.is_tensor(wav):
            wav = wav.detach().cpu().numpy()
        wav = np.nan_to_num(np.asarray(wav, dtype=np.float32), nan=0.0, posinf=1.0, neginf=-1.0)
        if self.clip:
            wav = np.clip(wav, -1.0, 1.0)
        try:
            self.sound.write(wav.T)
        except (sf.SoundFileError, RuntimeError) as e:
            raise _write_error(e) from None

    def close(self) -> None:
        try:
            self.sound.close()
        except (sf.SoundFileError, RuntimeError) as e:
            raise _write_error(e) from None
        if self.buffer is not None:
            self.f.write(self.buffer.getvalue())

    def __enter__(self) -> "AudioWriter":
        return self

    def __exit__(self, kind, value, traceback) -> None:
        """Close on success; on failure, release libsndfile's hold on the descriptor now,
        before the file is closed: a handle left for the garbage collector would patch its
        header into whatever file reuses the descriptor number."""
        if kind is None:
            self.close()
            return
        try:
            self.sound.close()
        except Exception:  # noqa: BLE001 - the first error is the one to report
            pass


def _write_error(e: Exception) -> AudioError:
    reason = _soundfile_reason(e)
    if reason == "system error":    # libsndfile does not pass the OS's reason on
        reason += " (a full disk, a file size limit or a failing device)"
    return AudioError(f"cannot write audio: {reason}")


def _file_descriptor(f: BinaryIO) -> int | None:
    """The descriptor of a regular, seekable file; None for pipes, terminals and in-memory files."""
    try:
        fd = f.fileno()
        return fd if f.seekable() and stat.S_ISREG(os.fstat(fd).st_mode) else None
    except (AttributeError, OSError, io.UnsupportedOperation):
        return None


def write_audio(f: BinaryIO, wav: np.ndarray | torch.Tensor, sample_rate: int, format: str = "WAV",
                subtype: str | None = None) -> None:
    """Write ``wav`` ``[channels, samples]`` (or ``[samples]``) to the open binary file ``f``.

    ``subtype`` defaults to the format's usual one (PCM_16 for WAV and FLAC, VORBIS for OGG).
    """
    wav = wav[None] if wav.ndim == 1 else wav
    if wav.ndim != 2:
        raise ValueError(f"write_audio expects [channels, samples], got shape {tuple(wav.shape)}")
    with AudioWriter(f, sample_rate, wav.shape[0], format, subtype) as writer:
        writer.write(wav)




class StreamingResampler:
    """torchaudio's sinc resampling, computed on a stream in fixed units.

    With the ratio reduced to ``new / orig``, each block of ``orig`` input samples
    gives ``new`` output samples, and block ``b`` needs the input from
    ``b * orig - width`` to ``(b + 1) * orig + width`` (the kernel's reach). The
    stream is cut into units of ``unit`` blocks (about 20 ms), each computed by one
    convolution of always the same size, so the output does not depend on how the
    input was chunked: every call does the same arithmetic on the same numbers.
    The latency is one unit plus the kernel's reach; ``flush`` pads the end with
    zeros, as the whole-file ``resample`` does, and trims to
    ``ceil(samples * new / orig)`` output samples.

    ``push(chunk [channels, n]) -> [channels, m]``; ``flush() -> [channels, m']``.
    """

    def __init__(self, from_rate: int, to_rate: int, channels: int, unit_seconds: float = 0.02) -> None:
        ratio = self.ratio = resampling_ratio(from_rate, to_rate)
        self.identity = ratio == 1
        self.channels = channels
        self.samples_in = self.samples_out = 0
        if self.identity:
            return
        self.orig, self.new = ratio.denominator, ratio.numerator
        import torchaudio  # here, not at the top: coding at the model's own rate needs only torch
        transform = torchaudio.transforms.Resample(self.orig, self.new)
        self.kernel, self.width = transform.kernel, transform.width        # [new, 1, 2 * width + orig]
        self.unit = max(1, math.ceil(unit_seconds * from_rate / self.orig))  # blocks per unit
        # Input from (next block * orig - width) on; starts with the whole-file pass's zero padding.
        self.pending = torch.zeros(channels, self.width)

    def push(self, chunk: torch.Tensor) -> torch.Tensor:
        chunk = torch.as_tensor(chunk, dtype=torch.float32)
        self.samples_in += chunk.shape[-1]
        if self.identity:
            return chunk
        self.pending = torch.cat([self.pending, chunk], dim=-1)
        return self._units(final=False)

    def flush(self) -> torch.Tensor:
        if self.identity:
            return torch.zeros(self.channels, 0)
        return self._units(final=True)

    def _units(self, final: bool) -> torch.Tensor:
        span = self.unit * self.orig                       # input samples one unit advances
        needed = span + 2 * self.width                     # input samples one unit reads
        target = scaled_length(self.samples_in, self.ratio)
        outputs = []
        while True:
            if self.pending.shape[-1] < needed:
                if not final or self.samples_out >= target:
                    break
                self.pending = F.pad(self.pending, (0, needed - self.pending.shape[-1]))
            piece = self.pending[:, :needed]
            y = F.conv1d(piece[:, None], self.kernel, stride=self.orig)  # [C, new, unit]
            outputs.append(y.transpose(1, 2).reshape(self.channels, -1))
            self.pending = self.pending[:, span:]
            self.samples_out += self.unit * self.new
        out = torch.cat(outputs, dim=-1) if outputs else torch.zeros(self.channels, 0)
        if final:   # the zero padding made samples past the end of the input: drop them
            excess = self.samples_out - target
            out = out[:, : out.shape[-1] - max(0, excess)]
            self.samples_out = target
        return out


def resample(wav: torch.Tensor, from_rate: int, to_rate: int) -> torch.Tensor:
    """Resample float ``wav`` ``[..., samples]`` from ``from_rate`` to ``to_rate`` Hz (float32 out).

    The output has about ``samples * to_rate / from_rate`` samples. Rates whose
    exact ratio would need a huge filter bank (coprime rates like 22051 and 16000)
    use the nearest small ratio instead, a pitch error far below audibility.
    """
    ratio = resampling_ratio(from_rate, to_rate)
    wav = wav.to(torch.float32)
    if ratio == 1:
        return wav
    import torchaudio  # here, not at the top: coding at the model's own rate needs only torch
    return torchaudio.functional.resample(wav, ratio.denominator, ratio.numerator)
