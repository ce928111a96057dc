"""Train a codec. Reads top to bottom: setup, data, model, loop, checkpoint.

    codec train recipes/speech16k/config.toml [key=value ...] [--resume]
    torchrun --nproc_per_node=N -m codec.train CONFIG ...   # data-parallel

Every ``checkpoint_every`` steps, every ``checkpoint_minutes`` and on
SIGINT/SIGTERM the run writes ``RUN_DIR/checkpoint.safetensors``; ``--resume``
continues from it exactly (model, EMA, optimiser, RNG, step; the data stream is
a function of the step). TensorBoard logs go to ``RUN_DIR/tb``.
"""

from __future__ import annotations

import math
import os
import signal
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from ..metrics import mel_distance, si_sdr
from .checkpoint import load_checkpoint, save_checkpoint
from .config import TrainConfig
from .data import CropDataset, StepBatchSampler, list_audio, load_mono, split_files
from .export import inference_model, training_model
from .losses import ReconstructionLoss


def learning_rate(step: int, c: TrainConfig) -> float:
    """Linear warmup, then cosine decay to ``lr_final_fraction * lr``."""
    if step < c.warmup_steps:
        return c.lr * (step + 1) / c.warmup_steps
    progress = min(1.0, (step - c.warmup_steps) / max(1, c.steps - c.warmup_steps))
    return c.lr * (c.lr_final_fraction + (1 - c.lr_final_fraction) * 0.5 * (1 + math.cos(math.pi * progress)))


def levels_per_item(step: int, rank: int, c: TrainConfig) -> torch.Tensor:
    """Quantizer dropout: a ``quantizer_dropout`` share of the batch uses 1..levels levels.

    Drawn from a generator seeded by (seed, step, rank): reproducible on resume.
    """
    g = torch.Generator().manual_seed((c.seed * 7919 + step) * 4099 + rank)
    levels = torch.full((c.batch_size,), c.model.levels)
    dropped = torch.rand(c.batch_size, generator=g) < c.quantizer_dropout
    levels[dropped] = torch.randint(1, c.model.levels + 1, (int(dropped.sum()),), generator=g)
    return levels


@torch.no_grad()
def validate(model, files: list[Path], c: TrainConfig, max_seconds: float = 4.0) -> dict[str, float]:
    """Mel distance and SI-SDR of the model on held-out files at ``valid_kbps``."""
    scores: dict[str, float] = {}
    clips = [load_mono(p, c.model.sample_rate)[: int(max_seconds * c.model.sample_rate)] for p in files]
    for kbps in c.valid_kbps:
        levels = model.levels_for_kbps(kbps)
        mel, sdr = [], []
        for clip in clips:
            out = model.decode_batch(model.encode_batch(clip[None, None], levels))[0, 0, : len(clip)]
            mel.append(float(mel_distance(clip, out, c.model.sample_rate)))
            sdr.append(float(si_sdr(clip, out)))
        scores[f"mel_distance/{kbps:g}kbps"] = sum(mel) / len(mel)
        scores[f"si_sdr/{kbps:g}kbps"] = sum(sdr) / len(sdr)
    return scores


def main(config: TrainConfig, resume: bool = False) -> None:
    """Train per ``config``; with ``resume``, continue from the run's checkpoint (the
    config given wins, so a resumed run may, for example, be given more steps)."""
    # -- processes: one per torchrun rank, or just this one ---------------------
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world_size > 1:
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu")
    if config.threads:
        torch.set_num_threads(config.threads)
    master = rank == 0
    run_dir = Path(config.run_dir)
    checkpoint_path = run_dir / "checkpoint.safetensors"

    # -- model, optimiser, weight EMA ------------------------------------------
    c = config
    model = training_model(c).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=c.lr, betas=c.betas, weight_decay=c.weight_decay)
    ema = {name: p.detach().clone() for name, p in model.named_parameters()}
    step = 0
    torch.manual_seed(c.seed)
    if resume and checkpoint_path.exists():
        saved = load_checkpoint(checkpoint_path)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        ema = {k: v.to(device) for k, v in saved["ema"].items()}
        torch.set_rng_state(saved["rng"])
        step = saved["step"]
        if master:
            print(f"resumed from {checkpoint_path} at step {step}")
    train_model = model
    if world_size > 1:
        # Codebook statistics are all-reduced inside the quantizer, so DDP must not
        # overwrite them with rank 0's buffers.
        train_model = torch.nn.parallel.DistributedDataParallel(model, broadcast_buffers=False)
    if c.compile:
        train_model = torch.compile(train_model)
    loss_fn = ReconstructionLoss(c).to(device)

    # -- data ------------------------------------------------------------------
    files, valid_files = split_files(list_audio(c.train_data), c.valid_fraction)
    segment = int(c.segment_seconds * c.model.sample_rate)
    dataset = CropDataset(files, c.model.sample_rate, segment, c.seed, c.target_dbfs,
                          c.silence_dbfs, preload=c.preload)
    loader = DataLoader(dataset, batch_sampler=StepBatchSampler(c.batch_size, step, c.steps, rank, world_size),
                        num_workers=c.num_workers, persistent_workers=c.num_workers > 0)

    # -- logging and interruption ------------------------------------------------
    writer = progress = None
    if master:
        from torch.utils.tensorboard import SummaryWriter
        from tqdm import tqdm
        writer = SummaryWriter(str(run_dir / "tb"))
        progress = tqdm(total=c.steps, initial=step, unit="step", dynamic_ncols=True, smoothing=0.05)
        print(f"{len(files)} training files, {len(valid_files)} held out; "
              f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters")
    stop_requested = False

    def request_stop(signum, frame):
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    def checkpoint() -> None:
        if master:
            save_checkpoint(checkpoint_path, step=step, config=c.to_dict(), model=model.state_dict(),
                            ema=ema, optimizer=optimizer)

    # -- the loop -----------------------------------------------------------------
    last_checkpoint = time.monotonic()
    model.train()
    for batch in loader:
        wav = batch.to(device)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, c)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=c.bf16):
            recon, q = train_model(wav, levels_per_item(step, rank, c).to(device))
        recon_loss, parts = loss_fn(recon, wav)
        commit = q.commit_losses.sum()
        loss = recon_loss + c.commit_weight * commit
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), c.grad_clip)
        optimizer.step()
        if c.weight_ema:
            with torch.no_grad():
                for name, p in model.named_parameters():
                    ema[name].lerp_(p.detach(), 1 - c.weight_ema)
        step += 1

        if master:
            progress.update(1)
            if step % c.log_every == 0:
                progress.set_postfix(loss=f"{loss.item():.3f}", mel=f"{parts['mel'].item():.3f}")
                writer.add_scalar("loss/total", loss.item(), step)
                writer.add_scalar("loss/commit", commit.item(), step)
                for name, value in parts.items():
                    writer.add_scalar(f"loss/{name}", value.item(), step)
                writer.add_scalar("train/grad_norm", grad_norm.item(), step)
                writer.add_scalar("train/lr", learning_rate(step, c), step)
                for level, (perplexity, dead) in enumerate(model.quantizer.usage()):
                    writer.add_scalar(f"codebook_perplexity/level{level:02d}", perplexity, step)
                    writer.add_scalar(f"codebook_dead/level{level:02d}", dead, step)
            if valid_files and (step % c.valid_every == 0 or step == c.steps):
                scores = validate(inference_model(c, model.state_dict(), ema), valid_files, c)
                for name, value in scores.items():
                    writer.add_scalar(f"valid/{name}", value, step)
                progress.write(f"step {step}: " + ", ".join(f"{k} {v:.3f}" for k, v in scores.items()))
                model.train()

        stop = torch.tensor(float(stop_requested))
        if world_size > 1:
            dist.all_reduce(stop)       # every rank stops at the same step
        due = (step % c.checkpoint_every == 0 or step == c.steps
               or time.monotonic() - last_checkpoint > 60 * c.checkpoint_minutes)
        if due or stop:
            checkpoint()
            last_checkpoint = time.monotonic()
        if stop:
            if master:
                progress.write(f"interrupted: checkpoint at step {step} saved; resume with --resume")
            break

    if master:
        progress.close()
        writer.close()
    if world_size > 1:
        dist.destroy_process_group()

