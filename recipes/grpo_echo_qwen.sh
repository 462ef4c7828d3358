#!/usr/bin/env bash
# GRPO + EchoRL (echo.coef=$ECHO_COEF, peak-prefix EchoClips), Qwen2.5-Math-7B on one node of 8 GPUs.
#   bash recipes/grpo_echo_qwen.sh [Hydra overrides...]     settings: recipes/common.sh, README "Recipes"
#   PROFILE=cpu bash recipes/grpo_echo_qwen.sh             the same recipe on this CPU (toy model)
#   DRY_RUN=1 bash recipes/grpo_echo_qwen.sh               start-up checks + resolved config, no training
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/algorithms.sh"
run_recipe "${NAME:-grpo_echo_qwen}" 1 "${GRPO[@]}" -- "$@"
