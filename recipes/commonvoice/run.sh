#!/usr/bin/env bash
# Common Voice recipe: prepare the manifest, train, export.
#
#   recipes/commonvoice/run.sh ROOT [key=value ...] [--resume]
#
# ROOT is one language folder of a Common Voice release (clips/, train.tsv, ...), downloaded by
# hand. SUBSET=train by default; SUBSET=validated uses every validated clip.
# A run_dir=... override moves the run (and its manifest); --resume continues a stopped run.
set -euo pipefail
if [ $# -lt 1 ]; then
    echo "usage: $0 ROOT [key=value ...] [--resume]" >&2
    exit 2
fi
case $1 in /*) root=$1 ;; *) root=$PWD/$1 ;; esac
shift
cd "$(dirname "$0")/../.."            # the repository root: the paths below are relative to it

name=commonvoice
subset=${SUBSET:-train}
run_dir=runs/$name
for arg in "$@"; do
    case $arg in run_dir=*) run_dir=${arg#run_dir=} ;; esac
done
manifest=$run_dir/${subset//,/+}.tsv
download=""
if [ "${DOWNLOAD:-0}" = 1 ]; then download=--download; fi

if [ ! -f "$manifest" ]; then
    python -m codec.train.prepare commonvoice "$root" "$manifest" --subset "$subset" $download
fi
codec train recipes/$name/config.toml train_data="$manifest" run_dir="$run_dir" "$@"
codec export "$run_dir/checkpoint.safetensors" "$run_dir/model.safetensors"
