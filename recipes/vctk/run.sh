#!/usr/bin/env bash
# VCTK 0.92 recipe: prepare the manifest, train, export.
#
#   recipes/vctk/run.sh ROOT [key=value ...] [--resume]
#
# ROOT holds VCTK-Corpus-0.92/ (or is empty, with DOWNLOAD=1). SUBSET=mic1 by default, or mic2,
# or mic1,mic2 for both microphones.
# A run_dir=... override moves the run (and its manifest); --resume continues a stopped run.
source "$(dirname "$0")/../common.sh"
prepare_train_and_export vctk "mic1" "$@"
