"""Paired comparison of two `codec eval` runs (`codec compare BASE OTHER`).

Two models scored on the same files differ by far less than the files differ from
each other: a PESQ mean moves by a few hundredths between models while single files
range over two whole points. Comparing means alone hides whether a change is real.
Pairing each file's score with its own score under the other run cancels the
per-file spread; the mean of the per-file differences, with its standard error,
says how far the change stands out from the noise.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence, get_type_hints

import numpy as np

from ..errors import CodecError
from .report import METRICS, Row


@dataclass(frozen=True)
class PairedDifference:
    """One measure of one system at one bitrate, over the files both runs scored.

    ``base`` and ``other`` are the two runs' means over the ``files`` pairs where
    both scores are finite; ``difference`` is the mean of ``other - base`` per file
    and ``standard_error`` its standard error (NaN with fewer than two pairs).
    """

    system: str
    nominal_kbps: float
    metric: str
    files: int
    base: float
    other: float
    difference: float
    standard_error: float


# Row's fields and how to parse each from its CSV cell
_CASTS = get_type_hints(Row)


def read_results(path: str | Path) -> list[Row]:
    """The rows of a `codec eval` results.csv, or of the results.csv inside a folder given as ``path``."""
    path = Path(path)
    if path.is_dir():
        path = path / "results.csv"
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None or set(reader.fieldnames) != set(_CASTS):
                raise CodecError(f"{path}: not a results.csv written by `codec eval`")
            return [Row(**{name: cast(line[name]) for name, cast in _CASTS.items()}) for line in reader]
    except OSError as e:
        raise CodecError(f"cannot read {path}: {e.strerror or e}") from None
    except (UnicodeDecodeError, csv.Error):
        raise CodecError(f"{path}: not a results.csv written by `codec eval`") from None
    except (ValueError, TypeError) as e:
        raise CodecError(f"{path}: a value is not a number ({e})") from None


def by_score(rows: Sequence[Row]) -> dict[tuple[str, float, str], Row]:
    """``rows`` by (system, nominal bitrate, file); CodecError if one is scored twice."""
    by_key: dict[tuple[str, float, str], Row] = {}
    for r in rows:
        key = (r.system, r.nominal_kbps, r.file)
        if key in by_key:
            raise CodecError(f"{r.file} is scored twice for {r.system} at {r.nominal_kbps:g} kbps: "
                             f"not one `codec eval` run")
        by_key[key] = r
    return by_key


def paired_differences(base: Sequence[Row], other: Sequence[Row]) -> list[PairedDifference]:
    """Every measure of every (system, bitrate) that both runs scored, paired file by file.

    Files scored by only one run are left out, as are pairs where either score is NaN
    (PESQ or STOI could not score the clip).
    """
    by_key = by_score(base)
    pairs: dict[tuple[str, float], list[tuple[Row, Row]]] = {}
    for r in other:
        match = by_key.get((r.system, r.nominal_kbps, r.file))
        if match is not None:
            pairs.setdefault((r.system, r.nominal_kbps), []).append((match, r))
    out = []
    for (system, kbps), group in sorted(pairs.items()):
        for field, _, _, _ in METRICS:
            a = np.array([getattr(b, field) for b, _ in group], dtype=np.float64)
            b = np.array([getattr(o, field) for _, o in group], dtype=np.float64)
            keep = np.isfinite(a) & np.isfinite(b)
            a, b = a[keep], b[keep]
            if a.size == 0:
                continue
            d = b - a
            se = float(d.std(ddof=1) / math.sqrt(d.size)) if d.size > 1 else math.nan
            out.append(PairedDifference(system, kbps, field, int(d.size), float(a.mean()), float(b.mean()),
                                        float(d.mean()), se))
    return out


def bitrate_steps(rows: Sequence[Row], system: str) -> list[PairedDifference]:
    """Each bitrate of ``system`` paired file by file with the bitrate below it: does quality
    rise at every step beyond noise? ``base`` is the lower bitrate's mean, ``other`` this
    one's, and ``nominal_kbps`` this one's.
    """
    ours = [r for r in rows if r.system == system]
    rates = sorted({r.nominal_kbps for r in ours})
    steps = []
    for lower, upper in zip(rates, rates[1:]):
        # paired_differences pairs the rows of one (system, bitrate, file): file the lower
        # bitrate's rows under the upper's
        below = [replace(r, nominal_kbps=upper) for r in ours if r.nominal_kbps == lower]
        steps += paired_differences(below, [r for r in ours if r.nominal_kbps == upper])
    return steps


def format_comparison(differences: Sequence[PairedDifference], base_name: str, other_name: str) -> str:
    """A table: per system, bitrate and measure, both means and the paired difference +/- its standard error.

    A difference more than two standard errors from zero is marked ``better`` or
    ``worse`` (by the measure's direction), otherwise ``~``. That is a rough guide, not a
    test: with many rows, some will cross two standard errors by chance.
    """
    if not differences:
        return "no (system, bitrate, file) was scored by both runs"
    higher_is_better = {field: higher for field, _, higher, _ in METRICS}
    formats = {field: fmt for field, _, _, fmt in METRICS}
    # one decimal more than the means: differences are small
    digits = {"pesq": 3, "stoi": 4, "mel_l1": 4, "si_sdr": 2}
    headings = {field: heading for field, heading, _, _ in METRICS}
    header = ["system", "kbps", "measure", "files", base_name, other_name, "difference", ""]
    lines = []
    for p in differences:
        fmt = formats[p.metric]
        d = digits.get(p.metric, 3)
        diff = f"{p.difference:+.{d}f} ± {p.standard_error:.{d}f}"
        verdict = "~"
        if math.isfinite(p.standard_error) and abs(p.difference) > 2 * p.standard_error:
            verdict = "better" if (p.difference > 0) == higher_is_better[p.metric] else "worse"
        lines.append([p.system, f"{p.nominal_kbps:g}", headings[p.metric], str(p.files),
                      fmt.format(p.base), fmt.format(p.other), diff, verdict])
    widths = [max(len(c) for c in column) for column in zip(header, *lines)]
    text = ["  ".join(c.ljust(w) if i < 3 or i == 7 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
            .rstrip() for cells in [header, ["-" * w for w in widths], *lines]]
    return "\n".join(text + ["", "difference: mean of (other - base) per file ± its standard error; "
                             "better/worse: more than 2 standard errors from zero"])
