#!/usr/bin/env bash
# GSPO baseline (echo.enable=false: verl's main_ppo unchanged) on Qwen2.5-Math-7B.
#   bash recipes/gspo_baseline_qwen.sh [Hydra overrides...]      settings: recipes/common.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/algorithms.sh"
run_recipe "${NAME:-gspo_baseline_qwen}" 0 "${GSPO[@]}" -- "$@"
