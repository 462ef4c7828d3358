#!/usr/bin/env bash
# DRGRPO baseline (echo.enable=false: verl's main_ppo unchanged) on Qwen2.5-Math-7B.
#   bash recipes/drgrpo_baseline_qwen.sh [Hydra overrides...]      settings: recipes/common.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/algorithms.sh"
run_recipe "${NAME:-drgrpo_baseline_qwen}" 0 "${DRGRPO[@]}" -- "$@"
