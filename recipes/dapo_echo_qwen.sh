#!/usr/bin/env bash
# DAPO + EchoRL (echo.coef=$ECHO_COEF, peak-prefix EchoClips), Qwen2.5-Math-7B on one node of 8 GPUs.
#   bash recipes/dapo_echo_qwen.sh [Hydra overrides...]     settings: recipes/common.sh, README "Recipes"
#   PROFILE=cpu bash recipes/dapo_echo_qwen.sh             the same recipe on this CPU (toy model)
#   DRY_RUN=1 bash recipes/dapo_echo_qwen.sh               start-up checks + resolved config, no training
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/algorithms.sh"
run_recipe "${NAME:-dapo_echo_qwen}" 1 "${DAPO[@]}" "${DAPO_ECHO[@]}" -- "$@"
