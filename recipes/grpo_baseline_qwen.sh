#!/usr/bin/env bash
# GRPO baseline (echo.enable=false: verl's main_ppo unchanged) on Qwen2.5-Math-7B.
#   bash recipes/grpo_baseline_qwen.sh [Hydra overrides...]      settings: recipes/common.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/algorithms.sh"
run_recipe "${NAME:-grpo_baseline_qwen}" 0 "${GRPO[@]}" -- "$@"
