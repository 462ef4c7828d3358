#!/usr/bin/env bash
# Dr.GRPO + EchoRL, Qwen2.5-Math-7B (16k positions) on one node of 8 GPUs.
#
#   bash recipes/drgrpo_echo_qwen.sh [Hydra overrides...]      your overrides come last, so they win
#   PROFILE=cpu bash recipes/drgrpo_echo_qwen.sh              the same recipe on this CPU, with the toy model
#   DRY_RUN=1 bash recipes/drgrpo_echo_qwen.sh                start-up checks + the resolved config; trains nothing
#   ECHO_ENABLE=false bash recipes/drgrpo_echo_qwen.sh        the baseline (what recipes/drgrpo_baseline_qwen.sh runs)
#
# Below: this recipe's algorithm and EchoRL settings, as the Hydra overrides they are. What every recipe shares
# (model, data, sizes, logging, no KL, the vanilla PPO loss clipped at 0.2/0.2, the run folder, PROFILE, DRY_RUN,
# ENTRY) is in recipes/common.sh, each setting an environment variable (docs/recipes.md lists them).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# Dr.GRPO (verl's docs/algo/grpo.md; the authors' own "GRPO" run is this): no std normalisation, and each
# sequence's token sum divided by a constant, the max response length. Without loss_scale_factor verl would
# divide by each micro-batch's own padded width, which varies with dynamic batch sizing.
ALGORITHM=(
    algorithm.adv_estimator=grpo
    algorithm.norm_adv_by_std_in_grpo=False
    actor_rollout_ref.actor.entropy_coeff="${ENTROPY_COEFF:-0.001}"   # the authors' entropy bonus
    actor_rollout_ref.actor.loss_agg_mode=seq-mean-token-sum-norm
    actor_rollout_ref.actor.loss_scale_factor="$MAX_RESPONSE"
)

# EchoRL adds coef x the token-mean NLL of the EchoClips: the response prefix up to the highest-entropy step, of
# each rollout of an all-success group (where the RL advantage is 0). Every echo key and its default:
# echorl_verl/config.py. ECHO_COEF: lambda (0.001, the authors'); BOUNDARY_IDS: the model's step-end token ids
# (recipes/common.sh); ECHO_EXTRA: more echo overrides, e.g. "echo.clip_mode=full_response".
# shellcheck disable=SC2206
ECHO=(echo.enable=true echo.mode=loss echo.coef="${ECHO_COEF:-0.001}"
      echo.scope=all_success_groups echo.clip_mode=peak_prefix
      ${BOUNDARY_IDS:+"echo.boundary_token_ids=$BOUNDARY_IDS"} ${SEED:+"echo.seed=$SEED"} ${ECHO_EXTRA:-})
# ECHO_ENABLE=false: the baseline, with the same ALGORITHM; no EchoRL, so verl's own trainer step and loss
if [ "$ECHO_ENABLE" = false ]; then ECHO=(echo.enable=false); fi

launch "${NAME:-drgrpo_echo_qwen}" "$@"
