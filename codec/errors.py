"""Errors that the codec reports to users.

Every failure a user can cause (a missing file, a corrupt bitstream, an absurd
bitrate) is raised as a `CodecError` subclass with a message that stands on its
own as one line. The CLI prints that line and exits non-zero; anything else that
escapes is a bug in the codec, not in the user's input.
"""


class CodecError(Exception):
    """Base class for every error caused by input rather than by a bug."""


class AudioError(CodecError):
    """Audio that cannot be read, written or coded (missing, not audio, empty, NaN...)."""


class BitstreamError(CodecError):
    """A .rvq stream that is not one, is corrupt or truncated, or has an unknown version."""


class ModelError(CodecError):
    """A model file that is missing, tampered with, or does not match a bitstream."""


class BitrateError(CodecError):
    """A requested bitrate outside what the model can deliver."""


def whole_number(name: str, value: int, minimum: int) -> int:
    """``value`` if it is an int of at least ``minimum``; else ValueError naming ``name``.

    For arguments that count things (beam widths, search steps), where a float or a
    bool would be a caller's mistake rather than a user's input.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be a whole number of at least {minimum}, got {value!r}")
    return value
