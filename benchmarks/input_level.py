"""How much does the input's level matter, and what does coding at the model's level gain?

    python benchmarks/input_level.py [REFS] [--model NAME|FILE] [--kbps 6] [--limit 21]
        [--seconds 6] [--targets -23,-17] [--gains -12,-6,6,12] [--threads 1]

Codes each file of REFS (a folder or manifest; default ../shared/corpus/dev; the
first ``--seconds`` of ``--limit`` files spread over the list) through
``codec.compress``/``decompress`` at ``--kbps``:

- as recorded (``normalize=False``), the baseline;
- scaled to the model's level first (``normalize=True``, what `codec encode` does);
- scaled to each of ``--targets`` dBFS instead, measured the same way (codec.loudness);
- as recorded, then cut or boosted by each of ``--gains`` dB (``normalize=False``;
  samples may then exceed full scale: nothing clips them before the model).

Each is scored against the unscaled reference (the decoder undoes the gain). Prints
the spread of the files' levels, then per condition the mean PESQ-WB and STOI and
their paired difference from the baseline, mean +/- standard error over the files.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import codec  # noqa: E402
from benchmarks.dev_sample import add_sample_arguments, load_sample, print_paired  # noqa: E402
from codec.evaluation.run import load_reference  # noqa: E402
from codec.evaluation.scores import SCORE_RATE, pesq_wb, stoi  # noqa: E402
from codec.loudness import LoudnessMeter, amplitude, gain_db  # noqa: E402


def code(model: codec.CodecModel, wav: np.ndarray, kbps: float, normalize: bool) -> np.ndarray:
    decoded, _ = codec.decompress(codec.compress(wav, SCORE_RATE, kbps=kbps, model=model,
                                                    normalize=normalize, refine=0),
                                  model=model, sample_rate=SCORE_RATE)
    return decoded[0].numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_sample_arguments(parser, limit=21, threads=1)
    parser.add_argument("--kbps", type=float, default=6.0)
    parser.add_argument("--targets", default="-23,-17", help="other levels to code at, dBFS, comma-separated")
    parser.add_argument("--gains", default="-12,-6,6,12", help="fixed gains in dB, comma-separated")
    args = parser.parse_args()

    model, files = load_sample(args)
    targets = [float(t) for t in args.targets.split(",") if t.strip()]
    gains = [float(g) for g in args.gains.split(",") if g.strip()]
    conditions = ["as recorded", f"at the model's level ({model.config.input_dbfs:g} dBFS)"] + \
                 [f"at {t:g} dBFS" for t in targets] + [f"{g:+g} dB" for g in gains]
    scores: dict[str, list[tuple[float, float]]] = {c: [] for c in conditions}
    levels = []
    for path in files:
        reference = load_reference(path)[:int(args.seconds * SCORE_RATE)]
        meter = LoudnessMeter(SCORE_RATE)
        meter.push(reference[None])
        levels.append(meter.level_dbfs)
        decoded = [code(model, reference, args.kbps, False), code(model, reference, args.kbps, True)]
        fixed = [gain_db(reference, SCORE_RATE, t) for t in targets] + gains
        for g in fixed:
            a = amplitude(g)
            decoded.append(code(model, reference * a, args.kbps, False) / a)
        for name, out in zip(conditions, decoded):
            scores[name].append((pesq_wb(reference, out), stoi(reference, out)))

    print(f"{len(files)} files of {args.refs}, first {args.seconds:g} s, {args.kbps:g} kbps, model "
          f"{model.config.name} ({model.fingerprint[:16]})")
    print(f"gated levels (codec.loudness): mean {np.mean(levels):.1f} dBFS, "
          f"from {min(levels):.1f} to {max(levels):.1f}")
    print_paired(scores, base=conditions[0])


if __name__ == "__main__":
    main()
