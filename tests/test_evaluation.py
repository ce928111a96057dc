"""`codec eval`: alignment, scores, baselines and the whole command on two short clips."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

from codec import load_model
from codec.cli import main
from codec.evaluation.align import align, estimate_delay, shift
from codec.evaluation.baselines import BASELINES, parse_baselines
from codec.evaluation.run import load_reference
from codec.model.quantizer import DEFAULT_BEAM

from .conftest import SAMPLES

RATE = 16000


def run(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """3 s of real speech, mono float32 [samples] at 16 kHz."""
    return load_reference(SAMPLES / "librispeech_5456.flac")[:3 * RATE]


@pytest.fixture
def refs(tmp_path) -> Path:
    """A folder of two 1.5 s speech clips (one in a subfolder)."""
    folder = tmp_path / "refs"
    (folder / "b").mkdir(parents=True)
    for source, target in (("speechocean_0094.flac", "a.flac"), ("librispeech_5456.flac", "b/c.wav")):
        wav, rate = sf.read(SAMPLES / source, dtype="float32")
        sf.write(folder / target, wav[rate // 2:rate // 2 + int(1.5 * rate)], rate)
    return folder


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# -- alignment -------------------------------------------------------------------------------------

@pytest.mark.parametrize("delay", [0, 1, 123, -57, 799])
def test_alignment_recovers_a_known_delay(speech, delay):
    reference = speech[:RATE]
    delayed = shift(speech[:RATE + 1000], -delay, RATE + 1000)      # delayed[n] = reference[n - delay]
    assert estimate_delay(reference, delayed, max_shift=800) == delay
    aligned, found = align(reference, delayed + 0.01 * np.random.randn(len(delayed)).astype(np.float32), RATE)
    assert found == delay and aligned.shape == reference.shape
    assert np.abs(aligned[:RATE - 800] - reference[:RATE - 800]).max() < 0.05


def test_alignment_stays_within_its_window_and_ignores_silence(speech):
    reference = speech[:RATE]
    far = shift(reference, -1200, RATE)                  # 75 ms: beyond the ±50 ms window
    assert abs(estimate_delay(reference, far, max_shift=800)) <= 800
    assert estimate_delay(reference, np.zeros(RATE, np.float32), 800) == 0
    assert align(reference, reference[:RATE // 2], RATE)[0].shape == (RATE,)   # short output is padded


# -- scores ----------------------------------------------------------------------------------------

def test_identical_signals_score_best_and_noise_lowers_the_scores(speech):
    pytest.importorskip("pesq")
    pytest.importorskip("pystoi")
    from codec.evaluation.scores import score

    clean = score(speech, speech)
    assert clean.stoi > 0.99 and clean.pesq > 4.4 and clean.mel_l1 < 1e-3 and clean.si_sdr > 60
    rng = np.random.default_rng(0)
    noisy_signal = speech + rng.standard_normal(len(speech)).astype(np.float32) * speech.std()   # 0 dB SNR
    noisy = score(speech, noisy_signal)
    assert noisy.stoi < clean.stoi - 0.1 and noisy.pesq < 2.0
    assert noisy.mel_l1 > clean.mel_l1 and abs(noisy.si_sdr) < 1.0


def test_pesq_failure_is_nan_not_an_error():
    pytest.importorskip("pesq")
    from codec.evaluation.scores import pesq_wb

    assert np.isnan(pesq_wb(np.zeros(RATE, np.float32), np.zeros(RATE, np.float32)))


def test_a_clip_too_short_to_score_gets_nan_not_an_error(speech):
    pytest.importorskip("pesq")
    pytest.importorskip("pystoi")
    from codec.evaluation.scores import score

    short = score(speech[:160], speech[:160])                   # 10 ms: too little for PESQ, STOI, the mel FFT
    assert np.isnan(short.pesq) and np.isnan(short.stoi) and short.mel_l1 < 1e-3


def test_a_missing_metric_package_names_what_to_install(monkeypatch, refs, shared_tiny_model_file, tmp_path):
    monkeypatch.setitem(sys.modules, "pystoi", None)          # import pystoi now raises ImportError
    result = run("eval", refs, "--model", shared_tiny_model_file, "--kbps", "0.6", "--baseline", "none",
                 "--out", tmp_path / "out")
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "pystoi" in lines[0] and "pip install pesq pystoi" in lines[0], result.stderr
    assert "codec[eval]" in lines[0] and not (tmp_path / "out").exists()   # failed before any work


# -- baselines -------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, kbps", [("opus", 6.0), ("codec2", 1.2)])
def test_baseline_codes_at_about_its_bitrate(speech, name, kbps):
    baseline = BASELINES[name]
    if baseline.missing_tools():
        pytest.skip(baseline.missing_message())
    coded = baseline.code(speech, kbps)
    assert abs(len(coded.audio) - len(speech)) < 0.05 * RATE
    actual = coded.num_bytes * 8 / (len(speech) / RATE) / 1000
    # Ogg pages and headers cost Opus about 1.3 kbps on these 3 s; opusenc's default 512 bytes of
    # reserved tag space would add about 1.7 kbps more that carries nothing (hence --padding 0)
    assert kbps * 0.95 < actual < kbps * (1.3 if name == "opus" else 1.1)
    aligned, delay = align(speech, coded.audio, RATE)
    assert np.corrcoef(aligned, speech)[0, 1] > (0.5 if name == "opus" else 0.0)


def test_summary_leaves_unscored_files_out_and_pools_bytes():
    from codec.evaluation.report import Row, format_summary, summarize

    rows = [Row("a", "codec", 6.0, 6.4, 2.0, 0.8, 0.5, 5.0, 0.0, 1.0, 800),
            Row("b", "codec", 6.0, 6.1, float("nan"), 0.6, 0.7, 3.0, 0.0, 9.0, 6900),
            Row("a", "codec", 12.0, 12.4, 3.0, 0.9, 0.3, 9.0, 0.0, 1.0, 1550),
            Row("b", "codec", 12.0, 12.1, 2.5, 0.9, 0.4, 8.0, 0.0, 9.0, 13600)]
    low, high = summarize(rows, ["codec"])
    assert (low.pesq, low.stoi, low.files, low.unscored) == (2.0, 0.7, 2, 1)
    assert low.actual_kbps == pytest.approx(7700 * 8 / 10 / 1000)           # all bytes over all seconds
    text = format_summary([low, high], "codec")
    assert "codec: PESQ-WB improves with every bitrate step" in text
    assert "codec: STOI does not improve at 6 -> 12 kbps" not in text
    assert "codec: log-mel L1 improves with every bitrate step" in text


def test_bitrate_steps_pair_each_bitrate_with_the_one_below_file_by_file():
    from codec.evaluation.compare import bitrate_steps
    from codec.evaluation.report import Row

    def row(file: str, kbps: float, pesq: float, system: str = "codec") -> Row:
        return Row(file, system, kbps, kbps, pesq, 0.9, 0.2, 1.0, 0.0, 1.0, 100)

    rows = [row("a", 3, 2.0), row("b", 3, 3.0), row("a", 6, 2.1), row("b", 6, 3.3),
            row("a", 12, 2.0), row("c", 12, 9.0),                     # c has no lower step to pair with
            row("a", 6, 1.0, "opus"), row("a", 12, 4.0, "opus")]
    pesq = {s.nominal_kbps: s for s in bitrate_steps(rows, "codec") if s.metric == "pesq"}
    assert sorted(pesq) == [6, 12]
    assert (pesq[6].files, pesq[6].base, pesq[6].other) == (2, pytest.approx(2.5), pytest.approx(2.7))
    assert pesq[6].difference == pytest.approx(0.2) and pesq[6].standard_error == pytest.approx(0.1)
    assert (pesq[12].files, pesq[12].difference) == (1, pytest.approx(-0.1))


def test_a_spectrogram_shows_a_tone_at_its_frequency_and_silence_below_the_scale():
    from codec.evaluation.report import SPECTROGRAM_WINDOW, spectrogram_db

    t = np.arange(RATE) / RATE
    tone = spectrogram_db(0.1 * np.sin(2 * np.pi * 1000 * t))
    assert tone.shape[0] == SPECTROGRAM_WINDOW // 2 + 1
    assert abs(int(np.median(tone.argmax(axis=0))) - 1000 * SPECTROGRAM_WINDOW // RATE) <= 1   # the 1 kHz bin
    assert spectrogram_db(np.zeros(RATE)).max() < tone.max() - 150


def test_parse_baselines():
    assert [b.name for b in parse_baselines("opus,codec2")] == ["opus", "codec2"]
    assert parse_baselines("none") == [] and parse_baselines("") == []
    with pytest.raises(Exception, match="unknown baseline mp3: choose from opus, codec2, or none"):
        parse_baselines("opus,mp3")


def test_a_baseline_missing_from_path_is_skipped_with_what_to_install(monkeypatch, refs, shared_tiny_model_file,
                                                                      tmp_path):
    pytest.importorskip("pesq")
    pytest.importorskip("pystoi")
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    out = tmp_path / "out"
    result = run("eval", refs, "--model", shared_tiny_model_file, "--kbps", "0.6", "--baseline", "opus,codec2",
                 "--out", out, "--limit", "1")
    assert result.exit_code == 0, result.stderr
    assert ("skipping Opus: opusenc and opusdec not found on PATH; install them with `apt-get install opus-tools`"
            in result.stderr)
    assert "skipping Codec2: c2enc and c2dec not found on PATH; install them with `apt-get install codec2`" \
        in result.stderr
    assert {r["system"] for r in read_rows(out / "results.csv")} == {"codec"}


# -- the command -----------------------------------------------------------------------------------

def test_eval_writes_csv_plot_and_listening_page(refs, shared_tiny_model_file, tmp_path):
    pytest.importorskip("pesq")
    pytest.importorskip("pystoi")
    out = tmp_path / "out"
    result = run("eval", refs, "--model", shared_tiny_model_file, "--kbps", "0.6,1.2", "--baseline", "none",
                 "--out", out, "--listen", "1")
    assert result.exit_code == 0, result.stderr

    rows = read_rows(out / "results.csv")
    assert list(rows[0]) == ["file", "system", "nominal_kbps", "actual_kbps", "pesq", "stoi", "mel_l1",
                             "si_sdr", "delay_ms", "seconds", "num_bytes"]
    assert [(r["file"], r["system"], float(r["nominal_kbps"])) for r in rows] == [
        ("a.flac", "codec", 0.6), ("a.flac", "codec", 1.2), ("b/c.wav", "codec", 0.6), ("b/c.wav", "codec", 1.2)]
    for r in rows:
        # 42-byte header, 6 bytes a second, 14-byte end packet on 1.5 s: a little above nominal.
        assert float(r["nominal_kbps"]) < float(r["actual_kbps"]) < float(r["nominal_kbps"]) + 0.4
        assert 0 <= float(r["stoi"]) <= 1 and np.isfinite(float(r["si_sdr"])) and float(r["mel_l1"]) > 0

    assert (out / "rate_distortion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (out / "index.html").read_text()
    assert page.count("<audio") == 3 and 'src="rate_distortion.png"' in page   # reference + 2 bitrates
    for stem in ("reference", "codec_0.6kbps", "codec_1.2kbps"):
        assert f'src="audio/000_a/{stem}.wav"' in page and f'src="audio/000_a/{stem}.png"' in page
        assert sf.info(out / "audio" / "000_a" / f"{stem}.wav").samplerate == RATE
        assert (out / "audio" / "000_a" / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (out / "audio" / "001_c").exists()                             # --listen 1

    lines = result.stdout.splitlines()
    weights = load_model(shared_tiny_model_file).fingerprint[:16]     # which snapshot of "tiny" was scored
    assert lines[0].startswith(f"codec eval: model tiny {weights} (coded at -20 dBFS, beam {DEFAULT_BEAM}, refine 0) "
                               "on 2 files")
    assert lines[2].split()[:3] == ["system", "kbps", "on"] and sum(ln.startswith("codec ") for ln in lines[2:]) == 2
    assert "PESQ-WB" in result.stdout and "every bitrate step" in result.stdout


def test_eval_reads_a_manifest_and_limits_the_files(refs, shared_tiny_model_file, tmp_path):
    pytest.importorskip("pesq")
    pytest.importorskip("pystoi")
    manifest = tmp_path / "refs" / "list.tsv"
    manifest.write_text("path\tspeaker\nb/c.wav\ts1\na.flac\ts2\n")
    out = tmp_path / "out"
    result = run("eval", manifest, "--model", shared_tiny_model_file, "--kbps", "2.4", "--baseline", "none",
                 "--out", out, "--limit", "1", "--listen", "0", "--beam", "1", "--refine", "1")
    assert result.exit_code == 0, result.stderr
    assert [(r["file"], r["nominal_kbps"]) for r in read_rows(out / "results.csv")] == [("b/c.wav", "2.4000")]
    weights = load_model(shared_tiny_model_file).fingerprint[:16]
    assert result.stdout.startswith(f"codec eval: model tiny {weights} (coded at -20 dBFS, beam 1, refine 1) on 1 file")
    assert "<audio" not in (out / "index.html").read_text()


def test_eval_in_two_processes_writes_what_one_process_writes(refs, shared_tiny_model_file, tmp_path):
    pytest.importorskip("pesq")
    pytest.importorskip("pystoi")
    outs = {jobs: tmp_path / f"jobs{jobs}" for jobs in (1, 2)}
    threads = torch.get_num_threads()
    try:
        for jobs, out in outs.items():
            # One thread per process either way (two jobs split two threads): the same arithmetic.
            torch.set_num_threads(jobs)
            result = run("eval", refs, "--model", shared_tiny_model_file, "--kbps", "0.6,2.4", "--baseline",
                         "none", "--out", out, "--listen", "1", "--refine", "1", "--jobs", jobs)
            assert result.exit_code == 0, result.stderr
    finally:
        torch.set_num_threads(threads)
    one, two = (read_rows(out / "results.csv") for out in outs.values())
    assert [(r["file"], r["nominal_kbps"]) for r in two] == [
        ("a.flac", "0.6000"), ("a.flac", "2.4000"), ("b/c.wav", "0.6000"), ("b/c.wav", "2.4000")]
    assert two == one
    pages = [(out / "index.html").read_text() for out in outs.values()]
    assert pages[1] == pages[0].replace("jobs1", "jobs2") and pages[1].count("<audio") == 3   # reference + 2 rates
    for stem in ("reference", "codec_0.6kbps", "codec_2.4kbps"):
        assert (outs[2] / "audio" / "000_a" / f"{stem}.wav").is_file()
    assert not (outs[2] / "audio" / "001_c").exists()


def test_a_file_that_fails_in_a_worker_ends_the_run_with_its_one_line(refs, shared_tiny_model_file, tmp_path):
    pytest.importorskip("pesq")
    pytest.importorskip("pystoi")
    (refs / "b" / "c.wav").write_text("not audio")
    result = run("eval", refs, "--model", shared_tiny_model_file, "--kbps", "0.6", "--baseline", "none",
                 "--out", tmp_path / "out", "--refine", "0", "--jobs", "2")
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1, result.stderr
    assert "c.wav is not an audio file soundfile can read" in lines[0]
    assert not (tmp_path / "out" / "results.csv").exists()


@pytest.mark.parametrize("args, message", [
    (["--kbps", "fast"], "--kbps takes comma-separated numbers"),
    (["--kbps", "50"], "bitrate 50.0 kbps is outside this model's range"),
    (["--baseline", "mp3"], "unknown baseline mp3"),
])
def test_eval_user_errors_are_one_line(refs, shared_tiny_model_file, tmp_path, args, message):
    pytest.importorskip("pesq")
    pytest.importorskip("pystoi")
    result = run("eval", refs, "--model", shared_tiny_model_file, "--out", tmp_path / "out", *args)
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1 and message in lines[0], result.stderr


def test_eval_of_a_missing_folder_is_one_line(tmp_path, shared_tiny_model_file):
    pytest.importorskip("pesq")
    pytest.importorskip("pystoi")
    result = run("eval", tmp_path / "nowhere", "--model", shared_tiny_model_file, "--baseline", "none",
                 "--kbps", "0.6", "--out", tmp_path / "out")
    assert result.exit_code == 1 and "is neither a folder of audio files nor a manifest" in result.stderr


def test_inference_side_never_imports_training():
    code = ("import sys, codec.evaluation, codec.evaluation.compare, codec.datasets, codec.cli, "
            "codec.coding, codec.loudness, codec.model.refine; "
            "sys.exit(any(m.startswith(('codec.train', 'auraloss')) for m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
    from codec.datasets import list_audio
    from codec.train import train
    assert train.list_audio is list_audio          # one implementation serves training and evaluation



def _rows(system: str, kbps: float, pesq: dict[str, float]) -> list:
    from codec.evaluation.report import Row

    return [Row(name, system, kbps, kbps + 0.1, value, 0.8, 0.2, -3.0, 0.0, 1.0, 100) for name, value in pesq.items()]


def test_results_csv_reads_back_as_written(tmp_path):
    from codec.evaluation.compare import read_results
    from codec.evaluation.report import write_csv

    rows = _rows("codec", 6.0, {"a.flac": 2.25, "b.flac": float("nan")}) + _rows("opus", 8.0, {"a.flac": 3.5})
    write_csv(rows, tmp_path / "results.csv")
    back = read_results(tmp_path)                       # a folder means its results.csv
    assert [(r.file, r.system, r.nominal_kbps, r.num_bytes) for r in back] == \
        [(r.file, r.system, r.nominal_kbps, r.num_bytes) for r in rows]
    assert back[0].pesq == 2.25 and np.isnan(back[1].pesq) and isinstance(back[0].num_bytes, int)


def test_paired_differences_pair_files_and_skip_what_only_one_run_scored():
    from codec.evaluation.compare import paired_differences

    base = _rows("codec", 6.0, {"a": 1.0, "b": 2.0, "c": 3.0, "d": 2.0, "only-base": 4.0})
    other = _rows("codec", 6.0, {"a": 1.1, "b": 2.2, "c": 3.3, "d": float("nan"), "only-other": 1.0})
    other += _rows("codec", 12.0, {"a": 5.0})           # a bitrate the base never scored
    (pesq,) = [p for p in paired_differences(base, other) if p.metric == "pesq"]
    assert (pesq.system, pesq.nominal_kbps, pesq.files) == ("codec", 6.0, 3)
    assert (pesq.base, pesq.other) == pytest.approx((2.0, 2.2))
    assert pesq.difference == pytest.approx(0.2)
    # the spread of the per-file differences (0.1, 0.2, 0.3), not of the scores themselves
    assert pesq.standard_error == pytest.approx(0.1 / np.sqrt(3))


def test_compare_says_which_run_is_better_beyond_noise(tmp_path):
    from codec.evaluation.report import write_csv

    scores = {f"f{i}": 1.0 + 0.1 * i for i in range(10)}
    write_csv(_rows("codec", 6.0, scores), tmp_path / "old.csv")
    write_csv(_rows("codec", 6.0, {k: v + 0.05 + 0.001 * (i % 3) for i, (k, v) in enumerate(scores.items())}),
              tmp_path / "new.csv")
    result = run("compare", tmp_path / "old.csv", tmp_path / "new.csv")
    assert result.exit_code == 0, result.stderr
    (line,) = [l for l in result.stdout.splitlines() if "PESQ-WB" in l]
    assert line.split()[-4:] == ["+0.051", "±", "0.000", "better"]
    result = run("compare", tmp_path / "new.csv", tmp_path / "old.csv")
    assert [l for l in result.stdout.splitlines() if "PESQ-WB" in l][0].endswith("worse")
    (stoi,) = [l for l in result.stdout.splitlines() if "STOI" in l]
    assert stoi.endswith("~")                           # identical scores: no verdict


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "missing.csv", "cannot read"),
    (lambda d: (d / "x.csv").write_text("a,b\n1,2\n") and d / "x.csv", "not a results.csv"),
    (lambda d: (d / "x.bin").write_bytes(b"\xff\xfe\x00") and d / "x.bin", "not a results.csv"),
])
def test_compare_user_errors_are_one_line(tmp_path, make, message):
    from codec.evaluation.report import write_csv

    write_csv(_rows("codec", 6.0, {"a": 1.0}), tmp_path / "ok.csv")
    result = run("compare", tmp_path / "ok.csv", make(tmp_path))
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1 and message in lines[0], result.stderr


def test_compare_of_runs_without_a_common_file_is_one_line(tmp_path):
    from codec.evaluation.report import write_csv

    write_csv(_rows("codec", 6.0, {"a": 1.0}), tmp_path / "one.csv")
    write_csv(_rows("codec", 6.0, {"b": 1.0}), tmp_path / "two.csv")
    result = run("compare", tmp_path / "one.csv", tmp_path / "two.csv")
    assert result.exit_code == 1 and "share no scored file" in result.stderr
