#!/usr/bin/env bash
# The README's main job: verl's real GRPO trainer + EchoRL (python -m echorl_verl.main_ppo) on this CPU,
# with the toy addition model (built and cached on first use), then a short summary of the run.
#
#   bash recipes/cpu_demo.sh [extra Hydra overrides, e.g. echo.coef=0.01]    settings: recipes/cpu_common.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/cpu_common.sh"
run_cpu "${NAME:-cpu_grpo_echo}" echorl_verl.main_ppo echo.enable=true "$@"
echo
"$PYTHON" -m echorl_verl.report summary "$VERL_FILE_LOGGER_PATH"
