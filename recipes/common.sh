# What every recipe's run.sh does, written once; each run.sh sources this and calls one function.
#
#   train_and_export NAME MANIFEST [key=value ...] [--resume]
#       train recipes/NAME/config.toml on MANIFEST, then export the model
#   prepare_train_and_export NAME DEFAULT_SUBSET ROOT [key=value ...] [--resume]
#       first write ROOT's manifest (python -m codec.train.prepare NAME), once; SUBSET=...
#       overrides DEFAULT_SUBSET ("" for a corpus without subsets), DOWNLOAD=1 fetches the corpus
#
# Runs go to runs/NAME under the repository root, or where a run_dir=... override says; a
# prepared manifest goes into the run's folder and is reused by a --resume.

set -euo pipefail
# (CDPATH= : an exported CDPATH would make cd print the folder into the variable)
repository_root=$(CDPATH= cd -- "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# The run folder: run_dir=... among the overrides, else runs/NAME.
run_dir_for() {
    local run_dir=runs/$1
    shift
    for arg in "$@"; do
        case $arg in run_dir=*) run_dir=${arg#run_dir=} ;; esac
    done
    echo "$run_dir"
}

train_and_export() {
    local name=$1 manifest=$2
    shift 2
    local run_dir
    run_dir=$(run_dir_for "$name" "$@")
    cd "$repository_root"          # the config's and the runs' paths are relative to it
    codec train "recipes/$name/config.toml" train_data="$manifest" run_dir="$run_dir" "$@"
    codec export "$run_dir/checkpoint.safetensors" "$run_dir/model.safetensors"
}

prepare_train_and_export() {
    local name=$1 default_subset=$2
    shift 2
    if [ $# -lt 1 ]; then
        echo "usage: recipes/$name/run.sh ROOT [key=value ...] [--resume]" >&2
        exit 2
    fi
    local root=$1
    shift
    case $root in /*) ;; *) root=$PWD/$root ;; esac
    local subset="" run_dir options=()
    if [ -n "$default_subset" ]; then
        subset=${SUBSET:-$default_subset}      # a corpus without subsets ignores SUBSET
    fi
    run_dir=$(run_dir_for "$name" "$@")
    local manifest=$run_dir/manifest.tsv
    if [ -n "$subset" ]; then
        manifest=$run_dir/${subset//,/+}.tsv       # one manifest per choice of subsets
        options+=(--subset "$subset")
    fi
    if [ "${DOWNLOAD:-0}" = 1 ]; then
        options+=(--download)
    fi
    cd "$repository_root"
    if [ ! -f "$manifest" ]; then
        # ${options[@]+...}: an empty array is "unbound" to bash before 4.4 under set -u
        python -m codec.train.prepare "$name" "$root" "$manifest" ${options[@]+"${options[@]}"}
    fi
    train_and_export "$name" "$manifest" "$@"
}
