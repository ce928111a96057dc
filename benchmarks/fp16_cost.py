"""Does shipping the weights in float16 cost quality?

    python benchmarks/fp16_cost.py [REFS] [--model NAME|FILE] [--kbps 1.5,6] [--scales 1,8,64,512]
        [--draws 2] [--refine 0] [--limit 24] [--seconds 6] [--threads 1]

The shipped model file stores float16 weights, rounded from the trainer's float32 ones
(codec export). Rounding to the nearest float16 moves each weight by at most half a
float16 step, and by an amount spread evenly over that range, independently from weight
to weight. The float32 weights are not kept, but that is all one needs: the shipped
weights plus such an error are, statistically, what the float32 weights were. So this
adds ``scale`` times that error (each weight moved by up to ``scale / 2`` of its float16
step, uniformly at random, ``--draws`` times with different seeds; draw k is the same
pattern at every scale) and codes the first
``--seconds`` of ``--limit`` dev files through ``codec.compress``/``decompress`` with
each copy, as ``codec encode`` and ``codec decode`` do (``--refine 0``: the encoder's own
codes, which are deterministic; refined codes would differ by the search's chance).

Prints per bitrate the mean PESQ-WB and STOI of each copy, their paired difference from
the shipped weights (mean +/- standard error), the share of codes that came out equal,
and the signal-to-difference ratio of the two decodings. Scale 1 is the cost of float16;
larger scales show how large an error must be before the scores notice (8 is about the
step of bfloat16, whose significand has three bits fewer).
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import codec  # noqa: E402
from benchmarks.dev_sample import add_sample_arguments, add_scores, load_sample, print_paired  # noqa: E402
from codec.bitstream import decode_bytes  # noqa: E402
from codec.evaluation.run import load_reference, parse_kbps  # noqa: E402
from codec.evaluation.scores import SCORE_RATE  # noqa: E402
from codec.model.files import fingerprint, inference_tensors  # noqa: E402

FLOAT16_SIGNIFICAND_BITS = 11       # the stored 10 and the implicit leading 1
FLOAT16_SMALLEST_EXPONENT = -24     # the step of float16's subnormals, 2 ** -24


def float16_step(w: torch.Tensor) -> torch.Tensor:
    """The spacing of float16 numbers at each value of ``w``: ``2 ** (e - 11)`` for
    ``|w|`` in ``[2 ** (e - 1), 2 ** e)``, and 2 ** -24 among the subnormals and at 0."""
    _, exponent = torch.frexp(w)
    exponent = torch.where(w == 0, FLOAT16_SMALLEST_EXPONENT, exponent - FLOAT16_SIGNIFICAND_BITS)
    return torch.ldexp(torch.ones_like(w), exponent.clamp(min=FLOAT16_SMALLEST_EXPONENT))


def perturbed(model: codec.CodecModel, scale: float, seed: int) -> codec.CodecModel:
    """A copy of ``model`` with every weight and codebook entry of its model file moved by
    ``scale * (u - 0.5)`` of its float16 step, ``u`` uniform on [0, 1), and the fingerprint
    of what it now holds.

    The same seed draws the same ``u`` at every scale, so the scales of one draw differ in
    size only, not in direction."""
    out = copy.deepcopy(model)
    stored = set(inference_tensors(out))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in list(out.named_parameters()) + list(out.named_buffers()):
            if t.is_floating_point():
                # Drawn for the training statistics too, and thrown away, so that a
                # seed draws what it drew for the figures in docs/model_card.md.
                noise = torch.rand(t.shape, generator=generator, dtype=t.dtype) - 0.5
                if name in stored:           # not the quantizer's training statistics
                    t.add_(scale * noise * float16_step(t))
    out.fingerprint = fingerprint(inference_tensors(out))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_sample_arguments(parser, limit=24, threads=1)
    parser.add_argument("--kbps", default="1.5,6")
    parser.add_argument("--scales", default="1,8,64,512", help="errors, in float16 rounding errors")
    parser.add_argument("--draws", type=int, default=2, help="random copies per scale")
    parser.add_argument("--refine", type=int, default=0)
    args = parser.parse_args()

    model, files = load_sample(args)
    references = [load_reference(path)[:int(args.seconds * SCORE_RATE)] for path in files]
    models = {"shipped (float16)": model} | {
        f"x{scale:g}, draw {draw}": perturbed(model, scale, seed=draw)
        for scale in map(float, args.scales.split(",")) for draw in range(1, args.draws + 1)}
    print(f"{len(files)} files of {args.refs}, first {args.seconds:g} s, model {model.config.name} "
          f"({model.fingerprint[:16]}), refine {args.refine}, {args.threads} thread(s)")
    for kbps in parse_kbps(args.kbps):
        scores: dict[str, list[tuple[float, float]]] = {}
        equal: dict[str, list[float]] = {}
        snr: dict[str, list[float]] = {}
        for reference in references:
            coded = {name: codec.compress(reference, SCORE_RATE, kbps=kbps, model=m, refine=args.refine)
                     for name, m in models.items()}
            decoded = {name: codec.decompress(data, model=models[name], sample_rate=SCORE_RATE)[0][0].numpy()
                       for name, data in coded.items()}
            add_scores(scores, reference, decoded)
            base_codes, base = codes_of(coded["shipped (float16)"]), decoded["shipped (float16)"]
            for name in models:
                equal.setdefault(name, []).append(float((codes_of(coded[name]) == base_codes).mean()))
                difference = np.sum((decoded[name] - base) ** 2)
                snr.setdefault(name, []).append(10 * np.log10(np.sum(base ** 2) / max(difference, 1e-30)))
        print(f"\n{kbps:g} kbps")
        print_paired(scores, "shipped (float16)", column="codes equal, decodings' SNR",
                     notes={name: f"{100 * np.mean(equal[name]):.2f}%, "
                                  + ("identical" if np.min(snr[name]) > 250 else f"{np.median(snr[name]):.1f} dB")
                            for name in models})


def codes_of(data: bytes) -> np.ndarray:
    """The codes of an .rvq stream."""
    return decode_bytes(data)[1]


if __name__ == "__main__":
    main()
