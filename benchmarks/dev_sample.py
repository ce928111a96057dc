"""What the quality benchmarks share: a sample of reference files spread over a corpus.

Dev files are listed speaker by speaker, so every n-th file covers many speakers
where the first few would cover one or two.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from codec.datasets import list_audio


def add_sample_arguments(parser: argparse.ArgumentParser, limit: int, threads: int) -> None:
    """REFS, --model, --limit, --seconds and --threads, with these defaults."""
    parser.add_argument("refs", nargs="?", default="../shared/corpus/dev")
    parser.add_argument("--model", default=None)
    parser.add_argument("--limit", type=int, default=limit, help="files, spread over REFS")
    parser.add_argument("--seconds", type=float, default=6.0, help="the first seconds of each file")
    parser.add_argument("--threads", type=int, default=threads)


def sample_files(refs: str | Path, limit: int) -> list[Path]:
    """``limit`` files of ``refs`` (a folder or manifest), every n-th so that they span it."""
    files = list_audio(refs)
    return files[::max(1, len(files) // limit)][:limit]
