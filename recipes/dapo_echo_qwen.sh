#!/usr/bin/env bash
# DAPO + EchoRL, Qwen2.5-Math-7B (16k positions) on one node of 8 GPUs.
#
#   bash recipes/dapo_echo_qwen.sh [Hydra overrides...]      your overrides come last, so they win
#   PROFILE=cpu bash recipes/dapo_echo_qwen.sh              the same recipe on this CPU, with the toy model
#   DRY_RUN=1 bash recipes/dapo_echo_qwen.sh                start-up checks + the resolved config; trains nothing
#   ECHO_ENABLE=false bash recipes/dapo_echo_qwen.sh        the baseline (what recipes/dapo_baseline_qwen.sh runs)
#
# Below: this recipe's algorithm and EchoRL settings, as the Hydra overrides they are. What every recipe shares
# (model, data, sizes, logging, no KL, the vanilla PPO loss clipped at 0.2/0.2, the run folder, PROFILE, DRY_RUN,
# ENTRY) is in recipes/common.sh, each setting an environment variable (docs/recipes.md lists them).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# DAPO as published (arXiv 2503.14476): clip-higher 0.2/0.28, dual-clip c=10, token-mean, no entropy bonus,
# dynamic sampling on the accuracy, and overlong reward shaping by verl's reward-loop `dapo` manager around
# our compute_score (a soft penalty over the last OVERLONG_BUFFER tokens; DAPO: 4096 of 20480 = 20%).
OVERLONG_BUFFER="${OVERLONG_BUFFER:-$((MAX_RESPONSE / 5))}"
OVERLONG_PENALTY="${OVERLONG_PENALTY:-1.0}"
ALGORITHM=(
    algorithm.adv_estimator=grpo
    algorithm.norm_adv_by_std_in_grpo=True
    actor_rollout_ref.actor.entropy_coeff="${ENTROPY_COEFF:-0}"
    actor_rollout_ref.actor.clip_ratio_low=0.2
    actor_rollout_ref.actor.clip_ratio_high=0.28
    actor_rollout_ref.actor.clip_ratio_c=10.0
    actor_rollout_ref.actor.loss_agg_mode=token-mean
    algorithm.filter_groups.enable=True
    algorithm.filter_groups.metric=acc
    algorithm.filter_groups.max_inflight_gen_batches=3
    reward.reward_manager.name=dapo
    +reward.reward_kwargs.max_resp_len="$MAX_RESPONSE"
    +reward.reward_kwargs.overlong_buffer_cfg.enable=True
    +reward.reward_kwargs.overlong_buffer_cfg.len="$OVERLONG_BUFFER"
    +reward.reward_kwargs.overlong_buffer_cfg.penalty_factor="$OVERLONG_PENALTY"
    +reward.reward_kwargs.overlong_buffer_cfg.log=True
)

# EchoRL adds coef x the token-mean NLL of the EchoClips: the response prefix up to the highest-entropy step, of
# each rollout of an all-success group (where the RL advantage is 0). Every echo key and its default:
# echorl_verl/config.py. ECHO_COEF: lambda (0.001, the authors'); BOUNDARY_IDS: the model's step-end token ids
# (recipes/common.sh); ECHO_EXTRA: more echo overrides, e.g. "echo.clip_mode=full_response".
# With DAPO's shaping the score is no longer 0/1: success is `acc`, as for the filter (echo.success_key=acc);
# and echo keeps the all-success groups the filter drops (its input; the batch then holds fewer mixed groups).
# shellcheck disable=SC2206
ECHO=(echo.enable=true echo.mode=loss echo.coef="${ECHO_COEF:-0.001}"
      echo.scope=all_success_groups echo.clip_mode=peak_prefix echo.success_key=acc echo.dapo_keep_all_success=true
      ${BOUNDARY_IDS:+"echo.boundary_token_ids=$BOUNDARY_IDS"} ${SEED:+"echo.seed=$SEED"} ${ECHO_EXTRA:-})
# ECHO_ENABLE=false: the baseline, with the same ALGORITHM; no EchoRL, so verl's own trainer step and loss
if [ "$ECHO_ENABLE" = false ]; then ECHO=(echo.enable=false); fi

launch "${NAME:-dapo_echo_qwen}" "$@"
