"""Safe file handling for the command line: inputs that fail with one clear line,
outputs that appear whole or not at all.

An output is written to a hidden temporary file beside its destination, synced to
disk, then renamed over the destination in one step. A crash, a full disk, Ctrl-C
or SIGTERM therefore never leaves a half-written file under the name the user
asked for, and never destroys the file that was there before.

"-" stands for standard input or standard output throughout.
"""

from __future__ import annotations

import os
import signal
import stat
import sys
import tempfile
import threading
from contextlib import contextmanager
from typing import BinaryIO, Iterator

from .errors import CodecError

STDIO = "-"


def _reason(e: OSError) -> str:
    """The human part of an OSError ("No space left on device"), without errno or path."""
    return e.strerror or str(e) or type(e).__name__


def _current_umask() -> int:
    # The only portable way to read the umask is to set it and put it back.
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_output(path: str, force: bool = False, binary: bool = True) -> Iterator[BinaryIO]:
    """Yield a writable binary file that becomes ``path`` only if the block succeeds.

    ``path == "-"`` yields standard output (nothing to rename). An existing file is
    refused unless ``force``; a directory is always refused. Special files that
    exist (``/dev/null``, a FIFO) are written directly: they cannot be replaced and
    hold nothing to protect. Any OSError while writing becomes a one-line
    CodecError; on any exception, KeyboardInterrupt and SystemExit included, the
    temporary file is removed and the exception propagates.

    ``binary`` is accepted for symmetry with ``open``; only binary output is supported.
    """
    if not binary:
        raise ValueError("atomic_output writes binary files only")

    if path == STDIO:
        out = sys.stdout.buffer
        try:
            yield out
            out.flush()
        except BrokenPipeError:
            raise                  # the reader went away: the CLI handles this itself
        except OSError as e:
            raise CodecError(f"cannot write to standard output: {_reason(e)}") from None
        return

    if os.path.isdir(path):
        raise CodecError(f"{path} is a directory; give a file name for the output")
    try:
        st = os.stat(path)         # follows symlinks: what would actually be written
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise CodecError(f"cannot write {path}: {_reason(e)}") from None

    if st is not None and not stat.S_ISREG(st.st_mode):
        # /dev/null, a FIFO, a terminal: no rename is possible or wanted.
        try:
            with open(path, "wb") as out:
                yield out
        except OSError as e:
            raise CodecError(f"cannot write {path}: {_reason(e)}") from None
        return

    if os.path.lexists(path) and not force:
        raise CodecError(f"{path} exists; use --force to overwrite")

    # Write where a symlink points, so the link itself survives an overwrite; the
    # temporary file must sit in that same directory for the rename to be atomic.
    target = os.path.realpath(path)
    directory = os.path.dirname(target) or "."
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", suffix=".part", dir=directory)
    except OSError as e:
        raise CodecError(f"cannot write {path}: {_reason(e)}") from None

    committed = False
    try:
        with os.fdopen(fd, "wb") as out:
            # mkstemp makes the file 0600; the output should look like any new file.
            os.fchmod(out.fileno(), 0o666 & ~_current_umask())
            yield out
            raise_if_interrupted()     # a signal lost inside a callback must not let this commit
            out.flush()
            os.fsync(out.fileno())     # data on disk before the name points at it
        os.replace(tmp, target)
        committed = True
        _sync_directory(directory)
    except OSError as e:
        raise CodecError(f"cannot write {path}: {_reason(e)}") from None
    finally:
        if not committed:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def _sync_directory(directory: str) -> None:
    """Make the rename itself durable; harmless to skip where a platform cannot."""
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def refuse_same_file(input_path: str, output_path: str) -> None:
    """Raise CodecError if writing ``output_path`` would overwrite ``input_path``.

    Catches the same name, symlinks (via realpath) and hard links or
    case-insensitive names (via samefile, when both exist). "-" never clashes.
    """
    if STDIO in (input_path, output_path):
        return
    same = os.path.realpath(input_path) == os.path.realpath(output_path)
    if not same and os.path.exists(input_path) and os.path.exists(output_path):
        try:
            same = os.path.samefile(input_path, output_path)
        except OSError:
            same = False
    if same:
        raise CodecError(f"{output_path} is the input file; choose a different output name")


@contextmanager
def open_input(path: str, error: type[CodecError] = CodecError) -> Iterator[BinaryIO]:
    """Open ``path`` for binary reading ("-" is standard input, left open afterwards).

    Failures raise ``error`` (a CodecError subclass, e.g. AudioError) with one line:
    "X: no such file", "X is a directory", "cannot read X: Permission denied".
    """
    if path == STDIO:
        yield sys.stdin.buffer
        return
    if os.path.isdir(path):
        raise error(f"{path} is a directory")
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except IsADirectoryError:
        raise error(f"{path} is a directory") from None
    except OSError as e:
        raise error(f"cannot read {path}: {_reason(e)}") from None
    with f:
        yield f


# The signal the handlers below last received; None until one arrives.
_received_signal: int | None = None


def _signal_exception(signum: int) -> BaseException:
    # SystemExit unwinds the stack like Ctrl-C does, so atomic_output removes its
    # temporary file; 128 + signal number is the shell's convention for the status.
    return KeyboardInterrupt() if signum == signal.SIGINT else SystemExit(128 + signum)


def _on_signal(signum: int, frame) -> None:
    global _received_signal
    _received_signal = signum
    raise _signal_exception(signum)


def raise_if_interrupted() -> None:
    """Raise again for a signal whose exception was swallowed on its way up.

    An exception raised in a C library's callback into Python cannot cross the C
    frames: cffi prints it and the library carries on. libsndfile reads and writes
    in-memory audio through such callbacks, so a Ctrl-C landing there would be
    dropped and the run would finish as if nothing happened. The handlers remember
    the signal; this raises it again between blocks of audio and before an output
    is committed.
    """
    if _received_signal is not None:
        raise _signal_exception(_received_signal)


def _quiet_signal_unraisable(hook):
    """An unraisablehook that drops the signal exceptions cffi would print as a traceback
    (raise_if_interrupted reports them), and hands everything else to ``hook``."""
    if getattr(hook, "quiets_signals", False):
        return hook                # installed already
    def quiet(unraisable) -> None:
        if _received_signal is not None and issubclass(unraisable.exc_type, (KeyboardInterrupt, SystemExit)):
            return
        hook(unraisable)
    quiet.quiets_signals = True
    return quiet


def install_signal_handlers() -> None:
    """Make SIGTERM (and SIGHUP) unwind the program like SIGINT, so cleanup runs, and
    make every one of them stick even where a callback swallows its exception."""
    if threading.current_thread() is not threading.main_thread():
        return                     # signal.signal only works in the main thread
    for name in ("SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), _on_signal)
    # SIGINT keeps Python's meaning (KeyboardInterrupt), and stays ignored where the
    # shell started us with it ignored (a background job).
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _on_signal)
    sys.unraisablehook = _quiet_signal_unraisable(sys.unraisablehook)
