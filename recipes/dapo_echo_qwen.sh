#!/usr/bin/env bash
# DAPO + EchoRL (echo.coef=$ECHO_COEF, peak-prefix EchoClips) on Qwen2.5-Math-7B.
#   bash recipes/dapo_echo_qwen.sh [Hydra overrides...]      settings: recipes/common.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/algorithms.sh"
run_recipe "${NAME:-dapo_echo_qwen}" 1 "${DAPO[@]}" -- "$@"
