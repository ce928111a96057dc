"""Train a codec. Reads top to bottom: setup, data, model, loop, checkpoint.

    codec train recipes/speech16k/config.toml [key=value ...] [--resume]
    torchrun --nproc_per_node=N -m codec.train CONFIG ...   # data-parallel

Every ``checkpoint_every`` steps, every ``checkpoint_minutes`` and on
SIGINT/SIGTERM the run writes ``RUN_DIR/checkpoint.safetensors`` (an interrupted
run exits with status 0 once it is saved); ``--resume`` continues from it exactly
(model, EMA, optimiser, RNG, step; the data stream is a function of the step), so
a run stopped and resumed ends bit-identical to one that ran straight through on
the same machine and thread count. Under torchrun, signal the torchrun process:
it passes SIGTERM on to every rank, the ranks agree to stop at the same step and
rank 0 saves, but torchrun itself then exits non-zero. TensorBoard logs go to
``RUN_DIR/tb``.

With several ranks, every checkpoint (and the end of the run) first checks that
all ranks hold the same weights, EMA and codebooks (``distributed.py``), and
stops with an error naming the first tensor that differs. Debugging aid: with
``CODEC_RANK_STATE_DIR=DIR`` in the environment every rank also writes its final
model state and EMA to ``DIR/rank{R}.safetensors``.
"""

from __future__ import annotations

import math
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from ..audio import resample
from ..datasets import list_audio
from ..errors import CodecError
from ..evaluation.scores import SCORE_RATE, metric_packages, pesq_wb, stoi
from ..loudness import amplitude, gain_db
from ..metrics import mel_distance, si_sdr
from ..model import CodecConfig, CodecModel, load_model, read_config
from ..model.refine import frozen
from ..schedule import half_cosine
from .adversarial import Discriminator, discriminator_loss, generator_losses
from .checkpoint import load_checkpoint, save_checkpoint
from .config import TrainConfig
from .data import CropDataset, StepBatchSampler, load_mono, split_files
from .distributed import check_ranks_agree, save_rank_state
from .export import inference_model, training_model
from .growth import new_units
from .losses import ReconstructionLoss


def learning_rate(step: int, c: TrainConfig) -> float:
    """Linear warmup, then cosine decay to ``lr_final_fraction * lr``."""
    if step < c.warmup_steps:
        return c.lr * (step + 1) / c.warmup_steps
    progress = min(1.0, (step - c.warmup_steps) / max(1, c.steps - c.warmup_steps))
    return c.lr * half_cosine(progress, c.lr_final_fraction)


def ema_decay(step: int, c: TrainConfig) -> float:
    """The weight EMA's decay at ``step``: ``weight_ema``, capped by (1 + step) / (10 + step).

    The EMA starts from the starting weights. At a fixed 0.999 it would still hold
    0.999**500 = 61% of them after 500 steps, so a short run or fine-tune would export
    and validate mostly the model it started from. The cap (0.1 at step 0, 0.98 at
    step 500, 0.999 from step 8991) lets the EMA follow the weights early and average
    them once training settles.
    """
    return min(c.weight_ema, (1 + step) / (10 + step))


def levels_per_item(step: int, rank: int, c: TrainConfig) -> torch.Tensor:
    """Quantizer dropout: a ``quantizer_dropout`` share of the batch uses 1..levels levels,
    ``n`` of them with probability proportional to ``n ** -quantizer_dropout_skew``.

    Drawn from a generator seeded by (seed, step, rank): reproducible on resume.
    """
    g = torch.Generator().manual_seed((c.seed * 7919 + step) * 4099 + rank)
    levels = torch.full((c.batch_size,), c.model.levels)
    dropped = torch.rand(c.batch_size, generator=g) < c.quantizer_dropout
    if dropped.any():
        weights = torch.arange(1, c.model.levels + 1, dtype=torch.float64) ** -c.quantizer_dropout_skew
        levels[dropped] = 1 + torch.multinomial(weights, int(dropped.sum()), replacement=True, generator=g)
    return levels


def ignore_interrupts(worker_id: int) -> None:
    """DataLoader workers leave SIGINT/SIGTERM to the main process, which checkpoints
    and stops: a Ctrl-C reaches the whole process group, and a worker killed by it
    would make the main process fail instead of saving."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


@dataclass
class Adversary:
    """The discriminator of adversarial training, its DDP wrapper (itself in one process), and its optimiser."""

    discriminator: Discriminator
    wrapped: torch.nn.Module
    optimizer: torch.optim.Optimizer


def set_learning_rate(optimizer: torch.optim.Optimizer, step: int, c: TrainConfig) -> None:
    for group in optimizer.param_groups:
        group["lr"] = learning_rate(step, c) * group.get("lr_scale", 1.0)


def build_adversary(c: TrainConfig, device: torch.device) -> Adversary | None:
    """The discriminator and its optimiser when ``c.adversarial``, else None."""
    if not c.adversarial:
        return None
    discriminator = Discriminator(c.discriminator_windows, c.discriminator_channels,
                                  c.discriminator_magnitude_exponent, c.discriminator_periods).to(device)
    optimizer = torch.optim.AdamW(discriminator.parameters(), lr=c.lr, betas=c.betas, weight_decay=c.weight_decay)
    return Adversary(discriminator, discriminator, optimizer)


# The fields that shape the discriminator. Its state-dict keys alone do not tell two apart:
# judges of other windows or periods, or of other widths, have the same names.
JUDGE_FIELDS = ("discriminator_windows", "discriminator_periods", "discriminator_channels",
                "discriminator_magnitude_exponent")


def build_optimizer(model: CodecModel, c: TrainConfig, grown_from: CodecConfig | None = None
                    ) -> torch.optim.Optimizer:
    """AdamW over the weights that learn: all but those ``training_model`` froze. The units a
    decoder grew beyond ``grown_from``'s (the init_from model's config; growth.py) are a second
    group, at ``grown_lr_scale`` times the rate."""
    added = new_units(model, grown_from) if grown_from is not None else []
    grown = {id(p) for unit in added for p in unit.parameters()}
    learning = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in learning if id(p) not in grown], "lr_scale": 1.0}]
    if grown:
        groups.append({"params": [p for p in learning if id(p) in grown], "lr_scale": c.grown_lr_scale})
    return torch.optim.AdamW(groups, lr=c.lr, betas=c.betas, weight_decay=c.weight_decay)


def train_mode(model: CodecModel, c: TrainConfig) -> None:
    """Training mode, except for codebooks that must keep their vectors (``decoder_only``,
    ``encoder_only``): in training mode the quantizer moves them toward the encoder's outputs."""
    model.train()
    if c.frozen_part:
        model.quantizer.eval()


def full_state(model: torch.nn.Module, ema: dict[str, torch.Tensor],
               adversary: Adversary | None = None) -> dict[str, torch.Tensor]:
    """Everything the ranks must agree on: parameters, buffers (codebooks), the EMA and
    the discriminator."""
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    state.update({f"ema.{k}": v for k, v in ema.items()})
    if adversary is not None:
        state.update({f"disc.{k}": v for k, v in adversary.discriminator.state_dict().items()})
    return state


@torch.no_grad()
def validate(model, files: list[Path], c: TrainConfig, max_seconds: float = 4.0
             ) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    """Mel distance and SI-SDR of the model on held-out files at ``valid_kbps`` (each
    clip coded at the model's level, as `codec.compress` does, but without refining the
    codes, which would measure the search as much as the weights), and
    PESQ-WB and STOI where their packages are installed (``codec[eval]``): the measures
    of the project's bar, which mel distance does not always follow.

    Also returns audio examples to listen to: the first held-out clip as it is
    (``reference``) and as coded at each bitrate, each ``[samples]``.
    """
    try:
        metric_packages()
        perceptual = True
    except CodecError:
        perceptual = False
    scores: dict[str, float] = {}
    clips = [load_mono(p, c.model.sample_rate)[: int(max_seconds * c.model.sample_rate)] for p in files]
    # PESQ-WB and STOI are defined at 16 kHz: the references are resampled once, not per bitrate
    references = [resample(clip, c.model.sample_rate, SCORE_RATE).numpy() for clip in clips] if perceptual else []
    # each clip is coded at the model's level and scaled back, as codec.compress does
    scales = [amplitude(gain_db(clip[None], c.model.sample_rate, c.model.input_dbfs)) for clip in clips]
    examples = {"reference": clips[0]}
    for kbps in c.valid_kbps:
        levels = model.levels_for_kbps(kbps)
        values: dict[str, list[float]] = {"mel_distance": [], "si_sdr": [], "pesq": [], "stoi": []}
        for i, (clip, scale) in enumerate(zip(clips, scales)):
            out = model.decode_batch(model.encode_batch(clip[None, None] * scale, levels))[0, 0, : len(clip)] / scale
            values["mel_distance"].append(float(mel_distance(clip, out, c.model.sample_rate)))
            values["si_sdr"].append(float(si_sdr(clip, out)))
            if perceptual:
                decoded = resample(out, c.model.sample_rate, SCORE_RATE).numpy()
                values["pesq"].append(pesq_wb(references[i], decoded))
                values["stoi"].append(stoi(references[i], decoded))
            examples.setdefault(f"{kbps:g}kbps", out)
        for name, found in values.items():
            found = [v for v in found if not math.isnan(v)]    # PESQ and STOI refuse some clips
            if found:
                scores[f"{name}/{kbps:g}kbps"] = sum(found) / len(found)
    return scores, examples


def train_step(train_model, model, loss_fn, optimizer, ema: dict[str, torch.Tensor],
               wav: torch.Tensor, step: int, rank: int, c: TrainConfig, adversary: Adversary | None = None):
    """One optimisation step on ``wav [B, 1, N]``; returns (loss, commit loss, loss parts,
    gradient norm). ``train_model`` is ``model`` or its DDP/compiled wrapper. With an
    ``adversary`` the discriminator takes its step first, on the same batch."""
    set_learning_rate(optimizer, step, c)
    with torch.autocast(wav.device.type, dtype=torch.bfloat16, enabled=c.bf16):
        recon, q = train_model(wav, levels_per_item(step, rank, c).to(wav.device))
    recon_loss, parts = loss_fn(recon, wav)
    commit = q.commit_losses.sum()
    loss = recon_loss + c.commit_weight * commit
    if adversary is not None:
        parts["discriminator"] = discriminator_step(adversary, wav, recon.detach(), step, c)
        # The decoder's losses need the judges' gradient with respect to their input only:
        # frozen, they compute no weight gradients for the next step to discard, and unwrapped,
        # DDP all-reduces none.
        with frozen(adversary.discriminator):
            with torch.no_grad():
                real = adversary.discriminator(wav)
            parts["adversarial"], parts["feature_matching"] = generator_losses(
                real, adversary.discriminator(recon))
        loss = loss + c.adversarial_weight * parts["adversarial"] + c.feature_matching_weight * parts["feature_matching"]
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), c.grad_clip)
    optimizer.step()
    if c.weight_ema:
        with torch.no_grad():
            for name, p in model.named_parameters():
                if p.requires_grad:            # a frozen weight's EMA is the weight
                    ema[name].lerp_(p.detach(), 1 - ema_decay(step, c))
    return loss, commit, parts, grad_norm


def discriminator_step(adversary: Adversary, wav: torch.Tensor, decoded: torch.Tensor, step: int,
                       c: TrainConfig) -> torch.Tensor:
    """One discriminator update on real ``wav`` and ``decoded`` audio ``[B, 1, N]``; returns its loss.

    Real and decoded audio go through in one batch: one forward, one backward.
    """
    set_learning_rate(adversary.optimizer, step, c)
    judged = adversary.wrapped(torch.cat([wav, decoded]))
    half = wav.shape[0]
    real = [(logits[:half], []) for logits, _ in judged]
    fake = [(logits[half:], []) for logits, _ in judged]
    loss = discriminator_loss(real, fake)
    adversary.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(adversary.discriminator.parameters(), c.grad_clip)
    adversary.optimizer.step()
    return loss.detach()


def main(config: TrainConfig, resume: bool = False) -> None:
    """Train per ``config``; with ``resume``, continue from the run's checkpoint (the
    config given wins, so a resumed run may, for example, be given more steps)."""
    previous_handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        _train(config, resume)
    finally:
        for signum, handler in previous_handlers.items():
            signal.signal(signum, handler)
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()


def _train(config: TrainConfig, resume: bool) -> None:
    # -- processes: one per torchrun rank, or just this one ---------------------
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)   # NCCL's own buffers go to this rank's GPU, not all to GPU 0
    if world_size > 1:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if config.threads:
        torch.set_num_threads(config.threads)
    master = rank == 0
    run_dir = Path(config.run_dir)
    checkpoint_path = run_dir / "checkpoint.safetensors"

    # -- model, optimiser, weight EMA ------------------------------------------
    c = config
    # Seeded before the model is built: torch seeds itself at random in every new
    # process, so without this the initial weights would differ from run to run.
    # Every rank draws the same numbers (and DDP copies rank 0's weights and
    # buffers to the others when it wraps the model).
    torch.manual_seed(c.seed)
    resuming = resume and checkpoint_path.exists()
    start = load_model(c.init_from) if c.init_from and not resuming else None
    model = training_model(c, start).to(device)
    # the init_from model's layout tells which decoder units a growth added, on a resume too
    grown_from = start.config if start is not None else read_config(c.init_from) if c.init_from else None
    optimizer = build_optimizer(model, c, grown_from)
    ema = {name: p.detach().clone() for name, p in model.named_parameters()}
    adversary = build_adversary(c, device)    # drawn after the model, before a resume restores the RNG
    step = 0
    if resuming:
        saved = load_checkpoint(checkpoint_path)
        saved_c = TrainConfig.from_dict(saved["config"])     # fields it predates take their defaults
        for flag in ("decoder_only", "encoder_only"):      # its optimizer holds other weights
            if getattr(saved_c, flag) != getattr(c, flag):
                raise CodecError(f"{checkpoint_path} was trained with {flag}={str(not getattr(c, flag)).lower()}: "
                                 f"to switch, export it and start a new run with init_from=THE_EXPORTED_FILE")
        model.load_state_dict(saved["model"])
        scales = [group["lr_scale"] for group in optimizer.param_groups]
        optimizer.load_state_dict(saved["optimizer"])
        for group, scale in zip(optimizer.param_groups, scales):    # the config given wins here too
            group["lr_scale"] = scale
        ema = {k: v.to(device) for k, v in saved["ema"].items()}
        torch.set_rng_state(saved["rng"])
        if device.type == "cuda" and saved.get("rng_cuda") is not None:
            torch.cuda.set_rng_state(saved["rng_cuda"], device)
        if adversary is not None:
            if (saved["discriminator"] is not None
                    and all(getattr(saved_c, name) == getattr(c, name) for name in JUDGE_FIELDS)
                    and saved["discriminator"].keys() == adversary.discriminator.state_dict().keys()):
                adversary.discriminator.load_state_dict(saved["discriminator"])
                adversary.optimizer.load_state_dict(saved["discriminator_optimizer"])
            elif master:
                print("the checkpoint has no discriminator of this config's shape: "
                      "adversarial training starts with a fresh one")
        for opt in (optimizer, adversary.optimizer) if adversary else (optimizer,):
            for group in opt.param_groups:     # the config given wins over the saved one
                group.update(betas=tuple(c.betas), weight_decay=c.weight_decay)
        step = saved["step"]
        if master:
            print(f"resumed from {checkpoint_path} at step {step}")
    elif resume and master:
        print(f"no checkpoint at {checkpoint_path}: starting from step 0")
    train_model = model
    if world_size > 1:
        # Codebook statistics are all-reduced inside the quantizer, so DDP must not
        # overwrite them with rank 0's buffers.
        train_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, broadcast_buffers=False)
        if adversary is not None:
            adversary.wrapped = torch.nn.parallel.DistributedDataParallel(
                adversary.discriminator, device_ids=[device.index] if device.type == "cuda" else None)
    if c.compile:
        train_model = torch.compile(train_model)
    loss_fn = ReconstructionLoss(c).to(device)

    # -- data ------------------------------------------------------------------
    files, valid_files = split_files(list_audio(c.train_data), c.valid_fraction)
    segment = c.segment_samples
    dataset = CropDataset(files, c.model.sample_rate, segment, c.seed, c.model.input_dbfs,
                          c.silence_dbfs, preload=c.preload)
    # The loader gets a generator of its own: by default it draws a base seed for
    # its workers from the global RNG each time it is iterated, which would shift
    # every random codebook choice after a resume. (Crops depend only on (seed, index).)
    loader = DataLoader(dataset, batch_sampler=StepBatchSampler(c.batch_size, step, c.steps, rank, world_size),
                        num_workers=c.num_workers, persistent_workers=c.num_workers > 0,
                        generator=torch.Generator().manual_seed(c.seed),
                        worker_init_fn=ignore_interrupts if c.num_workers > 0 else None)

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

    checked_step = -1

    def check_ranks() -> None:
        """Collective (every rank calls it at the same step): all ranks hold the same state."""
        nonlocal checked_step
        if world_size > 1 and checked_step != step:
            check_ranks_agree(full_state(model, ema, adversary), step)
            checked_step = step

    def checkpoint() -> None:
        check_ranks()
        if master:
            save_checkpoint(checkpoint_path, step=step, config=c.to_dict(), model=model.state_dict(),
                            ema=ema, optimizer=optimizer,
                            discriminator=adversary.discriminator.state_dict() if adversary else None,
                            discriminator_optimizer=adversary.optimizer if adversary else None)

    # -- the loop -----------------------------------------------------------------
    last_checkpoint = time.monotonic()
    train_mode(model, c)
    for batch in loader:
        loss, commit, parts, grad_norm = train_step(train_model, model, loss_fn, optimizer, ema,
                                                    batch.to(device), step, rank, c, adversary)
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
                writer.add_scalar("train/lr", learning_rate(step - 1, c), step)   # the rate this step used
                for level, (perplexity, dead) in enumerate(() if c.frozen_part else model.quantizer.usage()):
                    writer.add_scalar(f"codebook_perplexity/level{level:02d}", perplexity, step)
                    writer.add_scalar(f"codebook_dead/level{level:02d}", dead, step)
            if valid_files and (step % c.valid_every == 0 or step == c.steps):
                # Building the validation model draws random initial weights: keep those
                # draws off the training RNG, which must stay the same on every rank and
                # across a resume.
                with torch.random.fork_rng(devices=[]):
                    scores, examples = validate(inference_model(c, model.state_dict(), ema), valid_files, c)
                for name, value in scores.items():
                    writer.add_scalar(f"valid/{name}", value, step)
                for name, audio in examples.items():
                    writer.add_audio(f"audio/{name}", audio.clamp(-1, 1)[None], step, c.model.sample_rate)
                progress.write(f"step {step}: " + ", ".join(f"{k} {v:.3f}" for k, v in scores.items()))
                train_mode(model, c)

        # Whether to stop and whether the checkpoint clock has run out are agreed by
        # all ranks (max over ranks), so that all take the same branch: checkpoint()
        # holds a collective, and ranks that disagreed would wait on each other forever.
        flags = torch.tensor([float(stop_requested),
                              float(time.monotonic() - last_checkpoint > 60 * c.checkpoint_minutes)],
                             device=device)
        if world_size > 1:
            dist.all_reduce(flags, op=dist.ReduceOp.MAX)
        stop, overdue = bool(flags[0]), bool(flags[1])
        if stop or overdue or step % c.checkpoint_every == 0 or step == c.steps:
            checkpoint()
            last_checkpoint = time.monotonic()
        if stop:
            if master:
                progress.write(f"interrupted: checkpoint at step {step} saved; resume with --resume")
            break

    check_ranks()                       # at the end, unless the last step was just checked
    save_rank_state(full_state(model, ema, adversary), rank)
    if master:
        progress.close()
        writer.close()

