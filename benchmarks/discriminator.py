"""Can the discriminator tell a model's decoded audio from real speech, and how fast?

    python benchmarks/discriminator.py [--model NAME|FILE] [--kbps 6] [--channels 16]
        [--exponent 1] [--windows 2048,1024,512,256,128] [--periods 2,3,5,7,11] [--lr 1e-4] [--betas 0.9 0.99] [--clip 1.0] [--steps 200] [--threads 2]

Adversarial fine-tuning only helps once the discriminator can separate the two. This
trains a fresh ``Discriminator`` alone, with the codec frozen: one-second
training-corpus crops (the held-out files excluded) and their decoded copies at
``--kbps`` are computed once, and the discriminator takes ``--steps`` steps of batch 16
pairs with the hinge loss of training. Every 25 steps it prints the mean hinge loss
(2.0 is chance, 0 is perfect) and, on 64 pairs it never trains on, the share of pairs
where the real crop gets the higher mean logit (0.5 is chance) and the mean gap between
the two logits (the hinge loss asks for 2).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import codec  # noqa: E402
from codec.datasets import list_audio  # noqa: E402
from codec.train.adversarial import Discriminator, discriminator_loss  # noqa: E402
from codec.train.config import TrainConfig  # noqa: E402
from codec.train.data import CropDataset, split_files  # noqa: E402

BATCH = 16
HELD_OUT_PAIRS = 64


def mean_logit(discriminator: Discriminator, wav: torch.Tensor) -> torch.Tensor:
    """``[B, 1, N] -> [B]``: each item's logits averaged over positions and judges."""
    return torch.stack([logits.mean(dim=(1, 2, 3)) for logits, _ in discriminator(wav)]).mean(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--train-data", default=TrainConfig.train_data)
    parser.add_argument("--kbps", type=float, default=6.0)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--betas", type=float, nargs=2, default=(0.9, 0.99))
    parser.add_argument("--clip", type=float, default=1.0, help="gradient-norm clip; 0 = none")
    parser.add_argument("--exponent", type=float, default=TrainConfig.discriminator_magnitude_exponent,
                        help="the STFT magnitude compression (1 = raw complex spectrum)")
    parser.add_argument("--windows", default=",".join(map(str, TrainConfig.discriminator_windows)),
                        help="STFT judges' window lengths, comma-separated; empty = none")
    parser.add_argument("--periods", default="", help="period judges' periods, comma-separated; empty = none")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--pairs", type=int, default=512, help="training pairs, decoded once")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    model = codec.load_model(args.model).float()
    rate = model.config.sample_rate
    train_files, _ = split_files(list_audio(args.train_data), TrainConfig.valid_fraction)
    crops = CropDataset(train_files, rate, rate, seed=12345)
    real = torch.stack([crops[k] for k in range(args.pairs + HELD_OUT_PAIRS)])
    levels = model.levels_for_kbps(args.kbps)
    with torch.no_grad():
        decoded = torch.cat([model.decode_batch(model.encode_batch(real[i:i + 32], levels))[..., :rate]
                             for i in range(0, len(real), 32)])
    test_real, test_decoded = real[:HELD_OUT_PAIRS], decoded[:HELD_OUT_PAIRS]
    real, decoded = real[HELD_OUT_PAIRS:], decoded[HELD_OUT_PAIRS:]

    windows = tuple(int(w) for w in args.windows.split(",") if w)
    periods = tuple(int(p) for p in args.periods.split(",") if p)
    discriminator = Discriminator(windows, args.channels, args.exponent, periods)
    optimizer = torch.optim.AdamW(discriminator.parameters(), lr=args.lr, betas=tuple(args.betas),
                                  weight_decay=0.0)
    print(f"{args.kbps:g} kbps, STFT windows {windows}, periods {periods}, {args.channels} channels, "
          f"magnitude exponent {args.exponent:g}, "
          f"lr {args.lr:g}, betas {tuple(args.betas)}, clip {args.clip:g}, {len(real)} training pairs")
    draw = torch.Generator().manual_seed(1)
    losses: list[float] = []
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        pick = torch.randint(0, len(real), (BATCH,), generator=draw)
        judged = discriminator(torch.cat([real[pick], decoded[pick]]))
        loss = discriminator_loss([(logits[:BATCH], []) for logits, _ in judged],
                                  [(logits[BATCH:], []) for logits, _ in judged])
        optimizer.zero_grad()
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(discriminator.parameters(),
                                              args.clip if args.clip > 0 else float("inf"))
        optimizer.step()
        losses.append(loss.item())
        if step % 25 == 0:
            with torch.no_grad():
                gap = mean_logit(discriminator, test_real) - mean_logit(discriminator, test_decoded)
            print(f"step {step:4d}  hinge {sum(losses[-25:]) / 25:.3f}  grad norm {float(norm):7.2f}  "
                  f"held-out: pairs ranked right {float((gap > 0).float().mean()):.2f}, "
                  f"mean logit gap {float(gap.mean()):.3f}  "
                  f"({(time.perf_counter() - start) / step:.2f} s/step)", flush=True)


if __name__ == "__main__":
    main()
