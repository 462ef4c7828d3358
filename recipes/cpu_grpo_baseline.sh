#!/usr/bin/env bash
# verl's own, unmodified `python -m verl.trainer.main_ppo` (GRPO) on this CPU with the toy model: the
# GRPO baseline recipe with PROFILE=cpu and ENTRY=verl (echorl's start-up checks run first).
#
#   bash recipes/cpu_grpo_baseline.sh [extra Hydra overrides...]       settings: recipes/profile_cpu.sh
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export PROFILE=cpu ENTRY=verl TOTAL_STEPS="${TOTAL_STEPS:-${STEPS:-3}}" NAME="${NAME:-cpu_grpo_baseline}"
exec bash "$HERE/grpo_baseline_qwen.sh" "$@"
