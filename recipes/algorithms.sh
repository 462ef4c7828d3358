# Sourced by the recipe scripts: the four RL algorithms as verl overrides.
# GRPO: group-normalised advantages, token-mean loss.
GRPO=(algorithm.adv_estimator=grpo algorithm.norm_adv_by_std_in_grpo=True
      actor_rollout_ref.actor.loss_agg_mode=token-mean)
# Dr.GRPO: no std normalisation, constant-normalised token sum (verl's docs/algo/grpo.md); the authors' script.
DRGRPO=(algorithm.adv_estimator=grpo algorithm.norm_adv_by_std_in_grpo=False
        actor_rollout_ref.actor.loss_agg_mode=seq-mean-token-sum-norm)
# DAPO: clip-higher, token-mean, dynamic sampling on the accuracy (the overlong-penalty reward manager is
# left out: our reward is the plain verifier). With echo on, EchoPPOTrainer keeps the all-success groups
# that dynamic sampling would drop (echo.dapo_keep_all_success=true) so that EchoRL has its input.
DAPO=(algorithm.adv_estimator=grpo algorithm.norm_adv_by_std_in_grpo=True
      actor_rollout_ref.actor.clip_ratio_low=0.2 actor_rollout_ref.actor.clip_ratio_high=0.28
      actor_rollout_ref.actor.loss_agg_mode=token-mean
      algorithm.filter_groups.enable=True algorithm.filter_groups.metric=acc
      algorithm.filter_groups.max_inflight_gen_batches=3)
# GSPO: sequence-level ratio and clipping (verl's gspo policy loss).
GSPO=(algorithm.adv_estimator=grpo algorithm.norm_adv_by_std_in_grpo=True
      actor_rollout_ref.actor.policy_loss.loss_mode=gspo
      actor_rollout_ref.actor.loss_agg_mode=seq-mean-token-mean
      actor_rollout_ref.actor.clip_ratio_low=0.0003 actor_rollout_ref.actor.clip_ratio_high=0.0004)
