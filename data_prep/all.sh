#!/usr/bin/env bash
# Build the whole training + evaluation suite in verl's parquet format, one file per set.
#
#   OUTPUT_DIR=data/echorl bash data_prep/all.sh
#
# NEEDS THE HUGGING FACE HUB (network; GPQA is gated: accept its terms and `huggingface-cli login` first),
# except for the sets found in INPUT_DIR: when INPUT_DIR/<set>.{parquet,jsonl,json} exists it is used as
# the source (in the source's own schema) instead of the hub.
#
# Environment:
#   OUTPUT_DIR  where the parquet files go (default: data/echorl)
#   INPUT_DIR   optional folder of local source files named after the sets (e.g. aime.jsonl, gpqa.parquet)
#   TEMPLATE    echo (default: the authors' system prompt) or verl (verl's plain suffix)
#   PYTHON      interpreter (default: python)
#   SETS        optional space-separated subset of set names to build (default: all of them)
# Output: OUTPUT_DIR/<set>.parquet, e.g. openr1.parquet (training), aime.parquet (avg@32 by repeated rows).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUTPUT_DIR="${OUTPUT_DIR:-$HERE/../data/echorl}"
INPUT_DIR="${INPUT_DIR:-}"
TEMPLATE="${TEMPLATE:-echo}"
PYTHON="${PYTHON:-python}"

# script:set pairs, in build order
PLAN=(
  math_train:openr1 math_train:dapo math_train:math_lighteval math_train:deepscaler
  math_eval:aime math_eval:aime25 math_eval:amc math_eval:math math_eval:minerva math_eval:olympiad_bench
  choice:arc_c choice:gpqa choice:mmlu_pro
  code_bench:humaneval code_bench:humanevalplus code_bench:mbpp code_bench:mbppplus
  code_bench:livecodebench code_bench:deepcoder
)

wanted() {  # is set $1 selected by SETS?
  [[ -z "${SETS:-}" ]] && return 0
  for s in $SETS; do [[ "$s" == "$1" ]] && return 0; done
  return 1
}

built=0
for item in "${PLAN[@]}"; do
  script="${item%%:*}"; set_name="${item#*:}"
  wanted "$set_name" || continue
  input_args=()
  if [[ -n "$INPUT_DIR" ]]; then
    for ext in parquet jsonl json; do
      if [[ -f "$INPUT_DIR/$set_name.$ext" ]]; then input_args=(--input "$INPUT_DIR/$set_name.$ext"); break; fi
    done
  fi
  echo "== $set_name (${input_args[1]:-hub})"
  "$PYTHON" "$HERE/$script.py" --dataset "$set_name" --output_dir "$OUTPUT_DIR" --template "$TEMPLATE" \
    "${input_args[@]+"${input_args[@]}"}"
  built=$((built + 1))
done
if [[ $built -eq 0 ]]; then echo "error: SETS='${SETS:-}' selects no set" >&2; exit 1; fi
echo "built $built set(s) in $OUTPUT_DIR"
