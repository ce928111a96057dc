"""Reference codecs to compare against: Opus and Codec2, through their command-line tools.

Each baseline codes a 16 kHz mono signal in a temporary folder with the
official encoder, decodes it back to 16 kHz, and reports the size of the coded
file on disk (container and headers included), which gives its actual bitrate.

- Opus (``opusenc``/``opusdec`` from opus-tools): ``--hard-cbr --bitrate K`` on
  a 16 kHz WAV, an Ogg Opus file, decoded with ``--rate 16000``.
- Codec2 (``c2enc``/``c2dec``): 8 kHz 16-bit raw input, a ``.c2`` file (7-byte
  header and the frames), decoded to 8 kHz raw and resampled to 16 kHz.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile as sf
import torch

from ..audio import resample
from ..errors import CodecError

RATE = 16000                 # what baselines take and give back
CODEC2_RATE = 8000
CODEC2_FRAME = 320            # 40 ms at 8 kHz: a whole frame of every mode
TOOL_TIMEOUT_SECONDS = 300


@dataclass(frozen=True)
class Coded:
    """A signal after coding: ``audio`` ``[samples]`` float32 at 16 kHz and the coded file's size."""

    audio: np.ndarray
    num_bytes: int


@dataclass(frozen=True)
class Baseline:
    """A reference codec: its name, the bitrates it is run at, and how to get its tools."""

    name: str
    label: str
    kbps: tuple[float, ...]
    tools: tuple[str, ...]
    install: str
    coder: Callable[[np.ndarray, float, Path], Coded]

    def missing_tools(self) -> list[str]:
        """The tools of this baseline that are not on PATH."""
        return [t for t in self.tools if shutil.which(t) is None]

    def missing_message(self) -> str:
        """One line saying that this baseline is skipped and what to install."""
        return (f"skipping {self.label}: {' and '.join(self.missing_tools())} not found on PATH; "
                f"install them with `{self.install}`")

    def code(self, wav: np.ndarray, kbps: float) -> Coded:
        """Code and decode ``wav`` ``[samples]`` (16 kHz mono) at ``kbps``; raises CodecError if a tool fails."""
        with tempfile.TemporaryDirectory(prefix=f"codec-eval-{self.name}-") as tmp:
            return self.coder(np.asarray(wav, dtype=np.float32), kbps, Path(tmp))


def _run(args: list[str]) -> None:
    """Run a coding tool; its failure becomes a CodecError quoting its last line of output."""
    path = shutil.which(args[0])
    if path is None:
        raise CodecError(f"{args[0]} not found on PATH")
    try:
        done = subprocess.run([path, *args[1:]], capture_output=True, text=True, timeout=TOOL_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        raise CodecError(f"{args[0]} took more than {TOOL_TIMEOUT_SECONDS} s") from None
    except OSError as e:
        raise CodecError(f"cannot run {args[0]}: {e.strerror or e}") from None
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        raise CodecError(f"{' '.join(args[:2])} failed (exit {done.returncode})"
                         + (f": {lines[-1]}" if lines else ""))


def _pcm16(wav: np.ndarray) -> np.ndarray:
    return (np.clip(wav, -1.0, 1.0) * 32767).round().astype("<i2")


def _opus(wav: np.ndarray, kbps: float, tmp: Path) -> Coded:
    """Opus at ``kbps`` hard CBR: ``[samples]`` 16 kHz in, ``[samples]`` 16 kHz out."""
    sf.write(tmp / "in.wav", _pcm16(wav), RATE, subtype="PCM_16")
    # --padding 0: opusenc otherwise reserves 512 empty bytes for tags someone might add later,
    # which would count against Opus's bitrate on disk (about 1 kbps on a 5 s file, with the Ogg
    # pages they spill into) and carry no audio.
    _run(["opusenc", "--quiet", "--hard-cbr", "--bitrate", f"{kbps:g}", "--padding", "0",
          str(tmp / "in.wav"), str(tmp / "coded.opus")])
    _run(["opusdec", "--quiet", "--rate", str(RATE), str(tmp / "coded.opus"), str(tmp / "out.wav")])
    out, rate = sf.read(tmp / "out.wav", dtype="float32", always_2d=True)
    if rate != RATE:
        raise CodecError(f"opusdec wrote {rate} Hz audio, not {RATE} Hz")
    return Coded(out.mean(axis=1), (tmp / "coded.opus").stat().st_size)


def _codec2(wav: np.ndarray, kbps: float, tmp: Path) -> Coded:
    """Codec2 at ``kbps`` (1.2 or 3.2, ...): ``[samples]`` 16 kHz in, ``[samples]`` 16 kHz out."""
    mode = str(int(round(kbps * 1000)))
    narrow = resample(torch.from_numpy(wav), RATE, CODEC2_RATE).numpy()
    # c2enc drops a last partial frame: pad to whole 40 ms frames (the longest mode's) so all is coded.
    narrow = np.pad(narrow, (0, -len(narrow) % CODEC2_FRAME))
    _pcm16(narrow).tofile(tmp / "in.raw")
    _run(["c2enc", mode, str(tmp / "in.raw"), str(tmp / "coded.c2")])
    _run(["c2dec", mode, str(tmp / "coded.c2"), str(tmp / "out.raw")])
    out = np.fromfile(tmp / "out.raw", dtype="<i2").astype(np.float32) / 32768
    wide = resample(torch.from_numpy(out), CODEC2_RATE, RATE).numpy() if out.size else out
    return Coded(wide, (tmp / "coded.c2").stat().st_size)


BASELINES: dict[str, Baseline] = {
    "opus": Baseline("opus", "Opus", (6.0, 8.0, 12.0), ("opusenc", "opusdec"),
                     "apt-get install opus-tools", _opus),
    "codec2": Baseline("codec2", "Codec2", (1.2, 3.2), ("c2enc", "c2dec"),
                       "apt-get install codec2", _codec2),
}


def parse_baselines(spec: str) -> list[Baseline]:
    """``"opus,codec2"`` -> those baselines; ``"none"`` or ``""`` -> none. Unknown names raise CodecError."""
    names = [n.strip().lower() for n in spec.split(",") if n.strip()]
    if names in ([], ["none"]):
        return []
    unknown = [n for n in names if n not in BASELINES]
    if unknown:
        raise CodecError(f"unknown baseline {', '.join(unknown)}: choose from {', '.join(BASELINES)}, or none")
    return [BASELINES[n] for n in dict.fromkeys(names)]
