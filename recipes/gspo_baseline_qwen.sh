#!/usr/bin/env bash
# GSPO baseline (echo.enable=false: verl's own TaskRunner, trainer and loss), Qwen2.5-Math-7B, 8 GPUs.
#   bash recipes/gspo_baseline_qwen.sh [Hydra overrides...]     settings: recipes/common.sh, README "Recipes"
#   PROFILE=cpu bash recipes/gspo_baseline_qwen.sh             the same recipe on this CPU (toy model)
#   DRY_RUN=1 bash recipes/gspo_baseline_qwen.sh               start-up checks + resolved config, no training
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/algorithms.sh"
run_recipe "${NAME:-gspo_baseline_qwen}" 0 "${GSPO[@]}" -- "$@"
