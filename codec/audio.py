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
from fractions import Fraction
from typing import BinaryIO

import numpy as np
import soundfile as sf
import torch
import torchaudio

from .errors import AudioError
from .fileio import STDIO, open_input

# Output extension -> soundfile format, and the subtype each format gets by default.
FORMATS = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG"}
DEFAULT_SUBTYPES = {"WAV": "PCM_16", "FLAC": "PCM_16", "OGG": "VORBIS"}
# Subtypes stored as floats (or lossy-coded from floats) need no clipping to be representable.
_FLOAT_SUBTYPES = {"FLOAT", "DOUBLE"}


MAX_CHANNELS = 255        # the .rvq header's channel count is one byte


def _display(path: str) -> str:
    return "standard input" if path == STDIO else path


def _soundfile_reason(e: Exception) -> str:
    """libsndfile's message without its "Error opening <object>:" prefix or final period."""
    text = getattr(e, "error_string", None) or str(e) or type(e).__name__
    text = text.strip().rstrip(".")
    return text[:1].lower() + text[1:]


def _is_empty(f: BinaryIO) -> bool:
    end = f.seek(0, io.SEEK_END)
    f.seek(0)
    return end == 0


def read_audio(path: str) -> tuple[np.ndarray, int]:
    """Read an audio file ("-" for standard input).

    Returns ``(wav, sample_rate)`` with ``wav`` float32 ``[channels, samples]``;
    integer formats are scaled to [-1, 1). Raises AudioError for a missing,
    unreadable or non-audio file, no samples, or NaN/infinite samples. Silence is
    *not* rejected here: see ``check_audio`` and ``is_silent``.

    A WAV whose header claims more samples than the file holds is read up to
    where the data ends (libsndfile trims the count to the file's size).
    """
    name = _display(path)
    with open_input(path, error=AudioError) as f:
        try:
            # libsndfile needs to seek; pipes (stdin, process substitution) cannot.
            source: BinaryIO = f if path != STDIO and f.seekable() else io.BytesIO(f.read())
            if _is_empty(source):
                raise AudioError(f"{name} is an empty file (0 bytes), not audio")
        except OSError as e:
            raise AudioError(f"cannot read {name}: {e.strerror or e}") from None
        try:
            sound = sf.SoundFile(source)
        except (sf.SoundFileError, RuntimeError, TypeError, ValueError) as e:
            raise AudioError(f"{name} is not an audio file soundfile can read ({_soundfile_reason(e)})") from None
        try:
            with sound:
                rate = sound.samplerate
                frames = sound.read(dtype="float32", always_2d=True)    # [samples, channels]
        except OSError as e:
            raise AudioError(f"cannot read {name}: {e.strerror or e}") from None
        except (sf.SoundFileError, RuntimeError, TypeError, ValueError) as e:
            raise AudioError(f"{name} is corrupt: its audio cannot be decoded ({_soundfile_reason(e)})") from None
    if rate <= 0:
        raise AudioError(f"{name} has an invalid sample rate ({rate} Hz)")
    wav = np.ascontiguousarray(frames.T)
    check_audio(wav, name, reject_silence=False)
    return wav, rate


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
    if wav.ndim == 2 and wav.shape[0] > MAX_CHANNELS:
        raise AudioError(f"{name} has {wav.shape[0]} channels; a .rvq stream holds at most {MAX_CHANNELS}")
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


def write_audio(f: BinaryIO, wav: np.ndarray | torch.Tensor, sample_rate: int, format: str = "WAV",
                subtype: str | None = None) -> None:
    """Write ``wav`` ``[channels, samples]`` (or ``[samples]``) to the open binary file ``f``.

    ``subtype`` defaults to the format's usual one (PCM_16 for WAV and FLAC,
    VORBIS for OGG). Samples are clipped to [-1, 1] first so that loud decoder
    output saturates instead of wrapping around in integer formats.
    """
    format = format.upper()
    subtype = (subtype or DEFAULT_SUBTYPES.get(format, "PCM_16")).upper()
    if not sf.check_format(format, subtype):
        raise AudioError(f"cannot write {format} audio with subtype {subtype}")
    if torch.is_tensor(wav):
        wav = wav.detach().cpu().numpy()
    wav = np.asarray(wav, dtype=np.float32)
    wav = wav[None] if wav.ndim == 1 else wav
    if wav.ndim != 2:
        raise ValueError(f"write_audio expects [channels, samples], got shape {tuple(wav.shape)}")
    # NaN has no integer value; a sample that is not a number is best written as silence.
    wav = np.nan_to_num(wav, nan=0.0, posinf=1.0, neginf=-1.0)
    if format == "FLAC" and wav.shape[0] > 8:
        # libsndfile would only say "format not recognised".
        raise AudioError(f"FLAC holds at most 8 channels, this audio has {wav.shape[0]}; write a .wav file instead")
    if subtype not in _FLOAT_SUBTYPES:
        wav = np.clip(wav, -1.0, 1.0)
    # Encode in memory first: libsndfile seeks back to patch headers, and ``f``
    # may be a pipe (standard output). Write errors then surface from f.write alone.
    buffer = io.BytesIO()
    try:
        sf.write(buffer, wav.T, sample_rate, format=format, subtype=subtype)
    except (sf.SoundFileError, RuntimeError, ValueError) as e:
        raise AudioError(f"cannot write {format} audio ({wav.shape[0]} channels, {sample_rate} Hz): "
                         f"{_soundfile_reason(e)}") from None
    f.write(buffer.getvalue())


# Above this many kernel taps (new rate x old rate, after reducing the ratio) an
# exact resampling kernel costs gigabytes: 22051 -> 16000 Hz would need ~350M.
_MAX_KERNEL_COST = 1 << 22


def resample(wav: torch.Tensor, from_rate: int, to_rate: int) -> torch.Tensor:
    """Resample float ``wav`` ``[..., samples]`` from ``from_rate`` to ``to_rate`` Hz (float32 out).

    The output has about ``samples * to_rate / from_rate`` samples. Rates whose
    exact ratio would need a huge filter bank (coprime rates like 22051 and 16000)
    use the nearest small ratio instead, a pitch error far below audibility.
    """
    if from_rate <= 0 or to_rate <= 0:
        raise AudioError(f"cannot resample from {from_rate} Hz to {to_rate} Hz")
    wav = wav.to(torch.float32)
    if from_rate == to_rate:
        return wav
    ratio = Fraction(int(to_rate), int(from_rate))
    if ratio.numerator * ratio.denominator > _MAX_KERNEL_COST:
        # cost ~ ratio * denominator^2, so bound the denominator accordingly.
        ratio = ratio.limit_denominator(max(1, math.isqrt(int(_MAX_KERNEL_COST / float(ratio)))))
    return torchaudio.functional.resample(wav, ratio.denominator, ratio.numerator)
