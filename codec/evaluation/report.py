"""What `codec eval` writes: a CSV of every score, a summary table, a rate-distortion
plot and an HTML page to listen to the systems side by side.
"""

from __future__ import annotations

import csv
import dataclasses
import html
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..fileio import atomic_output

# (field, heading, higher is better, format)
METRICS = (("pesq", "PESQ-WB", True, "{:.2f}"), ("stoi", "STOI", True, "{:.3f}"),
           ("mel_l1", "log-mel L1", False, "{:.3f}"), ("si_sdr", "SI-SDR dB", True, "{:.1f}"))


@dataclass(frozen=True)
class Row:
    """The scores of one file coded by one system at one bitrate (one line of the CSV).

    ``actual_kbps`` is ``num_bytes`` (the coded file on disk, headers included)
    over ``seconds`` (the reference's duration); ``delay_ms`` is the shift applied
    by alignment (positive: the decoded signal lagged).
    """

    file: str
    system: str
    nominal_kbps: float
    actual_kbps: float
    pesq: float
    stoi: float
    mel_l1: float
    si_sdr: float
    delay_ms: float
    seconds: float
    num_bytes: int


@dataclass(frozen=True)
class Summary:
    """Means over the files of one system at one nominal bitrate.

    ``actual_kbps`` is the bitrate of all its coded files together (total bytes
    over total duration), not a mean of per-file bitrates. A score that could not be computed (NaN: silence or too little speech for
    PESQ or STOI) is left out of its mean; ``unscored`` counts such files.
    """

    system: str
    nominal_kbps: float
    actual_kbps: float
    pesq: float
    stoi: float
    mel_l1: float
    si_sdr: float
    files: int
    unscored: int


@dataclass(frozen=True)
class Clip:
    """One audio player of the listening page: a label, a WAV path relative to the page, its
    scores, and its spectrogram's PNG (relative to the page)."""

    label: str
    path: str
    row: Row | None = None
    image: str | None = None


def summarize(rows: Sequence[Row], systems: Sequence[str]) -> list[Summary]:
    """One Summary per (system, nominal bitrate), systems in the given order, bitrates ascending."""
    out = []
    for system in systems:
        for kbps in sorted({r.nominal_kbps for r in rows if r.system == system}):
            group = [r for r in rows if r.system == system and r.nominal_kbps == kbps]

            def mean(field: str) -> float:
                values = np.array([getattr(r, field) for r in group], dtype=np.float64)
                values = values[np.isfinite(values)]
                return float(values.mean()) if values.size else math.nan

            unscored = sum(1 for r in group if not (math.isfinite(r.pesq) and math.isfinite(r.stoi)))
            actual = sum(r.num_bytes for r in group) * 8 / max(sum(r.seconds for r in group), 1e-9) / 1000
            out.append(Summary(system, kbps, actual, mean("pesq"), mean("stoi"),
                               mean("mel_l1"), mean("si_sdr"), len(group), unscored))
    return out


def monotonic_notes(summary: Sequence[Summary], system: str) -> list[str]:
    """Lines saying whether each measure improves with every bitrate step of ``system``."""
    points = [s for s in summary if s.system == system]
    if len(points) < 2:
        return []
    notes = []
    for field, heading, higher, fmt in METRICS:
        worse = []
        for a, b in zip(points, points[1:]):
            va, vb = getattr(a, field), getattr(b, field)
            if not (vb > va if higher else vb < va):
                worse.append(f"{a.nominal_kbps:g} -> {b.nominal_kbps:g} kbps ({fmt.format(va)} -> {fmt.format(vb)})")
        notes.append(f"{system}: {heading} improves with every bitrate step" if not worse else
                     f"{system}: {heading} does not improve at {'; '.join(worse)}")
    return notes


def format_summary(summary: Sequence[Summary], ours: str) -> str:
    """A plain-text table of the means, then whether our quality rises with every bitrate step."""
    header = ["system", "kbps", "on disk", *[m[1] for m in METRICS], "files", "unscored"]
    lines = [[s.system, f"{s.nominal_kbps:g}", f"{s.actual_kbps:.2f}",
              *[fmt.format(getattr(s, field)) for field, _, _, fmt in METRICS],
              str(s.files), str(s.unscored)] for s in summary]
    widths = [max(len(str(c)) for c in column) for column in zip(header, *lines)]

    def join(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    text = [join(header), join(["-" * w for w in widths]), *[join(line) for line in lines]]
    notes = monotonic_notes(summary, ours)
    return "\n".join(text + ([""] + notes if notes else []))


def write_csv(rows: Sequence[Row], path: Path) -> None:
    """One line per file x system x bitrate, with the Row fields as columns (NaN written as ``nan``)."""
    buffer = io.StringIO()
    fields = [f.name for f in dataclasses.fields(Row)]
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(fields)
    for r in rows:
        writer.writerow([_cell(getattr(r, f)) for f in fields])
    with atomic_output(str(path), force=True) as f:
        f.write(buffer.getvalue().encode())


def _cell(value: object) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4f}"
    return str(value)


def plot_rate_distortion(summary: Sequence[Summary], labels: dict[str, str], path: Path, title: str) -> None:
    """A PNG of each measure's mean against the mean bitrate on disk, one curve per system.

    ``labels`` maps system names to legend labels, in drawing order.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    styles = ["o-", "s--", "^--", "D:", "v:"]
    fig, axes = plt.subplots(2, 2, figsize=(10, 7.5))
    kbps_all = [s.actual_kbps for s in summary]
    for ax, (field, heading, higher, _) in zip(axes.flat, METRICS):
        for style, (system, label) in zip(styles, labels.items()):
            points = [s for s in summary if s.system == system]
            if points:
                ax.plot([s.actual_kbps for s in points], [getattr(s, field) for s in points], style,
                        label=label, markersize=5)
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
        if kbps_all:
            ax.set_xlim(min(kbps_all) / 1.25, max(kbps_all) * 1.25)
        ax.set_xlabel("bitrate on disk (kbps, log scale)")
        ax.set_ylabel(f"{heading} ({'higher' if higher else 'lower'} is better)")
        ax.set_title(heading)
        ax.grid(True, which="both", alpha=0.3)
    axes.flat[0].legend(loc="best", fontsize=9)
    fig.suptitle(title)
    fig.tight_layout()
    _save_png(fig, path, dpi=110)


# The spectrograms of one file share a scale: from its reference's loudest bin down this far,
# to below the noise floor of a quiet recording, where a codec's own noise shows.
SPECTROGRAM_RANGE_DB = 90.0
SPECTROGRAM_WINDOW = 512          # 32 ms at 16 kHz: resolves the harmonics of most voices


def spectrogram_db(audio: np.ndarray) -> np.ndarray:
    """Log magnitude ``[bins, frames]`` in dB of ``audio [samples]``: Hann windows, hop 1/4."""
    window, hop = SPECTROGRAM_WINDOW, SPECTROGRAM_WINDOW // 4
    padded = np.pad(np.asarray(audio, dtype=np.float64), (0, window))
    frames = np.lib.stride_tricks.sliding_window_view(padded, window)[::hop] * np.hanning(window)
    return 20 * np.log10(np.abs(np.fft.rfft(frames, axis=1)).T + 1e-10)


def write_spectrogram(audio: np.ndarray, sample_rate: int, path: Path, top_db: float) -> None:
    """A small PNG of ``audio``'s spectrogram from ``top_db`` down SPECTROGRAM_RANGE_DB, to see
    what a codec smears or adds (harmonics, noise in the pauses) beside hearing it."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 2.4))     # shown small, opened full size
    ax.imshow(spectrogram_db(audio), origin="lower", aspect="auto", cmap="magma",
              vmin=top_db - SPECTROGRAM_RANGE_DB, vmax=top_db,
              extent=(0, len(audio) / sample_rate, 0, sample_rate / 2000))
    ax.set_xlabel("s", fontsize=8, labelpad=1)
    ax.set_ylabel("kHz", fontsize=8, labelpad=1)
    ax.tick_params(labelsize=7, length=2, pad=1)
    fig.tight_layout(pad=0.2)
    _save_png(fig, path, dpi=100)


def _save_png(fig, path: Path, dpi: int) -> None:
    """Write a matplotlib figure to ``path`` through a temporary file, and close it."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    with atomic_output(str(path), force=True) as f:
        f.write(buffer.getvalue())


def _html_summary(summary: Sequence[Summary]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in
                   ["system", "kbps", "on disk", *[m[1] for m in METRICS], "files", "unscored"])
    body = []
    for s in summary:
        cells = [s.system, f"{s.nominal_kbps:g}", f"{s.actual_kbps:.2f}",
                 *[fmt.format(getattr(s, field)) for field, _, _, fmt in METRICS], str(s.files), str(s.unscored)]
        body.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    return f"<table><tr>{head}</tr>\n" + "\n".join(body) + "</table>"


def _html_clip(clip: Clip) -> str:
    caption = html.escape(clip.label)
    if clip.row is not None:
        r = clip.row
        caption += (f"<br><small>{r.actual_kbps:.2f} kbps on disk, PESQ {r.pesq:.2f}, "
                    f"STOI {r.stoi:.3f}</small>")
    src = html.escape(clip.image or "", quote=True)
    image = (f'<br><a href="{src}"><img src="{src}" alt="spectrogram of {html.escape(clip.label)}" '
             f'width="220"></a>' if clip.image else "")
    return (f'<td><div>{caption}</div><audio controls preload="none" '
            f'src="{html.escape(clip.path, quote=True)}"></audio>{image}</td>')


def write_html(path: Path, title: str, summary: Sequence[Summary], plot_name: str,
               listening: dict[str, list[Clip]], csv_name: str) -> None:
    """The listening page: the summary, the plot, and a row of players per file (reference first)."""
    rows = []
    for name, clips in listening.items():
        rows.append(f"<h3>{html.escape(name)}</h3>\n<table class=\"clips\"><tr>"
                    + "".join(_html_clip(c) for c in clips) + "</tr></table>")
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; margin-bottom: 1em; }}
td, th {{ border: 1px solid #ccc; padding: 4px 8px; text-align: right; vertical-align: top; }}
table.clips td {{ text-align: left; }}
audio {{ width: 220px; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p>Means over all files; every score is against the delay-aligned 16 kHz mono reference.
Per-file scores: <a href="{html.escape(csv_name, quote=True)}">{html.escape(csv_name)}</a>.</p>
{_html_summary(summary)}
<p><img src="{html.escape(plot_name, quote=True)}" alt="rate-distortion plot" style="max-width: 100%"></p>
<h2>Listen</h2>
{chr(10).join(rows) if rows else "<p>No files were kept for listening (--listen 0).</p>"}
</body></html>
"""
    with atomic_output(str(path), force=True) as f:
        f.write(page.encode())
