#!/usr/bin/env bash
# DAPO baseline (no EchoRL), Qwen2.5-Math-7B (16k positions) on one node of 8 GPUs.
#
# The baseline is recipes/dapo_echo_qwen.sh with EchoRL off (ECHO_ENABLE=false): the same algorithm settings (its
# ALGORITHM block, the same recipes/common.sh), echo.enable=false, and so verl's own trainer step and loss. Read
# the settings there; PROFILE, DRY_RUN, the environment variables and your Hydra overrides work as there.
#
#   bash recipes/dapo_baseline_qwen.sh [Hydra overrides...]      your overrides come last, so they win
#   PROFILE=cpu bash recipes/dapo_baseline_qwen.sh              the same recipe on this CPU, with the toy model
#   DRY_RUN=1 bash recipes/dapo_baseline_qwen.sh                start-up checks + the resolved config; trains nothing
#   ENTRY=verl bash recipes/dapo_baseline_qwen.sh               through verl's own `python -m verl.trainer.main_ppo`
set -euo pipefail
ECHO_ENABLE=false NAME="${NAME:-dapo_baseline_qwen}" \
    exec bash "$(dirname "${BASH_SOURCE[0]}")/dapo_echo_qwen.sh" "$@"
