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
from dataclasses import dataclass, field
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


def _code_ours(model: CodecModel, reference: np.ndarray, kbps: float, normalize: bool,
               beam: int, refine: int) -> tuple[np.ndarray, int]:
    """``reference [N]`` coded to a .rvq stream and back: ``(decoded [N], stream size in bytes)``."""
    data = compress(reference, SCORE_RATE, kbps=kbps, model=model, normalize=normalize, beam=beam, refine=refine)
    decoded, _ = decompress(data, model=model, sample_rate=SCORE_RATE)
    return decoded[0].numpy(), len(data)


def evaluate(refs: str | Path, out_dir: str | Path, kbps: Sequence[float] = DEFAULT_KBPS,
             baselines: Sequence[Baseline] = (), model: CodecModel | str | None = None,
             limit: int | None = None, listen: int = 5, log: Callable[[str], None] = print,
             progress: bool = True, normalize: bool = True, beam: int = DEFAULT_BEAM,
             refine: int | None = None) -> EvalResult:
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
    """
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

    jobs = len(files) * (len(rates) + sum(len(b.kbps) for b in active))
    rows: list[Row] = []
    listening: dict[str, list[Clip]] = {}
    with tqdm(total=jobs, desc="codec eval", unit="coding", disable=None if progress else True) as bar:
        for index, (path, name) in enumerate(zip(files, names)):
            bar.set_postfix_str(name, refresh=False)
            reference = load_reference(path)
            clip_dir = Path(AUDIO_DIR) / f"{index:03d}_{re.sub(r'[^A-Za-z0-9._-]', '_', path.stem)}"
            keep = index < listen
            if keep:
                top_db = float(spectrogram_db(reference).max())      # the file's spectrograms share it
                listening[name] = [_keep_clip(out, clip_dir, "reference", "reference", reference, top_db)]
            seconds = len(reference) / SCORE_RATE

            def record(system: str, nominal: float, decoded: np.ndarray, num_bytes: int,
                       delayed: bool) -> None:
                aligned, delay = (align(reference, decoded, SCORE_RATE) if delayed
                                  else (shift(decoded, 0, len(reference)), 0))
                s = score(reference, aligned)
                row = Row(name, system, nominal, num_bytes * 8 / max(seconds, 1e-9) / 1000,
                          s.pesq, s.stoi, s.mel_l1, s.si_sdr, 1000 * delay / SCORE_RATE, seconds, num_bytes)
                rows.append(row)
                if keep:
                    listening[name].append(_keep_clip(out, clip_dir, f"{system}_{nominal:g}kbps",
                                                      f"{system} {nominal:g} kbps", aligned, top_db, row))
                bar.update(1)

            for rate in rates:
                decoded, size = _code_ours(model, reference, rate, normalize, beam, refine)
                record(OURS, rate, decoded, size, delayed=False)
            for b in active:
                for rate in b.kbps:
                    coded = b.code(reference, rate)
                    record(b.name, rate, coded.audio, coded.num_bytes, delayed=True)

    systems = [OURS, *[b.name for b in active]]
    summary = summarize(rows, systems)
    model_name = model.config.name
    level = f"coded at {model.config.input_dbfs:g} dBFS" if normalize else "coded as recorded"
    title = (f"codec eval: model {model_name} ({level}, beam {beam}, refine {refine}) "
             f"on {len(files)} file{'s' * (len(files) != 1)}")
    labels = {OURS: f"codec ({model_name})", **{b.name: b.label for b in active}}
    csv_path, plot_path, html_path = out / CSV_NAME, out / PLOT_NAME, out / HTML_NAME
    write_csv(rows, csv_path)
    plot_rate_distortion(summary, labels, plot_path, title)
    write_html(html_path, title, summary, PLOT_NAME, listening, CSV_NAME)
    text = f"{title}\n\n{format_summary(summary, OURS)}"
    return EvalResult(rows, summary, text, csv_path, plot_path, html_path, skipped)
