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
# Settings (environment; the rest as in recipes/common.sh, e.g. GPUS_PER_NODE, NNODES, ROLLOUT_TP, MAX_RESPONSE):
#   MODEL_PATH  the model to evaluate (default: the 16k-position base model the recipes train)
#   NAME        label; metrics go to $RUN_ROOT/eval_$NAME/metrics.jsonl (default: basename of MODEL_PATH).
#               Name it <algo>_echo_<x> / <algo>_baseline_<x> so `report table` pairs them into a delta row.
#   DATA_DIR    folder with data_prep/all.sh's output (<set>.parquet; default <repo>/data/echorl)
#   VAL_FILES   Hydra list of parquet files (default: the suite's sets in DATA_DIR)
#   TRAIN_FILES verl builds a train dataset even with val_only; it is never sampled (default: DATA_DIR/math.parquet)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

NAME="${NAME:-$(basename "$MODEL_PATH")}"
# the paper's evaluation suite, as the catalog (echorl_verl/data/catalog.py) declares it
if [ -z "${VAL_FILES:-}" ]; then
    SUITE_SETS="$(cd "$REPO" && "$PYTHON" -m echorl_verl.data.catalog sets --suite)" || exit 2
    # shellcheck disable=SC2086
    VAL_FILES="$(parquet_files $SUITE_SETS)"
fi
TRAIN_FILES="${TRAIN_FILES:-$DATA_DIR/math.parquet}"

# Fail before Ray and the GPUs start: every data file must be there, and the file logger must be on.
missing=()
while IFS= read -r f; do
    case "$f" in *://*) ;; *) [ -f "$(absolute "$f")" ] || missing+=("$f") ;; esac
done < <(file_list "$VAL_FILES"; file_list "$TRAIN_FILES")
if [ ${#missing[@]} -gt 0 ]; then
    echo "error: missing data file(s): ${missing[*]}" >&2
    echo "       build them with: OUTPUT_DIR=$DATA_DIR bash data_prep/all.sh (or set DATA_DIR / VAL_FILES)" >&2
    exit 2
fi
case "$LOGGER" in *file*) ;; *)
    echo "error: LOGGER=$LOGGER has no 'file' backend: report table reads runs/eval_$NAME/metrics.jsonl" >&2; exit 2 ;;
esac

# Validation only. GRPO's estimator only so that verl builds no critic (the default gae needs one).
ALGORITHM=(
    algorithm.adv_estimator=grpo
    trainer.val_only=True
    trainer.val_before_train=True
    trainer.save_freq=-1
    actor_rollout_ref.rollout.val_kwargs.temperature=0.6
    actor_rollout_ref.rollout.val_kwargs.do_sample=True
    actor_rollout_ref.rollout.val_kwargs.n=1
)
ECHO=(echo.enable=false)   # nothing is trained

launch "eval_$NAME" "$@"
