#!/usr/bin/env bash
# Evaluate one checkpoint (a Hugging Face model folder) on the whole suite with verl's trainer in
# validation-only mode: vLLM, temperature 0.6, one sample per row (AIME/AMC rows are repeated 32x in the
# data, so that is avg@32), max response 8192. No training step runs (echo.enable=false).
#
#   MODEL_PATH=/ckpt/grpo_echo_qwen/hf NAME=grpo_echo_qwen bash recipes/eval_qwen.sh [Hydra overrides...]
#   python -m echorl_verl.report table runs/eval_*          # then the table
#
# A verl training checkpoint is FSDP shards: merge it first,
#   python -m verl.model_merger merge --backend fsdp \
#       --local_dir runs/<run>/checkpoints/global_step_<N>/actor --target_dir <HF folder>
#
# Settings (environment, with recipes/common.sh's defaults for the rest):
#   MODEL_PATH  the model to evaluate (default: the 16k-position base model the recipes train)
#   NAME        label; metrics go to $RUN_ROOT/eval_$NAME/metrics.jsonl (default: basename of MODEL_PATH).
#               Name it <algo>_echo_<x> / <algo>_baseline_<x> so `report table` pairs them into a delta row.
#   DATA_DIR    folder with data_prep/all.sh's output (<set>.parquet; default <repo>/data/echorl)
#   VAL_FILES   Hydra list of parquet files (default: the nine suite sets in DATA_DIR)
#   TRAIN_FILES verl builds a train dataset even with val_only; it is never sampled (default: DATA_DIR/math.parquet)
#   GPUS_PER_NODE, NNODES, ROLLOUT_TP, GPU_MEM_UTIL, MAX_RESPONSE, PYTHON: as in recipes/common.sh
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DATA_DIR="${DATA_DIR:-$REPO/data/echorl}"
PYTHON="${PYTHON:-python3}"
if [ -z "${VAL_FILES:-}" ]; then
    # the paper's evaluation suite, as the catalog (echorl_verl/data/catalog.py) declares it
    read -r -a SUITE_SETS <<< "$(cd "$REPO" && "$PYTHON" -m echorl_verl.data.catalog sets --suite)" || exit 2
    suite=()
    for s in "${SUITE_SETS[@]}"; do suite+=("$DATA_DIR/$s.parquet"); done
    VAL_FILES="[$(IFS=,; echo "${suite[*]}")]"
fi
TRAIN_FILES="${TRAIN_FILES:-$DATA_DIR/math.parquet}"
MODEL_PATH="${MODEL_PATH:-Elliott/Qwen2.5-Math-7B-16k-think}"
NAME="${NAME:-$(basename "$MODEL_PATH")}"

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/algorithms.sh"

# Fail before Ray and the GPUs start: every data file must be there, and the file logger must be on.
missing=()
IFS=, read -r -a val_list <<< "${VAL_FILES#[}"; val_list[-1]="${val_list[-1]%]}"
for f in "${val_list[@]}" "$TRAIN_FILES"; do
    f="${f#"${f%%[![:space:]]*}"}"; f="${f%"${f##*[![:space:]]}"}"    # trim blanks ("[a, b]")
    case "$f" in *://*) ;; *) [ -f "$f" ] || missing+=("$f") ;; esac
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "error: missing data file(s): ${missing[*]}" >&2
    echo "       build them with: OUTPUT_DIR=$DATA_DIR bash data_prep/all.sh (or set DATA_DIR / VAL_FILES)" >&2
    exit 2
fi
case "$LOGGER" in *file*) ;; *)
    echo "error: LOGGER=$LOGGER has no 'file' backend: report table reads runs/eval_$NAME/metrics.jsonl" >&2; exit 2 ;;
esac

# GRPO's estimator only so that verl builds no critic (the default gae needs one); nothing is trained.
run_recipe "eval_$NAME" 0 "${GRPO[@]}" -- \
    trainer.val_only=True \
    trainer.val_before_train=True \
    trainer.save_freq=-1 \
    data.max_response_length="$MAX_RESPONSE" \
    actor_rollout_ref.rollout.name=vllm \
    actor_rollout_ref.rollout.val_kwargs.temperature=0.6 \
    actor_rollout_ref.rollout.val_kwargs.do_sample=True \
    actor_rollout_ref.rollout.val_kwargs.n=1 \
    "$@"
