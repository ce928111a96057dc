"""Corpus manifests and recipes, on tiny fake corpora laid out like the real ones."""

from __future__ import annotations

import csv
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from codec.train.config import TrainConfig
from codec.train.corpora import prepare_manifest
from codec.datasets import list_audio
from codec.train.prepare import main as prepare_main

from .conftest import SAMPLES

RECIPES = Path(__file__).resolve().parent.parent / "recipes"
RECIPE_NAMES = ["librispeech", "libritts", "vctk", "commonvoice", "folder", "speech16k"]
MP3 = "MP3" in sf.available_formats()


def noise(path: Path, rate: int, seconds: float = 0.2, fmt: str | None = None) -> None:
    """A short clip of quiet noise."""
    path.parent.mkdir(parents=True, exist_ok=True)
    wav = (0.1 * np.random.default_rng(len(str(path))).standard_normal(int(rate * seconds))).astype(np.float32)
    sf.write(str(path), wav, rate, format=fmt)


def rows(manifest: Path) -> list[dict[str, str]]:
    with open(manifest, newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def check(manifest: Path, count: int, speakers: set[str], seconds: float = 0.2) -> list[dict[str, str]]:
    """The manifest has ``count`` rows of these speakers and durations, and list_audio finds them."""
    r = rows(manifest)
    assert manifest.read_text().splitlines()[0] == "path\tspeaker\tseconds"
    assert len(r) == count
    assert {row["speaker"] for row in r} == speakers
    assert all(abs(float(row["seconds"]) - seconds) < 1e-3 for row in r)
    files = list_audio(manifest)
    assert len(files) == count and all(p.is_file() for p in files)
    return r


# -- fake corpora ------------------------------------------------------------------------------

def fake_librispeech(root: Path, subset: str = "train-clean-100") -> None:
    """ROOT/LibriSpeech/SUBSET/SPK/CHAPTER/SPK-CHAPTER-UTT.flac and the chapter transcript."""
    for spk, chapter in [("19", "198"), ("19", "227"), ("26", "495")]:
        folder = root / "LibriSpeech" / subset / spk / chapter
        ids = [f"{spk}-{chapter}-{u:04d}" for u in range(2)]
        for i in ids:
            noise(folder / f"{i}.flac", 16000)
        (folder / f"{spk}-{chapter}.trans.txt").write_text("".join(f"{i} SOME WORDS\n" for i in ids))


def fake_libritts(root: Path) -> None:
    """ROOT/LibriTTS/train-clean-100/SPK/CHAPTER/SPK_CHAPTER_PARA_SENT.wav (24 kHz) and texts."""
    for spk, chapter in [("103", "1241"), ("1034", "121119")]:
        folder = root / "LibriTTS" / "train-clean-100" / spk / chapter
        for k in range(3):
            stem = f"{spk}_{chapter}_{k:06d}_000000"
            noise(folder / f"{stem}.wav", 24000)
            (folder / f"{stem}.normalized.txt").write_text("Some words.")
            (folder / f"{stem}.original.txt").write_text("Some words.")
        (folder / f"{spk}_{chapter}.trans.tsv").write_text("")


def fake_vctk(root: Path) -> None:
    """ROOT/VCTK-Corpus-0.92/wav48_silence_trimmed/pXXX/pXXX_YYY_mic{1,2}.flac (48 kHz), txt/."""
    base = root / "VCTK-Corpus-0.92"
    for spk in ["p225", "p226"]:
        for utt in ["001", "002"]:
            for mic in ["mic1", "mic2"]:
                noise(base / "wav48_silence_trimmed" / spk / f"{spk}_{utt}_{mic}.flac", 48000)
            (base / "txt" / spk).mkdir(parents=True, exist_ok=True)
            (base / "txt" / spk / f"{spk}_{utt}.txt").write_text("Please call Stella.\n")
    (base / "speaker-info.txt").write_text("ID  AGE  GENDER  ACCENTS\n")


CV_HEADER = ["client_id", "path", "sentence", "up_votes", "down_votes", "age", "gender",
             "accents", "variant", "locale", "segment"]


def fake_commonvoice(root: Path) -> None:
    """ROOT/train.tsv (Common Voice's columns) and ROOT/clips/. The clips are MP3 as in the real
    corpus where this soundfile can write MP3, FLAC under the same names' stems otherwise."""
    ext, fmt = (".mp3", "MP3") if MP3 else (".flac", "FLAC")
    lines = ["\t".join(CV_HEADER)]
    for k, client in enumerate(["a1b2", "a1b2", "c3d4"]):
        name = f"common_voice_en_{1000 + k}{ext}"
        noise(root / "clips" / name, 48000, fmt=fmt)
        # a lone quote in a sentence must not swallow the rest of the file
        lines.append("\t".join([client, name, 'He said "hello.', "2", "0", "", "", "", "", "en", ""]))
    (root / "train.tsv").write_text("\n".join(lines) + "\n")
    (root / "dev.tsv").write_text("\t".join(CV_HEADER) + "\n")


def fake_folder(root: Path) -> None:
    """Audio at several depths, a text file, and one file that is not audio at all."""
    noise(root / "alice" / "day1" / "a.wav", 16000)
    noise(root / "alice" / "b.flac", 22050)
    noise(root / "bob" / "c.FLAC", 44100)
    noise(root / "top.wav", 8000)
    (root / "notes.txt").write_text("not audio")
    (root / "bob" / "broken.wav").write_bytes(b"RIFF garbage")


# -- manifests ---------------------------------------------------------------------------------

def test_librispeech(tmp_path):
    fake_librispeech(tmp_path / "data")
    fake_librispeech(tmp_path / "data", "dev-clean")
    out = tmp_path / "runs" / "ls.tsv"
    assert prepare_manifest("librispeech", tmp_path / "data", out) == 6
    r = check(out, 6, {"19", "26"})
    assert all(Path(row["path"]).is_absolute() for row in r)        # outside the manifest's folder
    assert all("train-clean-100" in row["path"] for row in r)
    # several subsets; ROOT may also be the LibriSpeech folder itself
    both = tmp_path / "both.tsv"
    assert prepare_manifest("librispeech", tmp_path / "data" / "LibriSpeech", both,
                            subset="train-clean-100,dev-clean") == 12


def test_libritts(tmp_path):
    fake_libritts(tmp_path)
    out = tmp_path / "libritts.tsv"                                   # inside the corpus: relative paths
    assert prepare_manifest("libritts", tmp_path, out, subset="train-clean-100") == 6
    r = check(out, 6, {"103", "1034"})
    assert all(row["path"].startswith("LibriTTS/train-clean-100/") for row in r)


def test_vctk(tmp_path):
    fake_vctk(tmp_path)
    out = tmp_path / "mic1.tsv"
    assert prepare_manifest("vctk", tmp_path, out) == 4
    assert all(row["path"].endswith("_mic1.flac") for row in check(out, 4, {"p225", "p226"}))
    assert prepare_manifest("vctk", tmp_path, tmp_path / "mic2.tsv", subset="mic2") == 4
    assert all(row["path"].endswith("_mic2.flac") for row in rows(tmp_path / "mic2.tsv"))
    with pytest.raises(ValueError, match="mic1 or mic2"):
        prepare_manifest("vctk", tmp_path, tmp_path / "x.tsv", subset="mic3")


def test_commonvoice(tmp_path):
    fake_commonvoice(tmp_path / "en")
    out = tmp_path / "cv.tsv"
    assert prepare_manifest("commonvoice", tmp_path / "en", out) == 3
    r = check(out, 3, {"a1b2", "c3d4"})
    assert all("/clips/common_voice_en_" in row["path"] for row in r)
    with pytest.raises(FileNotFoundError, match="validated.tsv"):
        prepare_manifest("commonvoice", tmp_path / "en", out, subset="validated")
    with pytest.raises(ValueError, match="by hand"):
        prepare_manifest("commonvoice", tmp_path / "en", out, download=True)


def test_folder(tmp_path):
    fake_folder(tmp_path / "audio")
    out = tmp_path / "audio" / "manifest.tsv"
    with pytest.warns(UserWarning, match="skipped 1 of 5"):
        assert prepare_manifest("folder", tmp_path / "audio", out) == 4
    r = check(out, 4, {"alice", "bob", "-"})
    assert "alice/day1/a.wav" in {row["path"] for row in r}
    assert list_audio(out) == [tmp_path / "audio" / row["path"] for row in r]


def test_wrong_root_is_a_clear_error(tmp_path):
    fake_vctk(tmp_path / "vctk")
    with pytest.raises(FileNotFoundError, match=r"no LibriSpeech/train-clean-100 under .*--download"):
        prepare_manifest("librispeech", tmp_path / "vctk", tmp_path / "x.tsv")
    with pytest.raises(FileNotFoundError, match=r"no LibriTTS/dev-clean under"):
        prepare_manifest("libritts", tmp_path / "vctk", tmp_path / "x.tsv", subset="dev-clean")
    with pytest.raises(FileNotFoundError, match=r"no VCTK-Corpus-0.92/wav48_silence_trimmed under"):
        prepare_manifest("vctk", tmp_path, tmp_path / "x.tsv")
    with pytest.raises(FileNotFoundError, match=r"no train.tsv and clips/"):
        prepare_manifest("commonvoice", tmp_path / "vctk", tmp_path / "x.tsv")
    with pytest.raises(FileNotFoundError, match="no audio files"):
        prepare_manifest("folder", tmp_path / "vctk" / "VCTK-Corpus-0.92" / "txt", tmp_path / "x.tsv")
    with pytest.raises(ValueError, match="unknown LibriSpeech subset 'train-clean-1000'"):
        prepare_manifest("librispeech", tmp_path, tmp_path / "x.tsv", subset="train-clean-1000")
    with pytest.raises(ValueError, match="unknown corpus"):
        prepare_manifest("timit", tmp_path, tmp_path / "x.tsv")
    assert not (tmp_path / "x.tsv").exists()


def test_download_only_when_asked_and_missing(tmp_path, monkeypatch):
    """download=True runs torchaudio's dataset download (faked here) only for what is missing."""
    import torchaudio.datasets
    calls = []

    class FakeLibriSpeech:
        def __init__(self, root, url, download):
            calls.append((root, url, download))
            fake_librispeech(Path(root), url)

    class FailingVCTK:
        def __init__(self, root, mic_id, download):
            raise OSError("network unreachable")

    monkeypatch.setattr(torchaudio.datasets, "LIBRISPEECH", FakeLibriSpeech)
    monkeypatch.setattr(torchaudio.datasets, "VCTK_092", FailingVCTK)
    root = tmp_path / "new"
    with pytest.raises(FileNotFoundError):
        prepare_manifest("librispeech", root, tmp_path / "a.tsv")
    assert prepare_manifest("librispeech", root, tmp_path / "a.tsv", download=True) == 6
    assert prepare_manifest("librispeech", root, tmp_path / "a.tsv", download=True) == 6
    assert calls == [(str(root), "train-clean-100", True)]
    with pytest.raises(RuntimeError, match="could not download VCTK-Corpus-0.92/.*network unreachable"):
        prepare_manifest("vctk", root, tmp_path / "v.tsv", download=True)


def test_prepare_command(tmp_path, capsys):
    fake_vctk(tmp_path)
    assert prepare_main(["vctk", str(tmp_path), str(tmp_path / "m.tsv"), "--subset", "mic1,mic2"]) == 0
    assert "8 files, 0.00 h" in capsys.readouterr().out
    assert prepare_main(["librispeech", str(tmp_path), str(tmp_path / "m.tsv")]) == 1
    assert capsys.readouterr().err.startswith("error: no LibriSpeech/train-clean-100 under")


# -- recipes -----------------------------------------------------------------------------------

def test_recipes_are_complete():
    found = sorted(p.name for p in RECIPES.iterdir() if p.is_dir())
    assert found == sorted(RECIPE_NAMES)
    default = TrainConfig.load(RECIPES / "speech16k" / "config.toml")
    for name in RECIPE_NAMES:
        config = TrainConfig.load(RECIPES / name / "config.toml")
        assert config.run_dir == f"runs/{name}"
        for field in ("sample_rate", "channels", "strides", "dilations", "latent_dim", "levels",
                      "codebook_bits", "activation"):
            assert getattr(config.model, field) == getattr(default.model, field), (name, field)
        assert (config.segment_seconds, config.batch_size) == (default.segment_seconds, default.batch_size)
        run = RECIPES / name / "run.sh"
        assert run.stat().st_mode & stat.S_IXUSR, f"{run} is not executable"
        subprocess.run(["bash", "-n", str(run)], check=True)
        readme = (RECIPES / name / "README.md").read_text()
        assert f"recipes/{name}/run.sh" in readme
    assert "torchrun" in (RECIPES / "README.md").read_text()


def test_the_shipped_models_next_phase_script_parses_and_asks_for_its_run_folder():
    script = RECIPES / "speech16k" / "next_phase.sh"
    assert script.stat().st_mode & stat.S_IXUSR, f"{script} is not executable"
    subprocess.run(["bash", "-n", str(script)], check=True)
    done = subprocess.run([str(script)], capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.startswith("usage:"), done.stderr
    assert "next_phase.sh runs/" in (RECIPES / "speech16k" / "README.md").read_text()


def test_next_phase_reuses_no_shipped_scores_it_cannot_vouch_for(tmp_path):
    """SHIPPED_SCORES saves rescoring the shipped model, but only with scores of that model, on
    as many files, by the same code: anything else stops the script before it trains."""
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "SHIPPED_SCORES": str(earlier)}
    script = str(RECIPES / "speech16k" / "next_phase.sh")
    for stale in (None, "0123456789abcdef files=all code=unknown"):
        if stale:
            (earlier / "eval_shipped.id").write_text(stale + "\n")
        done = subprocess.run([script, str(tmp_path / "run")], env=env, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 2 and "leave SHIPPED_SCORES unset" in done.stderr, done.stderr
        assert not (tmp_path / "run").exists()          # it stopped before training


def test_run_script_end_to_end(tmp_path):
    """librispeech/run.sh on a fake corpus, with a stand-in `codec` that records its arguments."""
    fake_librispeech(tmp_path / "data")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "codec.log"
    (bin_dir / "codec").write_text(f'#!/usr/bin/env bash\necho "$*" >> {log}\n')
    (bin_dir / "codec").chmod(0o755)
    # this interpreter's folder provides `python` (a venv's must be called from its own folder)
    env = {**os.environ, "PATH": f"{bin_dir}:{Path(sys.executable).parent}:{os.environ['PATH']}"}
    run_dir = tmp_path / "run"
    done = subprocess.run([str(RECIPES / "librispeech" / "run.sh"), str(tmp_path / "data"),
                           f"run_dir={run_dir}", "steps=10"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    manifest = run_dir / "train-clean-100.tsv"
    check(manifest, 6, {"19", "26"})
    train, export = log.read_text().splitlines()
    assert train == (f"train recipes/librispeech/config.toml train_data={manifest} run_dir={run_dir} "
                     f"run_dir={run_dir} steps=10")
    assert export == f"export {run_dir}/checkpoint.safetensors {run_dir}/model.safetensors"


def test_folder_recipe_really_trains_exports_and_codes(tmp_path):
    """recipes/folder/run.sh on audio_samples/ with the real `codec`: a few steps of a tiny
    model, the export, then encode and decode with the exported model."""
    bin_dir = Path(sys.executable).parent          # the installed `codec` and `python`
    if not (bin_dir / "codec").exists():
        pytest.skip("the codec command is not installed beside this interpreter")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "OMP_NUM_THREADS": "1"}
    run_dir = tmp_path / "run"
    tiny = ["model.channels=4", "model.dilations=[1]", "model.latent_dim=16", "model.levels=8",
            "model.codebook_bits=6", "steps=2", "batch_size=2", "segment_seconds=0.5", "threads=1",
            "valid_fraction=0", "num_workers=0"]
    done = subprocess.run([str(RECIPES / "folder" / "run.sh"), str(SAMPLES), f"run_dir={run_dir}", *tiny],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    model_file = run_dir / "model.safetensors"
    assert len((run_dir / "manifest.tsv").read_text().splitlines()) == 1 + 3    # header + 3 clips
    clip = SAMPLES / "speechocean_0094.flac"
    for command in (["encode", clip, tmp_path / "x.rvq", "--kbps", "2.4", "--model", model_file],
                    ["decode", tmp_path / "x.rvq", tmp_path / "x.wav", "--model", model_file]):
        result = subprocess.run(["codec", *map(str, command)], env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
    assert sf.info(tmp_path / "x.wav").frames == sf.info(clip).frames
