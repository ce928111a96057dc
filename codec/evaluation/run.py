"""`codec eval`: code every reference file with our model and the baselines, score, report.

Every reference is mixed to mono and resampled to 16 kHz first, and every system
codes that same signal, so that all are scored against one reference at the rate
PESQ-WB is defined for. Our model codes through ``codec.compress`` /
``codec.decompress``, so its bitrate on disk counts the real .rvq bytes.

The baselines' output is delay-aligned to the reference (``align``) before it is
scored; ours is not: the causal model and the bitstream restore the exact timing
by construction, and a cross-correlation peak on a poor decode would only pick
a spurious lag.
"""

from __future__ import annotations

import re
import signal
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from .. import compress, decompress
from ..audio import read_audio, resample, write_audio
from ..datasets import list_audio
from ..errors import CodecError
from ..fileio import atomic_output
from ..model import CodecModel, load_model
from ..model.quantizer import DEFAULT_BEAM
from ..model.refine import refine_or_default
from .align import align, shift
from .baselines import Baseline
from .report import (Clip, Row, Summary, format_summary, plot_rate_distortion, spectrogram_db, summarize,
                     write_csv, write_html, write_spectrogram)
from .scores import SCORE_RATE, metric_packages, score

OURS = "codec"
DEFAULT_KBPS = (1.5, 3.0, 6.0, 12.0)
CSV_NAME, PLOT_NAME, HTML_NAME, AUDIO_DIR = "results.csv", "rate_distortion.png", "index.html", "audio"


@dataclass
class EvalResult:
    """What a run produced: every row, the means, and the paths of the files written."""

    rows: list[Row]
    summary: list[Summary]
    summary_text: str
    csv_path: Path
    plot_path: Path
    html_path: Path
    skipped: list[str] = field(default_factory=list)


def parse_kbps(spec: str) -> list[float]:
    """``"1.5,3,6"`` -> ``[1.5, 3.0, 6.0]``; raises CodecError for anything else."""
    try:
        values = [float(v) for v in spec.split(",") if v.strip()]
    except ValueError:
        raise CodecError(f"--kbps takes comma-separated numbers such as 1.5,3,6,12, not {spec!r}") from None
    if not values:
        raise CodecError("--kbps needs at least one bitrate")
    return values


def load_reference(path: Path) -> np.ndarray:
    """A reference file as mono float32 ``[samples]`` at 16 kHz (AudioError if unreadable)."""
    wav, rate = read_audio(str(path))
    mono = torch.from_numpy(wav.mean(axis=0))
    return resample(mono, rate, SCORE_RATE).numpy()


def _display_names(files: Sequence[Path], refs: Path) -> list[str]:
    """File names relative to the folder (or the manifest's folder) when possible."""
    root = refs if refs.is_dir() else refs.parent
    names = []
    for p in files:
        try:
            names.append(str(p.relative_to(root)))
        except ValueError:
            names.append(str(p))
    return names


def _write_wav(path: Path, wav: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(str(path), force=True) as f:
        write_audio(f, wav, SCORE_RATE)


def _keep_clip(out: Path, clip_dir: Path, name: str, label: str, audio: np.ndarray, top_db: float,
               row: Row | None = None) -> Clip:
    """Write ``audio`` as ``out/clip_dir/name.wav`` and its spectrogram as ``name.png`` beside it,
    for the listening page."""
    wav, png = clip_dir / f"{name}.wav", clip_dir / f"{name}.png"
    _write_wav(out / wav, audio)
    write_spectrogram(audio, SCORE_RATE, out / png, top_db)
    return Clip(label, wav.as_posix(), row, png.as_posix())


@dataclass(frozen=True)
class Coding:
    """How every file is coded and where its listening clips go; the same for all files, so a
    worker process receives it once."""

    model: CodecModel
    rates: Sequence[float]
    baselines: Sequence[Baseline]
    normalize: bool
    beam: int
    refine: int
    out: Path


def _code_ours(model: CodecModel, reference: np.ndarray, kbps: float, normalize: bool,
               beam: int, refine: int) -> tuple[np.ndarray, int]:
    """``reference [N]`` coded to a .rvq stream and back: ``(decoded [N], stream size in bytes)``."""
    data = compress(reference, SCORE_RATE, kbps=kbps, model=model, normalize=normalize, beam=beam, refine=refine)
    decoded, _ = decompress(data, model=model, sample_rate=SCORE_RATE)
    return decoded[0].numpy(), len(data)


def evaluate_file(coding: Coding, index: int, path: Path, name: str, keep: bool,
                  on_coded: Callable[[], None] = lambda: None) -> tuple[list[Row], list[Clip]]:
    """Code ``path`` with our model at every rate and with every baseline, and score each.

    Returns its rows (ours by rate, then each baseline's) and, when ``keep``, the clips of its
    listening-page entry (the reference first), whose WAVs and spectrograms are written under
    ``coding.out``. ``on_coded`` is called after each coding, for a progress bar.
    """
    reference = load_reference(path)
    clip_dir = Path(AUDIO_DIR) / f"{index:03d}_{re.sub(r'[^A-Za-z0-9._-]', '_', path.stem)}"
    top_db = float(spectrogram_db(reference).max()) if keep else 0.0    # the file's spectrograms share it
    clips = [_keep_clip(coding.out, clip_dir, "reference", "reference", reference, top_db)] if keep else []
    seconds = len(reference) / SCORE_RATE
    rows: list[Row] = []

    def record(system: str, nominal: float, decoded: np.ndarray, num_bytes: int, delayed: bool) -> None:
        aligned, delay = (align(reference, decoded, SCORE_RATE) if delayed
                          else (shift(decoded, 0, len(reference)), 0))
        s = score(reference, aligned)
        row = Row(name, system, nominal, num_bytes * 8 / max(seconds, 1e-9) / 1000,
                  s.pesq, s.stoi, s.mel_l1, s.si_sdr, 1000 * delay / SCORE_RATE, seconds, num_bytes)
        rows.append(row)
        if keep:
            clips.append(_keep_clip(coding.out, clip_dir, f"{system}_{nominal:g}kbps",
                                    f"{system} {nominal:g} kbps", aligned, top_db, row))
        on_coded()

    for rate in coding.rates:
        decoded, size = _code_ours(coding.model, reference, rate, coding.normalize, coding.beam, coding.refine)
        record(OURS, rate, decoded, size, delayed=False)
    for b in coding.baselines:
        for rate in b.kbps:
            coded = b.code(reference, rate)
            record(b.name, rate, coded.audio, coded.num_bytes, delayed=True)
    return rows, clips


# A worker process's Coding, set once by _start_worker so that each file's task stays small.
_worker_coding: Coding | None = None


def _start_worker(coding: Coding, threads: int) -> None:
    global _worker_coding
    signal.signal(signal.SIGINT, signal.SIG_IGN)    # Ctrl-C is the main process's to report
    torch.set_num_threads(threads)
    _worker_coding = coding


def _evaluate_task(task: tuple[int, Path, str, bool]) -> tuple[list[Row], list[Clip]]:
    assert _worker_coding is not None, "_start_worker runs first in every worker"
    return evaluate_file(_worker_coding, *task)


def _evaluate_files(coding: Coding, files: Sequence[Path], names: Sequence[str], listen: int, jobs: int,
                    bar) -> list[tuple[list[Row], list[Clip]]]:
    """``evaluate_file`` for every file, in file order; ``jobs`` > 1 codes that many files at
    once, each in its own process with an equal share of torch's threads.

    Processes rather than threads, because refinement and scoring hold the interpreter for much
    of their time; spawned rather than forked, because forking a process whose OpenMP pool has
    started can hang the child. A file that fails, or Ctrl-C, ends the run and its workers at
    once, as with one job.
    """
    tasks = [(i, path, name, i < listen) for i, (path, name) in enumerate(zip(files, names))]
    if jobs == 1:
        results = []
        for task in tasks:
            bar.set_postfix_str(task[2], refresh=False)
            results.append(evaluate_file(coding, *task, on_coded=lambda: bar.update(1)))
        return results
    threads = max(1, torch.get_num_threads() // jobs)
    results = []
    with get_context("spawn").Pool(jobs, initializer=_start_worker, initargs=(coding, threads)) as pool:
        for task, result in zip(tasks, pool.imap(_evaluate_task, tasks)):    # leaving the block kills the workers
            results.append(result)
            bar.set_postfix_str(task[2], refresh=False)
            bar.update(len(result[0]))
    return results


def evaluate(refs: str | Path, out_dir: str | Path, kbps: Sequence[float] = DEFAULT_KBPS,
             baselines: Sequence[Baseline] = (), model: CodecModel | str | None = None,
             limit: int | None = None, listen: int = 5, log: Callable[[str], None] = print,
             progress: bool = True, normalize: bool = True, beam: int = DEFAULT_BEAM,
             refine: int | None = None, jobs: int = 1) -> EvalResult:
    """Code and score every file of ``refs`` (a folder or a manifest); write the reports to ``out_dir``.

    Args:
        refs: a folder of audio files (searched recursively) or a TSV manifest.
        out_dir: receives results.csv, rate_distortion.png, index.html and audio/ (created if needed).
        kbps: our model's bitrates; each becomes the most levels that fit.
        baselines: reference codecs (``BASELINES``); those whose tools are missing are skipped
            with a line to ``log``.
        model: a model, a shipped model's name or a model file; default: the shipped default.
        limit: evaluate the first ``limit`` files only.
        listen: how many files get WAVs and players on the listening page.
        log: where notices (skipped baselines) go.
        progress: show a progress bar (on a terminal).
        normalize: code each file at the model's level, as `codec encode` does (codec.loudness).
        beam: the width of the quantizer's search for codes, as `codec encode --beam`.
        refine: steps of the encoder's refinement of its codes, as `codec encode --refine`
            (None: the default).
        jobs: files coded at once, each in its own process with 1/jobs of torch's threads; the
            scores match a one-job run at that many threads.
    """
    if jobs < 1:
        raise CodecError(f"jobs must be at least 1, not {jobs}")
    metric_packages()                                   # fail before any work if PESQ/STOI are missing
    refine = refine_or_default(refine)
    model = model if isinstance(model, CodecModel) else load_model(model)
    levels = sorted({model.levels_for_kbps(k) for k in kbps})
    rates = [model.kbps_for_levels(n) for n in levels]

    refs = Path(refs)
    try:
        files = list_audio(refs)
    except FileNotFoundError as e:
        raise CodecError(str(e)) from None
    if limit is not None:
        files = files[:max(0, limit)]
    if not files:
        raise CodecError(f"no files to evaluate in {refs} (--limit {limit})")
    names = _display_names(files, refs)

    skipped, active = [], []
    for b in baselines:
        if b.missing_tools():
            skipped.append(b.missing_message())
            log(skipped[-1])
        else:
            active.append(b)

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise CodecError(f"{out} exists and is not a folder; give a folder for --out")
    out.mkdir(parents=True, exist_ok=True)

    from tqdm import tqdm

    coding = Coding(model, rates, active, normalize, beam, refine, out)
    total = len(files) * (len(rates) + sum(len(b.kbps) for b in active))
    with tqdm(total=total, desc="codec eval", unit="coding", disable=None if progress else True) as bar:
        results = _evaluate_files(coding, files, names, listen, min(jobs, len(files)), bar)
    rows = [row for file_rows, _ in results for row in file_rows]
    listening = {name: clips for name, (_, clips) in zip(names, results) if clips}

    systems = [OURS, *[b.name for b in active]]
    summary = summarize(rows, systems)
    model_name = model.config.name
    level = f"coded at {model.config.input_dbfs:g} dBFS" if normalize else "coded as recorded"
    # The fingerprint names the weights: every snapshot of a model shares its config's name.
    weights = model.fingerprint[:16] if model.fingerprint else "unsaved"
    title = (f"codec eval: model {model_name} {weights} ({level}, beam {beam}, refine {refine}) "
             f"on {len(files)} file{'s' * (len(files) != 1)}")
    labels = {OURS: f"codec ({model_name})", **{b.name: b.label for b in active}}
    csv_path, plot_path, html_path = out / CSV_NAME, out / PLOT_NAME, out / HTML_NAME
    write_csv(rows, csv_path)
    plot_rate_distortion(summary, labels, plot_path, title)
    write_html(html_path, title, summary, PLOT_NAME, listening, CSV_NAME)
    text = f"{title}\n\n{format_summary(summary, OURS)}"
    return EvalResult(rows, summary, text, csv_path, plot_path, html_path, skipped)
