"""Refined codes of training files, kept as a teacher for the encoder (codec.train.teacher)."""

from __future__ import annotations

from pathlib import Path

import pytest
import soundfile as sf
import torch

from codec.loudness import gain_db
from codec.model import load_model
from codec.train.data import split_files
from codec.train.teacher import VALID_FRACTION, load_teacher, teacher_files, write_teacher

from .conftest import speech_like


def test_teacher_files_are_training_files_spread_and_shared_out_by_shard(tmp_path):
    manifest = tmp_path / "manifest.tsv"
    names = [f"spk{i % 7}/utt{i}.flac" for i in range(300)]
    manifest.write_text("path\tspeaker\n" + "".join(f"{n}\t{n[:4]}\n" for n in names))
    _, valid = split_files([tmp_path / n for n in names], VALID_FRACTION)
    chosen = teacher_files(manifest, 40)
    assert len(chosen) == 40 and len(set(chosen)) == 40
    assert not set(chosen) & set(valid), "a validation file became a teacher file"
    assert chosen != sorted(chosen), "files are shuffled, so that a run stopped early spans the corpus"
    shards = [teacher_files(manifest, 40, (i, 3)) for i in range(3)]
    assert sorted(sum(shards, [])) == sorted(chosen)


def test_teacher_records_are_the_refined_codes_of_the_audio_at_the_model_level(tmp_path, shared_tiny_model_file):
    model = load_model(shared_tiny_model_file)
    sources = []
    for seed, gain in ((1, 0.05), (2, 0.5)):
        sources.append(tmp_path / f"utt{seed}.wav")
        sf.write(sources[-1], speech_like(0.9, seed=seed)[0] * gain, 16000)
    out = tmp_path / "teacher"
    write_teacher(model, sources, out, kbps=model.kbps_for_levels(3), refine=2)
    records = load_teacher(out, model.fingerprint)
    assert len(records) == 2
    for record in records:
        assert record["codes"].shape[0] == 3
        # coded as `codec encode` codes it: at the model's level, the codes refined
        assert abs(gain_db(record["audio"].numpy(), model.sample_rate, model.config.input_dbfs)) <= 1.0
        refined = model.encode(record["audio"], model.sample_rate, levels=3, refine=2)[0]
        assert torch.equal(record["codes"], refined)
        assert not torch.equal(refined, model.encode(record["audio"], model.sample_rate, levels=3)[0])
        torch.testing.assert_close(record["latent"], model.quantizer.decode(record["codes"][None])[0])

    # a second run skips what is there; nothing half-written is left behind
    written = {p: p.stat().st_mtime_ns for p in out.iterdir()}
    write_teacher(model, sources, out, kbps=model.kbps_for_levels(3), refine=2)
    assert {p: p.stat().st_mtime_ns for p in out.iterdir()} == written
    assert all(p.suffix == ".safetensors" for p in out.iterdir())


def test_a_teacher_of_another_model_is_refused(tmp_path, shared_tiny_model_file):
    model = load_model(shared_tiny_model_file)
    sf.write(tmp_path / "utt.wav", speech_like(0.5)[0], 16000)
    write_teacher(model, [tmp_path / "utt.wav"], tmp_path / "teacher", kbps=1, refine=0)
    with pytest.raises(ValueError, match="not of"):
        load_teacher(tmp_path / "teacher", "0" * 64)
    with pytest.raises(ValueError, match="no refined codes"):
        load_teacher(tmp_path / "empty", model.fingerprint)
