"""``python -m codec.train CONFIG [key=value ...] [--resume]`` (what torchrun runs)."""

import argparse

from .config import TrainConfig
from .train import main

parser = argparse.ArgumentParser(prog="python -m codec.train", description=__doc__)
parser.add_argument("config", help="TOML training config (recipes/*/config.toml)")
parser.add_argument("overrides", nargs="*", help="key=value, e.g. steps=1000 model.channels=16")
parser.add_argument("--resume", action="store_true", help="continue from RUN_DIR/checkpoint.safetensors")
args = parser.parse_args()
main(TrainConfig.load(args.config, args.overrides), resume=args.resume)
