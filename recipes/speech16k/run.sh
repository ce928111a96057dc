#!/usr/bin/env bash
# The default model's recipe: train on ../shared/corpus/train (its manifest.tsv ships with the
# corpus, so there is nothing to prepare), then export.
#
#   recipes/speech16k/run.sh [key=value ...] [--resume]
#
# A run_dir=... override moves the run; --resume continues a stopped run.
set -euo pipefail
cd "$(dirname "$0")/../.."            # the repository root: the paths below are relative to it

run_dir=runs/speech16k
for arg in "$@"; do
    case $arg in run_dir=*) run_dir=${arg#run_dir=} ;; esac
done

codec train recipes/speech16k/config.toml train_data=../shared/corpus/train/manifest.tsv run_dir="$run_dir" "$@"
codec export "$run_dir/checkpoint.safetensors" "$run_dir/model.safetensors"
