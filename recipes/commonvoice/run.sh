#!/usr/bin/env bash
# Common Voice recipe: prepare the manifest, train, export.
#
#   recipes/commonvoice/run.sh ROOT [key=value ...] [--resume]
#
# ROOT is one language folder of a Common Voice release (clips/, train.tsv, ...), downloaded by
# hand. SUBSET=train by default; SUBSET=validated uses every validated clip.
# A run_dir=... override moves the run (and its manifest); --resume continues a stopped run.
source "$(dirname "$0")/../common.sh"
prepare_train_and_export commonvoice "train" "$@"
