"""``python -m codec.train.prepare CORPUS ROOT OUT.tsv [--subset S] [--download]``

Writes the manifest (``path  speaker  seconds``) of a speech corpus for ``train_data``.
"""

from __future__ import annotations

import argparse
import csv
import sys
import warnings
from pathlib import Path

from .corpora import CORPORA, prepare_manifest


def manifest_seconds(path: str | Path) -> float:
    """Total of a manifest's ``seconds`` column."""
    with open(path, newline="", encoding="utf-8") as f:
        return sum(float(row["seconds"]) for row in csv.DictReader(f, delimiter="\t"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m codec.train.prepare", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus", choices=sorted(CORPORA), help="layout of ROOT")
    parser.add_argument("root", help="folder holding the corpus (or to download it into)")
    parser.add_argument("out", help="manifest to write (.tsv)")
    parser.add_argument("--subset", default=None,
                        help="train-clean-100 (LibriSpeech, LibriTTS; the default), mic1 or mic2 (VCTK; "
                             "default mic1), train (Common Voice's train.tsv; the default); a,b for several")
    parser.add_argument("--download", action="store_true",
                        help="fetch the corpus into ROOT if it is missing (LibriSpeech, LibriTTS, VCTK)")
    args = parser.parse_args(argv)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            count = prepare_manifest(args.corpus, args.root, args.out, args.subset, args.download)
        except (OSError, ValueError, RuntimeError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    print(f"{args.out}: {count} files, {manifest_seconds(args.out) / 3600:.2f} h")
    return 0


if __name__ == "__main__":
    sys.exit(main())
