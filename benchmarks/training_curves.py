"""Validation quality against training time, for runs compared at equal CPU time.

    python benchmarks/training_curves.py RUN_DIR:LABEL:SECONDS_PER_STEP [...]
        [--kbps 6] [--plot curves.png] [--reference LABEL:MEL:PESQ:STOI]

(labels may not contain ':')

Reads each run's TensorBoard log (``RUN_DIR/tb``, every file: a resumed run writes
one per start) and prints and plots its ``valid/`` scores (the trainer's validation:
the held-out training files, first 4 s, at the model's level) at one bitrate against
training hours. Hours are steps times SECONDS_PER_STEP, the step time measured with
nothing else running (``benchmarks/train_throughput.py``), not the log's wall-clock
time, which counts pauses, restarts and whatever else shared the machine. Where a step
was logged again (a run resumed from a checkpoint before it), the later start's values count.
``--reference`` draws one more score, a model's, as a horizontal line.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

MEASURES = (("mel_distance", "log-mel distance (lower is better)"),
            ("pesq", "PESQ-WB"),
            ("stoi", "STOI"))


@dataclass
class Run:
    label: str
    seconds_per_step: float
    scores: dict[str, dict[int, float]]       # measure -> step -> value


def read_validation(run_dir: Path, kbps: float) -> dict[str, dict[int, float]]:
    """``{measure: {step: value}}`` from every event file under ``run_dir/tb``.

    Each start of a run writes a new file. A run resumed from a checkpoint older than its
    last validation logs again from that checkpoint's step, so what an earlier file holds
    from the later file's first step on was abandoned and is dropped."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    files = sorted((run_dir / "tb").glob("events.out.tfevents.*"),
                   key=lambda path: float(path.name.split(".")[3]))     # the start time in the name
    if not files:
        raise SystemExit(f"{run_dir}: no TensorBoard log under {run_dir / 'tb'}")
    found: dict[str, dict[int, float]] = {measure: {} for measure, _ in MEASURES}
    for path in files:
        events = EventAccumulator(str(path), size_guidance={"scalars": 0})
        events.Reload()
        tags = events.Tags()["scalars"]
        steps = [e.step for tag in tags for e in events.Scalars(tag)]
        if not steps:
            continue
        restart = min(steps)
        for measure, values in found.items():
            for step in [s for s in values if s >= restart]:
                del values[step]
            tag = f"valid/{measure}/{kbps:g}kbps"
            if tag in tags:
                values.update((e.step, e.value) for e in events.Scalars(tag))
    for measure, values in found.items():
        if not values:
            print(f"{run_dir}: no valid/{measure}/{kbps:g}kbps in its log", file=sys.stderr)
    return found


def parse_run(spec: str, kbps: float) -> Run:
    try:
        directory, label, seconds = spec.rsplit(":", 2)
        seconds_per_step = float(seconds)
    except ValueError:
        raise SystemExit(f"{spec!r}: expected RUN_DIR:LABEL:SECONDS_PER_STEP (no ':' in the label)")
    if not seconds_per_step > 0:
        raise SystemExit(f"{spec!r}: seconds per step must be above 0")
    return Run(label, seconds_per_step, read_validation(Path(directory), kbps))


def parse_reference(spec: str) -> tuple[str, list[float]]:
    try:
        label, *values = spec.rsplit(":", len(MEASURES))
        if len(values) != len(MEASURES):
            raise ValueError
        return label, [float(v) for v in values]
    except ValueError:
        raise SystemExit(f"--reference {spec!r}: expected LABEL:MEL:PESQ:STOI")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR:LABEL:SECONDS_PER_STEP")
    parser.add_argument("--kbps", type=float, default=6.0)
    parser.add_argument("--plot", type=Path, help="write the curves as a PNG")
    parser.add_argument("--reference", metavar="LABEL:MEL:PESQ:STOI")
    args = parser.parse_args()
    runs = [parse_run(spec, args.kbps) for spec in args.runs]
    reference = parse_reference(args.reference) if args.reference else None

    print(f"validation at {args.kbps:g} kbps; hours = steps x seconds per step")
    print(f"{'run':24} {'step':>6} {'hours':>6} " + " ".join(f"{m:>12}" for m, _ in MEASURES))
    for run in runs:
        steps = sorted(set().union(*(run.scores.get(m, {}) for m, _ in MEASURES)))
        for step in steps:
            values = " ".join(f"{run.scores.get(m, {}).get(step, float('nan')):12.3f}" for m, _ in MEASURES)
            print(f"{run.label:24} {step:6d} {step * run.seconds_per_step / 3600:6.2f} {values}")
    if reference:
        print(f"{reference[0]:24} {'':6} {'':6} " + " ".join(f"{v:12.3f}" for v in reference[1]))

    if args.plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, axes = plt.subplots(1, len(MEASURES), figsize=(5 * len(MEASURES), 4))
        for i, (axis, (measure, title)) in enumerate(zip(axes, MEASURES)):
            for run in runs:
                points = sorted(run.scores.get(measure, {}).items())
                axis.plot([s * run.seconds_per_step / 3600 for s, _ in points], [v for _, v in points],
                          marker="o", label=run.label)
            if reference:
                axis.axhline(reference[1][i], color="grey", linestyle="--", label=reference[0])
            axis.set_xlabel("training hours (steps x s/step)")
            axis.set_title(f"{title}, {args.kbps:g} kbps")
            axis.grid(alpha=0.3)
        axes[0].legend()
        figure.tight_layout()
        figure.savefig(args.plot, dpi=110)
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
