#!/usr/bin/env bash
# The README's main job: GRPO + EchoRL with verl's real trainer on this CPU, i.e. recipes/grpo_echo_qwen.sh
# with PROFILE=cpu (the toy addition model, built and cached on first use), 3 steps, then a short summary.
#
#   bash recipes/cpu_demo.sh [extra Hydra overrides, e.g. echo.coef=0.01]    settings: recipes/profile_cpu.sh
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export PROFILE=cpu TOTAL_STEPS="${TOTAL_STEPS:-${STEPS:-3}}" NAME="${NAME:-cpu_grpo_echo}"
export RUN_DIR="${RUN_DIR:-$HERE/../runs/$NAME}"
bash "$HERE/grpo_echo_qwen.sh" "$@"
PYTHON="${PYTHON:-$([ -x "$HERE/../.venv/bin/python" ] && echo "$HERE/../.venv/bin/python" || echo python3)}"
echo
"$PYTHON" -m echorl_verl.report summary "$RUN_DIR"
