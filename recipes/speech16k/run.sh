#!/usr/bin/env bash
# The default model's recipe: train on ../shared/corpus/train (its manifest.tsv ships with the
# corpus, so there is nothing to prepare), then export.
#
#   recipes/speech16k/run.sh [key=value ...] [--resume]
#
# A run_dir=... override moves the run; --resume continues a stopped run.
source "$(dirname "$0")/../common.sh"
train_and_export speech16k ../shared/corpus/train/manifest.tsv "$@"
