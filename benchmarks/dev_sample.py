"""What the quality benchmarks share: a sample of reference files spread over a corpus.

Dev files are listed speaker by speaker, so every n-th file covers many speakers
where the first few would cover one or two.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

import codec
from codec.datasets import list_audio
from codec.evaluation.scores import score


def add_sample_arguments(parser: argparse.ArgumentParser, limit: int, threads: int) -> None:
    """REFS, --model, --limit, --seconds and --threads, with these defaults."""
    parser.add_argument("refs", nargs="?", default="../shared/corpus/dev")
    parser.add_argument("--model", default=None)
    parser.add_argument("--limit", type=int, default=limit, help="files, spread over REFS")
    parser.add_argument("--seconds", type=float, default=6.0, help="the first seconds of each file")
    parser.add_argument("--threads", type=int, default=threads)


def load_sample(args: argparse.Namespace) -> tuple[codec.CodecModel, list[Path]]:
    """What the arguments of add_sample_arguments ask for: sets the thread count, and returns
    the model and the files of the sample."""
    torch.set_num_threads(args.threads)
    return codec.load_model(args.model), sample_files(args.refs, args.limit)


def sample_files(refs: str | Path, limit: int) -> list[Path]:
    """``limit`` files of ``refs`` (a folder or manifest), every n-th so that they span it."""
    files = list_audio(refs)
    return files[::max(1, len(files) // limit)][:limit]


def add_scores(scores: dict[str, list[tuple[float, float]]], reference: np.ndarray,
               conditions: dict[str, np.ndarray]) -> None:
    """Score each condition's signal against ``reference`` and append its (PESQ-WB, STOI) to
    ``scores[condition]``: one file's row of the table that print_paired prints."""
    for name, x in conditions.items():
        s = score(reference, x)
        scores.setdefault(name, []).append((s.pesq, s.stoi))


def print_paired(scores: dict[str, list[tuple[float, float]]], base: str,
                 column: str = "", notes: dict[str, str] | None = None) -> None:
    """A table: per condition, the mean PESQ-WB and STOI over the files and the paired
    difference from condition ``base``, mean +/- standard error.

    ``scores`` maps each condition to one (PESQ-WB, STOI) per file, in the same file order;
    a file with a missing (NaN) score in either is left out of that row. ``column`` and
    ``notes`` (condition -> text) add a last column.
    """
    notes = notes or {}
    width = max(len(name) for name in scores)
    print(f"{'condition':>{width}} {'PESQ-WB':>8} {'STOI':>7} {'PESQ diff':>16} {'STOI diff':>18}  {column}".rstrip())
    reference = np.array(scores[base])
    for name, values in scores.items():
        values = np.array(values)
        ok = np.isfinite(values).all(axis=1) & np.isfinite(reference).all(axis=1)
        d = values[ok] - reference[ok]
        se = d.std(axis=0, ddof=1) / np.sqrt(len(d)) if len(d) > 1 else np.zeros(2)
        print(f"{name:>{width}} {values[ok, 0].mean():8.3f} {values[ok, 1].mean():7.3f} "
              f"{d[:, 0].mean():+8.3f} ± {se[0]:.3f} {d[:, 1].mean():+9.4f} ± {se[1]:.4f}  {notes.get(name, '')}".rstrip())
