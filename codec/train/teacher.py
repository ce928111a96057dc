"""Refined codes of training files: the teacher for an encoder that learns to find them itself.

    python -m codec.train.teacher MANIFEST OUT_DIR [--model FILE] [--kbps 6] [--refine 30]
                                  [--limit N] [--shard I/N] [--threads 1]

Refinement (codec.model.refine) searches, utterance by utterance, for the codes whose
decoding is nearest the input, and at 6 kbps they decode about 0.45 PESQ-WB better than
the encoder's own codes. The search costs some ten seconds a second of audio, so it is run
once, here, and its result kept: for each file, the audio at the model's level (as
`codec encode` codes it), the refined codes, and their quantized latents
``[latent_dim, frames]``, the target the encoder is trained toward
(benchmarks/distill_encoder.py; docs/experiments.md, "Refinement as the encoder's teacher").

Files are taken every n-th from the training split (never the validation files that
``split_files`` holds out), so a few hundred span the corpus's speakers, and shuffled; ``--shard I/N``
takes every N-th of those from the I-th, so that N processes share the work. A file
already written is skipped, so an interrupted run resumes where it stopped. Each file is
written to a temporary name and renamed.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm import tqdm

from ..datasets import list_audio
from ..loudness import amplitude, gain_db
from ..model import CodecModel
from ..model.files import load_model
from .config import TrainConfig
from .data import load_mono, split_files

VALID_FRACTION = TrainConfig.valid_fraction      # the trainer's default split: its files are never taught


def teacher_files(manifest: str | Path, limit: int, shard: tuple[int, int] = (0, 1)) -> list[Path]:
    """``limit`` training files spread over ``manifest``, and of those this shard's, in an
    order shuffled once (seed 0): a run stopped early has still sampled every part of the corpus."""
    train, _ = split_files(list_audio(manifest), VALID_FRACTION)
    chosen = train[::max(1, len(train) // limit)][:limit]
    chosen = [chosen[i] for i in torch.randperm(len(chosen), generator=torch.Generator().manual_seed(0))]
    index, count = shard
    return chosen[index::count]


def refine_file(model: CodecModel, path: Path, kbps: float, refine: int) -> dict[str, torch.Tensor]:
    """The teacher's record of one file: ``audio [N]`` at the model's rate and level,
    ``codes [levels, frames]`` refined, and ``latent [latent_dim, frames]``, their quantized latents."""
    wav = load_mono(path, model.sample_rate)
    audio = wav * amplitude(gain_db(wav.numpy(), model.sample_rate, model.config.input_dbfs))
    codes = model.encode(audio, model.sample_rate, kbps=kbps, refine=refine)[0]
    with torch.no_grad():
        latent = model.quantizer.decode(codes[None])[0]
    return {"audio": audio.contiguous(), "codes": codes.contiguous(), "latent": latent.contiguous()}


def write_teacher(model: CodecModel, files: list[Path], out_dir: str | Path, kbps: float, refine: int) -> None:
    """``refine_file`` of each of ``files``, saved as ``OUT_DIR/STEM.safetensors`` with the model's
    fingerprint, the bitrate and the steps in its metadata; files already there are skipped."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metadata = {"fingerprint": model.fingerprint, "kbps": f"{kbps:g}", "refine": str(refine)}
    for path in tqdm(files, unit="file"):
        target = out / f"{path.stem}.safetensors"
        if target.exists():
            continue
        record = refine_file(model, path, kbps, refine)
        partial = target.with_suffix(".partial")
        save_file(record, str(partial), metadata=metadata | {"source": str(path)})
        os.replace(partial, target)


def load_teacher(directory: str | Path, fingerprint: str) -> list[dict[str, torch.Tensor]]:
    """Every record in ``directory`` made with the model of ``fingerprint``; ValueError if
    there are none, or if any was made by another model."""
    records = []
    for path in sorted(Path(directory).glob("*.safetensors")):
        with safe_open(str(path), "pt") as f:       # one read: the metadata and the tensors
            made_by = (f.metadata() or {}).get("fingerprint")
            if made_by != fingerprint:
                raise ValueError(f"{path} holds refined codes of model {made_by}, not of {fingerprint}")
            records.append({name: f.get_tensor(name) for name in f.keys()})
    if not records:
        raise ValueError(f"no refined codes (*.safetensors) in {directory}")
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifest")
    parser.add_argument("out_dir")
    parser.add_argument("--model", default=None, help="model file (default: the shipped model)")
    parser.add_argument("--kbps", type=float, default=6.0)
    parser.add_argument("--refine", type=int, default=30)
    parser.add_argument("--limit", type=int, default=400, help="files, spread over the training split")
    parser.add_argument("--shard", default="0/1", help="I/N: every N-th of the files, from the I-th")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model = load_model(args.model)
    index, count = (int(v) for v in args.shard.split("/"))
    write_teacher(model, teacher_files(args.manifest, args.limit, (index, count)), args.out_dir,
                  args.kbps, args.refine)


if __name__ == "__main__":
    main()
