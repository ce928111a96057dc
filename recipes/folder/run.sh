#!/usr/bin/env bash
# Any folder of audio files: prepare the manifest, train, export.
#
#   recipes/folder/run.sh ROOT [key=value ...] [--resume]
#
# ROOT is searched recursively for .wav, .flac, .ogg (and .mp3 where soundfile reads it); the
# speaker column is each file's top-level subfolder. The manifest is written once: delete
# RUN_DIR/manifest.tsv after adding files. A run_dir=... override moves the run (and its
# manifest); --resume continues a stopped run.
set -euo pipefail
if [ $# -lt 1 ]; then
    echo "usage: $0 ROOT [key=value ...] [--resume]" >&2
    exit 2
fi
case $1 in /*) root=$1 ;; *) root=$PWD/$1 ;; esac
shift
cd "$(dirname "$0")/../.."            # the repository root: the paths below are relative to it

name=folder
run_dir=runs/$name
for arg in "$@"; do
    case $arg in run_dir=*) run_dir=${arg#run_dir=} ;; esac
done
manifest=$run_dir/manifest.tsv

if [ ! -f "$manifest" ]; then
    python -m codec.train.prepare folder "$root" "$manifest"
fi
codec train recipes/$name/config.toml train_data="$manifest" run_dir="$run_dir" "$@"
codec export "$run_dir/checkpoint.safetensors" "$run_dir/model.safetensors"
