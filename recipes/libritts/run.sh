#!/usr/bin/env bash
# LibriTTS recipe: prepare the manifest, train, export.
#
#   recipes/libritts/run.sh ROOT [key=value ...] [--resume]
#
# ROOT holds LibriTTS/SUBSET/ (or is empty, with DOWNLOAD=1). SUBSET=train-clean-100 by default;
# SUBSET=train-clean-100,train-clean-360,train-other-500 trains on all 555 h.
# A run_dir=... override moves the run (and its manifest); --resume continues a stopped run.
source "$(dirname "$0")/../common.sh"
prepare_train_and_export libritts "train-clean-100" "$@"
