#!/usr/bin/env bash
# GSPO + EchoRL, Qwen2.5-Math-7B (16k positions) on one node of 8 GPUs.
#
#   bash recipes/gspo_echo_qwen.sh [Hydra overrides...]      your overrides come last, so they win
#   PROFILE=cpu bash recipes/gspo_echo_qwen.sh              the same recipe on this CPU, with the toy model
#   DRY_RUN=1 bash recipes/gspo_echo_qwen.sh                start-up checks + the resolved config; trains nothing
#   ECHO_ENABLE=false bash recipes/gspo_echo_qwen.sh        the baseline (what recipes/gspo_baseline_qwen.sh runs)
#
# Below: this recipe's algorithm and EchoRL settings, as the Hydra overrides they are. What every recipe shares
# (model, data, sizes, logging, no KL, the vanilla PPO loss clipped at 0.2/0.2, the run folder, PROFILE, DRY_RUN,
# ENTRY) is in recipes/common.sh, each setting an environment variable (docs/recipes.md lists them).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# GSPO: a sequence-level ratio and clipping (verl's gspo policy loss and its recommended clip range), no KL.
ALGORITHM=(
    algorithm.adv_estimator=grpo
    algorithm.norm_adv_by_std_in_grpo=True
    actor_rollout_ref.actor.entropy_coeff="${ENTROPY_COEFF:-0.001}"   # the authors' entropy bonus
    actor_rollout_ref.actor.policy_loss.loss_mode=gspo
    actor_rollout_ref.actor.clip_ratio_low=0.0003
    actor_rollout_ref.actor.clip_ratio_high=0.0004
    actor_rollout_ref.actor.loss_agg_mode=seq-mean-token-mean
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

launch "${NAME:-gspo_echo_qwen}" "$@"
