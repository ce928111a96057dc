"""One rate-distortion curve from several `codec eval` runs: does quality rise at every step?

    python benchmarks/rate_curve.py RUN [RUN ...] [--baselines-from RUN] [--extra RUN LABEL]
        [--plot PNG] [--system codec]

Refined coding is slow on a CPU, so a curve over many bitrates is best measured as one
`codec eval --kbps K` run per bitrate (runs in parallel, each on one thread, and a run
that is stopped loses only its own bitrate). This puts the runs' results.csv together:
prints the table of means, then each bitrate of ``--system`` paired file by file with
the bitrate below it (mean difference +/- standard error), and draws the plot. The runs
must have scored the same files. ``--baselines-from`` adds the other systems (Opus,
Codec2) of one more run, leaving out its rows of ``--system``; ``--extra RUN LABEL`` adds
the ``--system`` rows of another run as a curve of its own (``--refine 0``, say).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from codec.evaluation.baselines import BASELINES  # noqa: E402
from codec.evaluation.compare import bitrate_steps, by_score, format_comparison, read_results  # noqa: E402
from codec.evaluation.report import format_summary, plot_rate_distortion, summarize  # noqa: E402

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", help="`codec eval --out` folders or their results.csv")
    parser.add_argument("--baselines-from", default=None, help="a run whose other systems to add")
    parser.add_argument("--extra", nargs=2, action="append", default=[], metavar=("RUN", "LABEL"),
                        help="a run whose --system rows to add as system LABEL")
    parser.add_argument("--plot", default=None, help="where to write the rate-distortion PNG")
    parser.add_argument("--system", default="codec", help="the system whose steps are paired")
    parser.add_argument("--label", default=None, help="the legend's name for --system's curve")
    parser.add_argument("--title", default=None)
    args = parser.parse_args()

    rows = [r for run in args.runs for r in read_results(run)]
    files = {r.file for r in rows if r.system == args.system}
    if not files:
        sys.exit(f"no rows of system {args.system!r} in {', '.join(args.runs)}")
    if args.baselines_from:
        rows += [r for r in read_results(args.baselines_from) if r.system != args.system and r.file in files]
    for run, label in args.extra:
        rows += [replace(r, system=label) for r in read_results(run) if r.system == args.system and r.file in files]
    by_score(rows)                     # one score per (system, bitrate, file), or CodecError
    for system, kbps in sorted({(r.system, r.nominal_kbps) for r in rows}):
        scored = {r.file for r in rows if (r.system, r.nominal_kbps) == (system, kbps)}
        if scored != files:            # means over other files would bend the curve
            sys.exit(f"{system} at {kbps:g} kbps scored {len(scored)} files, not the same {len(files)}")

    extras = [label for _, label in args.extra]
    systems = [args.system, *extras, *sorted({r.system for r in rows} - {args.system, *extras})]
    summary = summarize(rows, systems)
    print(format_summary(summary, args.system))
    print(f"\neach bitrate of {args.system} against the one below it, file by file:\n")
    print(format_comparison(bitrate_steps(rows, args.system), "lower", "this"))
    if args.plot:
        title = args.title or f"{len(files)} files, {len(args.runs)} runs"
        labels = {args.system: args.label or args.system,
                  **{s: BASELINES[s].label if s in BASELINES else s for s in systems[1:]}}
        plot_rate_distortion(summary, labels, Path(args.plot), title)
        print(f"\nplot: {args.plot}")


if __name__ == "__main__":
    main()
