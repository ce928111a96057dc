"""Training throughput and memory of the default recipe on this machine's CPU.

    python benchmarks/train_throughput.py [--config recipes/speech16k/config.toml] [key=value ...]
        [--threads 2] [--warmup 3] [--steps 10] [--batch-sizes 4 8 16 32] [--memory-steps 2] [--quick]

With ``init_from=speech16k decoder_only=true`` it times the step that trains the decoder
alone (no encoder backward pass, no codebook updates, no k-means).

Prints, for the recipe's model, batch size and crop length on random audio:
steps/s and audio-seconds/s of the trainer's own step (``train.train_step``:
forward, losses, backward, clipping, AdamW, weight EMA, codebook updates, and the
discriminator's step with ``adversarial=true``) in float32, under bfloat16 autocast
and with ``torch.compile`` (which may fail or take minutes to compile on a CPU: the
error or the compile time is reported).
Then the peak resident memory of a training process per batch size, each
measured in a fresh subprocess, so allocations of one size do not hide those of
another. The child reads its own high-water mark from /proc/self/status
(VmHWM), not ``ru_maxrss``: Linux carries ``ru_maxrss`` over from the parent
across fork and exec, so a child of this (large) process would report at least
the parent's peak. ``ru_maxrss`` is the fallback where /proc is missing.

A few warm-up steps come first: the first step also fits every codebook by
k-means. ``--quick`` (1 warm-up and 2 timed steps, batch sizes 4 and 8) only
checks that the benchmark runs; its numbers are rough. Other processes on the
same cores (a training run, say) slow every figure down.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from peak_memory import peak_rss_mib  # noqa: E402
from codec.model import load_model  # noqa: E402
from codec.train.config import TrainConfig  # noqa: E402
from codec.train.export import training_model  # noqa: E402
from codec.train.losses import ReconstructionLoss  # noqa: E402
from codec.train.train import build_adversary, build_optimizer, train_mode, train_step  # noqa: E402

DEFAULT_CONFIG = ROOT / "recipes" / "speech16k" / "config.toml"


def setup(c: TrainConfig, compile_model: bool = False):
    """Model, optimiser, EMA and loss as the trainer builds them (single process, CPU)."""
    torch.manual_seed(c.seed)
    model = training_model(c, load_model(c.init_from) if c.init_from else None)
    train_mode(model, c)
    optimizer = build_optimizer(model, c)
    ema = {name: p.detach().clone() for name, p in model.named_parameters()}
    train_model = torch.compile(model) if compile_model else model
    return train_model, model, optimizer, ema, ReconstructionLoss(c), build_adversary(c, torch.device("cpu"))


def random_batch(c: TrainConfig, step: int) -> torch.Tensor:
    """``[batch, 1, segment]`` of noise at about the trainer's loudness (-20 dBFS)."""
    g = torch.Generator().manual_seed(step)
    segment = c.segment_samples
    return 0.1 * torch.randn(c.batch_size, 1, segment, generator=g)


def run_steps(c: TrainConfig, warmup: int, steps: int, compile_model: bool = False) -> dict:
    """Time ``steps`` training steps after ``warmup`` untimed ones."""
    train_model, model, optimizer, ema, loss_fn, adversary = setup(c, compile_model)
    start = time.perf_counter()
    for step in range(warmup):
        train_step(train_model, model, loss_fn, optimizer, ema, random_batch(c, step), step, 0, c, adversary)
    warmup_seconds = time.perf_counter() - start
    start = time.perf_counter()
    for step in range(warmup, warmup + steps):
        loss, *_ = train_step(train_model, model, loss_fn, optimizer, ema, random_batch(c, step), step, 0, c,
                              adversary)
    loss.item()
    seconds = time.perf_counter() - start
    per_second = steps / seconds
    return {"steps_per_s": per_second, "audio_s_per_s": per_second * c.batch_size * c.segment_seconds,
            "seconds_per_step": seconds / steps, "warmup_s": warmup_seconds}


def memory_child(args) -> None:
    """Run in a subprocess: a few float32 steps at ``--batch`` and print the peak RSS as JSON."""
    torch.set_num_threads(args.threads)
    c = TrainConfig.load(args.config, [*args.overrides, f"batch_size={args.batch}"])
    run_steps(c, warmup=1, steps=args.memory_steps)
    print(json.dumps({"batch_size": args.batch, "peak_rss_mib": peak_rss_mib()}))


def peak_memory(args, batch: int) -> float:
    command = [sys.executable, str(Path(__file__).resolve()), "--config", str(args.config),
               "--threads", str(args.threads), "--memory-steps", str(args.memory_steps),
               "--memory-child", str(batch), *args.overrides]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        tail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"exit {result.returncode}: {tail}")
    return json.loads(result.stdout.strip().splitlines()[-1])["peak_rss_mib"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides (adversarial=true)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[4, 8, 16, 32])
    parser.add_argument("--memory-steps", type=int, default=2,
                        help="steps per memory subprocess after its warm-up one; 0 skips the memory table")
    parser.add_argument("--modes", nargs="+", default=["fp32", "bf16", "compile"],
                        choices=["fp32", "bf16", "compile"])
    parser.add_argument("--quick", action="store_true", help="1 warm-up + 2 steps, batch sizes 4 and 8")
    parser.add_argument("--memory-child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.steps < 1 or args.warmup < 0 or args.memory_steps < 0:
        parser.error("--steps must be at least 1, --warmup and --memory-steps at least 0")
    if args.memory_child is not None:
        args.batch = args.memory_child
        memory_child(args)
        return
    if args.quick:
        args.warmup, args.steps, args.memory_steps = 1, 2, 1
        args.batch_sizes = [b for b in args.batch_sizes if b <= 8] or args.batch_sizes[:1]

    torch.set_num_threads(args.threads)
    c = TrainConfig.load(args.config, args.overrides)
    m = c.model
    weights = list(training_model(c).parameters())
    params = sum(p.numel() for p in weights) / 1e6
    trained = sum(p.numel() for p in weights if p.requires_grad) / 1e6
    print(f"config {args.config}: {params:.2f} M parameters ({trained:.2f} M trained), "
          f"{m.levels} levels x {m.codebook_bits} bits, "
          f"batch {c.batch_size} x {c.segment_seconds:g} s")
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads; {args.warmup} warm-up + {args.steps} timed steps"
          + (" (--quick: rough figures)" if args.quick else ""))
    if hasattr(os, "getloadavg"):
        load = os.getloadavg()[0]
        print(f"load average at start: {load:.2f} on {os.cpu_count()} cores"
              + ("  (other work is running: figures will be low)" if load > 0.5 else ""))
    print()
    print(f"{'mode':10} {'steps/s':>9} {'audio s/s':>10} {'s/step':>8} {'warm-up s':>10}")
    for mode in args.modes:
        cfg = TrainConfig.load(args.config, [*args.overrides, *(["bf16=true"] if mode == "bf16" else [])])
        try:
            r = run_steps(cfg, args.warmup, args.steps, compile_model=mode == "compile")
        except Exception as e:   # torch.compile on a CPU can fail for want of a compiler, etc.
            message = str(e).strip().splitlines()[0] if str(e).strip() else ""
            print(f"{mode:10} failed: {type(e).__name__}: {message[:200]}")
            continue
        print(f"{mode:10} {r['steps_per_s']:9.3f} {r['audio_s_per_s']:10.2f} "
              f"{r['seconds_per_step']:8.2f} {r['warmup_s']:10.1f}")

    if args.memory_steps < 1:
        return
    print()
    print(f"peak resident memory of a float32 training process ({args.memory_steps + 1} steps each):")
    print(f"{'batch':>6} {'peak MiB':>9}")
    for batch in sorted(args.batch_sizes):
        try:
            print(f"{batch:6d} {peak_memory(args, batch):9.0f}", flush=True)
        except RuntimeError as e:
            print(f"{batch:6d} failed: {e}", flush=True)


if __name__ == "__main__":
    main()
