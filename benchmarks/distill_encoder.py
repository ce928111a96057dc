"""Can the encoder learn to find refined codes itself? Refinement as the teacher.

    python benchmarks/distill_encoder.py TEACHER_DIR OUT.safetensors [--model FILE] [--steps 1500]
                                         [--lr 1e-4] [--batch 16] [--held-out 0.1] [--threads 2]

TEACHER_DIR holds refined codes of training files and their quantized latents
(``python -m codec.train.teacher``). The encoder of ``--model`` (the shipped model by
default) is trained alone, the decoder and codebooks untouched, to output those latents:
mean squared error, as a fraction of the target latents' mean square. No decoder runs, so a
step costs a fraction of a training step's. Crops are ``CROP_FRAMES`` frames at frame
boundaries, behind ``CONTEXT_FRAMES`` frames of the file before them (zeros at its start,
as the encoder of a whole file sees), so the latents scored are those of whole-file
encoding.

A share of the teacher's files (``--held-out``) is never trained on. Printed every
``--every`` steps: the relative error on them, and the share of their frames whose first
level's code is the teacher's. The encoder with the lowest held-out error is written to
OUT (a model file, with its own fingerprint), to be scored with ``codec eval --model OUT``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import codec  # noqa: E402
from codec.model.files import save_model  # noqa: E402
from codec.train.teacher import load_teacher  # noqa: E402

CROP_FRAMES = 50       # 1 s of latents scored per crop
CONTEXT_FRAMES = 12    # encoded but not scored: covers the encoder's receptive field


def crop(record: dict[str, torch.Tensor], start: int, hop: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Audio ``[1, (CONTEXT_FRAMES + CROP_FRAMES) * hop]`` ending at frame ``start + CROP_FRAMES``
    (zero-padded before the file's start and after its end) and the target ``[dim, CROP_FRAMES]``."""
    first = (start - CONTEXT_FRAMES) * hop
    audio = record["audio"][max(0, first):(start + CROP_FRAMES) * hop]
    audio = F.pad(audio, (max(0, -first), (CONTEXT_FRAMES + CROP_FRAMES) * hop - max(0, -first) - len(audio)))
    target = record["latent"][:, start:start + CROP_FRAMES]
    return audio[None], F.pad(target, (0, CROP_FRAMES - target.shape[-1]))


def batch(records: list[dict[str, torch.Tensor]], frames: torch.Tensor, size: int, hop: int,
          g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``size`` crops drawn in proportion to the files' lengths in frames, ``frames``
    (float64 ``[len(records)]``): audio ``[B, 1, N]``, targets ``[B, dim, CROP_FRAMES]`` and a
    mask ``[B, 1, CROP_FRAMES]`` of the frames inside the file."""
    audio, targets, masks = [], [], []
    for index in torch.multinomial(frames, size, replacement=True, generator=g).tolist():
        n = int(frames[index])
        start = int(torch.randint(0, max(1, n - CROP_FRAMES + 1), (1,), generator=g))
        a, t = crop(records[index], start, hop)
        audio.append(a)
        targets.append(t)
        masks.append((torch.arange(CROP_FRAMES) < n - start)[None].float())
    return torch.stack(audio), torch.stack(targets), torch.stack(masks)


def relative_error(model: codec.CodecModel, audio: torch.Tensor, target: torch.Tensor,
                   mask: torch.Tensor) -> torch.Tensor:
    """Masked mean square of the encoder's latents minus ``target``, over the target's."""
    latent = model.encoder(audio)[..., CONTEXT_FRAMES:]
    return ((latent - target).pow(2) * mask).sum() / (target.pow(2) * mask).sum()


@torch.no_grad()
def held_out_scores(model: codec.CodecModel, records: list[dict[str, torch.Tensor]]) -> tuple[float, float]:
    """Over whole held-out files: relative latent error, and the share of frames whose
    first-level code equals the teacher's."""
    error = energy = same = frames = 0.0
    for r in records:
        latent = model.encoder(model.pad_to_hop(r["audio"][None, None]))[0]
        n = min(latent.shape[-1], r["latent"].shape[-1])
        latent, target = latent[:, :n], r["latent"][:, :n]
        error += float((latent - target).pow(2).sum())
        energy += float(target.pow(2).sum())
        codes = model.quantizer.encode(latent[None], 1)[0, 0]
        same += float((codes == r["codes"][0, :n]).sum())
        frames += n
    return error / energy, same / frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("teacher_dir")
    parser.add_argument("out")
    parser.add_argument("--model", default=None)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--held-out", type=float, default=0.1)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    model = codec.load_model(args.model)
    records = load_teacher(args.teacher_dir, model.fingerprint)
    # the teacher's files are named by utterance and listed sorted, so every n-th is held out
    every = max(2, round(1 / args.held_out))
    held_out = records[::every]
    train = [r for i, r in enumerate(records) if i % every]
    frames = torch.tensor([r["latent"].shape[-1] for r in train], dtype=torch.float64)
    seconds = sum(r["audio"].numel() for r in train) / model.sample_rate
    print(f"{len(train)} teacher files ({seconds / 60:.1f} min) to train on, {len(held_out)} held out")

    model.requires_grad_(False)
    model.encoder.requires_grad_(True)
    optimizer = torch.optim.AdamW(model.encoder.parameters(), lr=args.lr, weight_decay=0.0)
    g = torch.Generator().manual_seed(0)
    best = held_out_scores(model, held_out)
    print(f"step 0: held-out relative error {best[0]:.4f}, first-level codes the teacher's {best[1]:.1%}")
    save_model(model, args.out)
    started, running = time.time(), 0.0
    for step in range(1, args.steps + 1):
        for group in optimizer.param_groups:     # cosine from lr to 0
            group["lr"] = args.lr * 0.5 * (1 + math.cos(math.pi * step / args.steps))
        model.encoder.train()
        loss = relative_error(model, *batch(train, frames, args.batch, model.hop, g))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        running += loss.item()
        if step % args.every == 0 or step == args.steps:
            model.encoder.eval()
            scores = held_out_scores(model, held_out)
            kept = scores[0] < best[0]
            if kept:
                best = scores
                save_model(model, args.out)
            print(f"step {step}: training error {running / args.every:.4f}, held-out relative error "
                  f"{scores[0]:.4f}, first-level codes the teacher's {scores[1]:.1%}"
                  f"{', written' if kept else ''} ({(time.time() - started) / step:.2f} s/step)", flush=True)
            running = 0.0


if __name__ == "__main__":
    main()
