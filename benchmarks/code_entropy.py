"""How many bits would an entropy coder save over the bitstream's fixed-width codes?

    python benchmarks/code_entropy.py [--model NAME|FILE] [--train ../shared/corpus/train]
        [--dev ../shared/corpus/dev] [--every 20] [--refine 0] [--threads 2]

The bitstream writes every code in ``codebook_bits`` bits (docs/bitstream.md). An entropy
coder with a fixed table of each level's code frequencies (a table the model file could
carry) would spend, on average, the cross-entropy of the codes it meets under that table.
This counts each level's codes in every ``--every``-th training file (the table) and in
every ``--every // 10``-th dev file (what is coded), both encoded at all levels with the
encoder's own codes (``--refine 0``, the default here; refined codes take minutes a file), and prints
per level the dev codes' entropy and their cross-entropy under the training table, and for
each bitrate the mean bits a code would cost against the fixed width. Frequencies only: a
coder that also used the codes before (in time or in level) could save more, at the cost of a
model; this measures the cheap first step.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import codec  # noqa: E402
from codec.datasets import list_audio  # noqa: E402
from codec.evaluation.run import load_reference  # noqa: E402
from codec.evaluation.scores import SCORE_RATE  # noqa: E402


def codes_of(model: codec.CodecModel, files: list[Path], refine: int) -> torch.Tensor:
    """Every level's codes of ``files``, one after another: ``[levels, frames]``."""
    kbps = model.kbps_for_levels(model.config.levels)
    codes = []
    for path in files:
        with torch.no_grad():
            codes.append(model.encode(load_reference(path)[None], SCORE_RATE, kbps=kbps, refine=refine)[0])
    return torch.cat(codes, dim=-1)


def bits(counts: torch.Tensor, table: torch.Tensor) -> tuple[float, float]:
    """(entropy of ``counts``, their cross-entropy under ``table``'s frequencies), in bits a code;
    the table gets half a count for every code, so that no code costs infinitely many bits."""
    p = counts.double() / counts.sum()
    q = (table.double() + 0.5) / (table.sum() + 0.5 * len(table))
    seen = p > 0
    return float(-(p[seen] * p[seen].log2()).sum()), float(-(p * q.log2()).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--train", default="../shared/corpus/train")
    parser.add_argument("--dev", default="../shared/corpus/dev")
    parser.add_argument("--every", type=int, default=20, help="every n-th training file")
    parser.add_argument("--refine", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = codec.load_model(args.model)
    width = model.config.codebook_bits
    size = 2 ** width
    train = codes_of(model, list_audio(args.train)[::args.every], args.refine)
    dev = codes_of(model, list_audio(args.dev)[::max(1, args.every // 10)], args.refine)
    print(f"model {model.config.name} ({model.fingerprint[:16]}), refine {args.refine}: table from "
          f"{train.shape[-1]} training frames, coded {dev.shape[-1]} dev frames; fixed width {width} bits")
    print(f"{'level':>5} {'entropy':>8} {'cross-entropy':>14}")
    cross = []
    for level in range(model.config.levels):
        h, c = bits(torch.bincount(dev[level], minlength=size), torch.bincount(train[level], minlength=size))
        cross.append(c)
        print(f"{level + 1:>5} {h:8.2f} {c:14.2f}")
    print(f"\n{'kbps':>5} {'levels':>6} {'bits a code':>12} {'saved':>6}")
    for kbps in (0.5, 1.5, 3, 6, 12, 16):
        levels = model.levels_for_kbps(kbps)
        mean = float(np.mean(cross[:levels]))
        print(f"{kbps:>5g} {levels:>6} {mean:12.2f} {1 - mean / width:6.1%}")


if __name__ == "__main__":
    main()
