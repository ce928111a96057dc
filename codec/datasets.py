"""Collections of audio files: a folder searched recursively, or a TSV manifest.

Shared by training (``codec.train.data``) and evaluation (``codec.evaluation``),
so that inference-side code never imports the training package.
"""

from __future__ import annotations

import csv
from pathlib import Path

import soundfile as sf

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg"} | ({".mp3"} if "MP3" in sf.available_formats() else set())


def list_audio(source: str | Path) -> list[Path]:
    """Audio files of a folder (searched recursively, sorted) or of a manifest.

    A manifest is a TSV whose first column holds paths relative to the
    manifest's folder (or absolute); a first row starting with ``path`` is a
    header. Raises FileNotFoundError when ``source`` is neither, or lists no
    audio files. The files of a manifest are not checked for existence here.
    """
    source = Path(source)
    if source.is_dir():
        files = sorted(p for p in source.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
    elif source.is_file():
        with open(source, newline="") as f:
            rows = [r for r in csv.reader(f, delimiter="\t") if r and r[0].strip()]
        if rows and rows[0][0] == "path":
            rows = rows[1:]
        files = [source.parent / r[0] for r in rows]
    else:
        raise FileNotFoundError(f"{source} is neither a folder of audio files nor a manifest")
    if not files:
        raise FileNotFoundError(f"no audio files ({', '.join(sorted(AUDIO_SUFFIXES))}) in {source}")
    return files
