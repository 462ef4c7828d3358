#!/usr/bin/env bash
# verl 0.9.1's own GRPO trainer (python -m verl.trainer.main_ppo) on a CPU, with the toy addition task:
# the baseline of recipes/cpu_demo.sh.
#
#   bash recipes/cpu_grpo_baseline.sh [extra Hydra overrides...]       settings: recipes/cpu_common.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/cpu_common.sh"
run_cpu "${NAME:-cpu_grpo_baseline}" verl.trainer.main_ppo "$@"
