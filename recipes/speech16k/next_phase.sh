#!/usr/bin/env bash
# One more CPU phase of the shipped model, and the figures that decide whether to ship it: how
# phases 2 to 5 were made and judged (docs/model_card.md, "Quality against training time").
#
#   recipes/speech16k/next_phase.sh RUN_DIR [key=value ...] [--resume]
#
# 1. Fine-tunes the shipped model with the phase-4 recipe: the whole codec, adversarial, lr 5e-5
#    with a 1,000-step cosine (phase 4 gained in its first 1,000 steps and not after), on two
#    threads: about an hour here. Overrides go to `codec train` (steps=..., decoder_only=true,
#    perceptual_weight=3 stoi_weight=2, threads=1, ...); --resume continues a stopped run.
# 2. Exports RUN_DIR/model.safetensors.
# 3. Scores it and the shipped model on every fourth dev file, unrefined at 1.5 and 6 kbps and
#    refined at 6 kbps (about 30 minutes on two cores), and prints `codec compare` of each pair.
#    EVAL_LIMIT=N scores the first N of those files only. The shipped model's scores are the same
#    from run to run: SHIPPED_SCORES=EARLIER_RUN_DIR copies an earlier run's instead (about 12 of
#    the 30 minutes), and refuses, before training, unless they were made of the model shipped
#    now, on as many files, by the same committed code (codec/'s git tree).
#
# Ship it (copy the file to codec/pretrained/speech16k.safetensors) only if it is no worse on any
# measure and better beyond noise on some; then the model card's figures must be measured again.
# From phase 5 (shipped), neither this default recipe (-0.026 PESQ-WB unrefined at 6 kbps) nor
# phase 5's own (within noise) gained: docs/experiments.md, "Two more phases from phase 5".
source "$(dirname "$0")/../common.sh"
if [ $# -lt 1 ]; then
    echo "usage: $0 RUN_DIR [key=value ...] [--resume]" >&2
    exit 2
fi
case $1 in /*) run_dir=$1 ;; *) run_dir=$PWD/$1 ;; esac
shift
for arg in "$@"; do
    case $arg in run_dir=*) echo "$0: give the run's folder as RUN_DIR, not run_dir=" >&2; exit 2 ;; esac
done
# Ctrl-C stops the trainer, which saves a checkpoint and exits 0: stop here too, not go on to score it.
trap 'exit 130' INT TERM
cd "$repository_root"

# What the shipped model's scores depend on: its weights, the files scored and the scoring code
# (outside a git checkout, or with codec/ changed since the last commit, the code is unknown).
code_version() {
    local tree
    tree=$(git rev-parse -q --verify HEAD:codec 2>/dev/null) && git diff --quiet HEAD -- codec 2>/dev/null \
        && echo "$tree" || echo unknown
}
shipped_id="$(python -c "from codec.model import load_model; print(load_model('speech16k').fingerprint)") \
files=${EVAL_LIMIT:-all} code=$(code_version)"
if [ -n "${SHIPPED_SCORES:-}" ]; then
    if [ "$(cat "$SHIPPED_SCORES/eval_shipped.id" 2>/dev/null)" != "$shipped_id" ] || [[ $shipped_id == *code=unknown ]]; then
        echo "$0: $SHIPPED_SCORES has no scores of the shipped model made the way this run's would be; leave SHIPPED_SCORES unset to score it here" >&2
        exit 2
    fi
fi

codec train recipes/speech16k/config.toml init_from=speech16k adversarial=true discriminator_channels=16 \
    lr=5e-5 warmup_steps=100 steps=1000 lr_final_fraction=0.05 valid_every=500 threads=2 \
    run_dir="$run_dir" "$@"
# A trainer stopped some other way (killed, out of time) also leaves a checkpoint short of its
# schedule: export and score only a finished run; --resume finishes it.
python -c "
import sys
from codec.train.checkpoint import checkpoint_progress
step, steps = checkpoint_progress(sys.argv[1])
if step < steps:
    sys.exit(f'the run stopped at step {step} of {steps}: continue it with --resume')" "$run_dir/checkpoint.safetensors"
codec export "$run_dir/checkpoint.safetensors" "$run_dir/model.safetensors"

quarter=$run_dir/dev_quarter.tsv       # every fourth dev file: 37 files, 37 speakers
python -c "
import os
from codec.datasets import list_audio
print('path')
print(''.join(os.path.abspath(f) + '\n' for f in list_audio('../shared/corpus/dev')[::4]), end='')" > "$quarter"
limit=()
if [ -n "${EVAL_LIMIT:-}" ]; then
    limit=(--limit "$EVAL_LIMIT")
fi
if [ -n "${SHIPPED_SCORES:-}" ]; then
    for part in eval_shipped_unrefined eval_shipped_refined6; do
        rm -rf "${run_dir:?}/$part" && cp -r "$SHIPPED_SCORES/$part" "$run_dir/$part"
    done
    models=(new)
else
    models=(shipped new)
fi
for model in "${models[@]}"; do
    file=speech16k
    if [ $model = new ]; then file=$run_dir/model.safetensors; fi
    codec eval "$quarter" --model "$file" --refine 0 --kbps 1.5,6 --baseline none --jobs 2 --listen 0 \
        ${limit[@]+"${limit[@]}"} --out "$run_dir/eval_${model}_unrefined"
    codec eval "$quarter" --model "$file" --kbps 6 --baseline none --jobs 2 --listen 0 \
        ${limit[@]+"${limit[@]}"} --out "$run_dir/eval_${model}_refined6"
done
echo "$shipped_id" > "$run_dir/eval_shipped.id"      # what its shipped scores are: a later run may reuse them
codec compare "$run_dir/eval_shipped_unrefined" "$run_dir/eval_new_unrefined"
codec compare "$run_dir/eval_shipped_refined6" "$run_dir/eval_new_refined6"
