#!/usr/bin/env bash
# Build the whole training + evaluation suite in verl's parquet format, one file per set.
#
#   OUTPUT_DIR=data/echorl bash data_prep/all.sh
#
# NEEDS THE HUGGING FACE HUB (network; GPQA is gated: accept its terms and `huggingface-cli login` first),
# except for the sets found in INPUT_DIR: when INPUT_DIR/<set>.{parquet,jsonl,json} exists it is used as
# the source (in the source's own schema) instead of the hub.
#
# Every set is built, whatever happens to the others; at the end a table shows, per set, the rows written,
# the records skipped and why (training sets skip the records they cannot use; evaluation sets keep every
# row or fail), or why the set failed and the fix. The exit status is 1 if any set failed. A failed set
# never leaves a partial file (an older complete one stays as it was).
#
# Environment:
#   OUTPUT_DIR  where the parquet files go (default: data/echorl)
#   INPUT_DIR   optional folder of local source files named after the sets (e.g. aime.jsonl, gpqa.parquet)
#   TEMPLATE    echo (default: the authors' system prompt) or verl (verl's plain suffix)
#   PYTHON      interpreter (default: python)
#   SETS        optional space-separated subset of set names to build (default: all of them)
# Output: OUTPUT_DIR/<set>.parquet, e.g. openr1.parquet (training), aime.parquet (avg@32 by repeated rows).
# The sets and their order come from echorl_verl/data/catalog.py (`python -m echorl_verl.data.catalog plan`).
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUTPUT_DIR="${OUTPUT_DIR:-$HERE/../data/echorl}"
INPUT_DIR="${INPUT_DIR:-}"
TEMPLATE="${TEMPLATE:-echo}"
PYTHON="${PYTHON:-python}"
export PYTHONPATH="$HERE/..${PYTHONPATH:+:$PYTHONPATH}"   # run from a checkout without installing

if ! PLAN_TEXT="$("$PYTHON" -m echorl_verl.data.catalog plan)"; then
  echo "error: could not read the plan from echorl_verl/data/catalog.py with PYTHON=$PYTHON" >&2; exit 1
fi
read -r -a PLAN <<< "$PLAN_TEXT"   # script:set pairs, in build order

wanted() {  # is set $1 selected by SETS?
  [[ -z "${SETS:-}" ]] && return 0
  for s in $SETS; do [[ "$s" == "$1" ]] && return 0; done
  return 1
}

selected=()
for item in "${PLAN[@]}"; do wanted "${item#*:}" && selected+=("$item"); done
if [[ -n "${SETS:-}" ]]; then
  for s in $SETS; do
    printf '%s\n' "${PLAN[@]#*:}" | grep -qx -- "$s" || { echo "error: SETS names an unknown set '$s' (known: ${PLAN[*]#*:})" >&2; exit 1; }
  done
fi
if [[ ${#selected[@]} -eq 0 ]]; then echo "error: SETS='${SETS:-}' selects no set" >&2; exit 1; fi

SUMMARY_DIR="$(mktemp -d)"
trap 'rm -rf "$SUMMARY_DIR"' EXIT
names=()
i=0
for item in "${selected[@]}"; do
  script="${item%%:*}"; set_name="${item#*:}"; i=$((i + 1))
  names+=("$set_name")
  input_args=()
  if [[ -n "$INPUT_DIR" ]]; then
    for ext in parquet jsonl json; do
      if [[ -f "$INPUT_DIR/$set_name.$ext" ]]; then input_args=(--input "$INPUT_DIR/$set_name.$ext"); break; fi
    done
  fi
  echo "== [$i/${#selected[@]}] $set_name (${input_args[1]:-hub})"
  "$PYTHON" "$HERE/$script.py" --dataset "$set_name" --output_dir "$OUTPUT_DIR" --template "$TEMPLATE" \
    --summary "$SUMMARY_DIR/$set_name.json" "${input_args[@]+"${input_args[@]}"}" \
    || echo "== $set_name failed (exit $?); going on with the other sets"
done

echo
echo "== summary"
"$PYTHON" -m echorl_verl.data.outcome table "$SUMMARY_DIR" "$OUTPUT_DIR" "${names[@]}"
