#!/usr/bin/env bash
# Any folder of audio files: prepare the manifest, train, export.
#
#   recipes/folder/run.sh ROOT [key=value ...] [--resume]
#
# ROOT is searched recursively for .wav, .flac, .ogg (and .mp3 where soundfile reads it); the
# speaker column is each file's top-level subfolder. The manifest is written once: delete
# RUN_DIR/manifest.tsv after adding files. A run_dir=... override moves the run (and its
# manifest); --resume continues a stopped run.
source "$(dirname "$0")/../common.sh"
prepare_train_and_export folder "" "$@"
