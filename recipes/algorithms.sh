# Sourced by the recipe scripts after common.sh: the four RL algorithms as verl overrides. docs/recipes.md
# says where each setting comes from and how it compares with the EchoRL authors' launch script.

# GRPO: group-normalised advantages, token-mean loss.
GRPO=(algorithm.adv_estimator=grpo algorithm.norm_adv_by_std_in_grpo=True
      actor_rollout_ref.actor.loss_agg_mode=token-mean)

# Dr.GRPO (verl's docs/algo/grpo.md; the authors' own "GRPO" run is this): no std normalisation, and each
# sequence's token sum divided by a constant, the max response length. Without loss_scale_factor verl would
# divide by each micro-batch's own padded width, which varies with dynamic batch sizing.
DRGRPO=(algorithm.adv_estimator=grpo algorithm.norm_adv_by_std_in_grpo=False
        actor_rollout_ref.actor.loss_agg_mode=seq-mean-token-sum-norm
        actor_rollout_ref.actor.loss_scale_factor="$MAX_RESPONSE")

# DAPO as published (arXiv 2503.14476): clip-higher 0.2/0.28, dual-clip c=10, token-mean, no entropy bonus,
# dynamic sampling on the accuracy, and overlong reward shaping by verl's reward-loop `dapo` manager around
# our compute_score (a soft penalty over the last OVERLONG_BUFFER tokens; DAPO: 4096 of 20480 = 20%).
# The shaped score is no longer 0/1, so echo decides success on `acc`, the field the filter uses too.
# With echo on, EchoPPOTrainer keeps the all-success groups that dynamic sampling would drop
# (echo.dapo_keep_all_success): a batch then holds fewer informative (mixed) groups than the baseline's.
OVERLONG_BUFFER="${OVERLONG_BUFFER:-$((MAX_RESPONSE / 5))}"
OVERLONG_PENALTY="${OVERLONG_PENALTY:-1.0}"
DAPO=(algorithm.adv_estimator=grpo algorithm.norm_adv_by_std_in_grpo=True
      actor_rollout_ref.actor.clip_ratio_low=0.2 actor_rollout_ref.actor.clip_ratio_high=0.28
      actor_rollout_ref.actor.clip_ratio_c=10.0
      actor_rollout_ref.actor.loss_agg_mode=token-mean
      actor_rollout_ref.actor.entropy_coeff=0
      algorithm.filter_groups.enable=True algorithm.filter_groups.metric=acc
      algorithm.filter_groups.max_inflight_gen_batches=3
      reward.reward_manager.name=dapo
      +reward.reward_kwargs.max_resp_len="$MAX_RESPONSE"
      +reward.reward_kwargs.overlong_buffer_cfg.enable=True
      +reward.reward_kwargs.overlong_buffer_cfg.len="$OVERLONG_BUFFER"
      +reward.reward_kwargs.overlong_buffer_cfg.penalty_factor="$OVERLONG_PENALTY"
      +reward.reward_kwargs.overlong_buffer_cfg.log=True)
DAPO_ECHO=(echo.success_key=acc)

# GSPO: sequence-level ratio and clipping (verl's gspo policy loss and its recommended clip range).
GSPO=(algorithm.adv_estimator=grpo algorithm.norm_adv_by_std_in_grpo=True
      actor_rollout_ref.actor.policy_loss.loss_mode=gspo
      actor_rollout_ref.actor.loss_agg_mode=seq-mean-token-mean
      actor_rollout_ref.actor.clip_ratio_low=0.0003 actor_rollout_ref.actor.clip_ratio_high=0.0004)
