"""The `echo` advantage estimator: any verl base estimator, plus EchoRL's view of degenerate groups.

Registered with verl's `register_adv_est("echo")`, so `algorithm.adv_estimator=echo` reaches it through
verl's own `compute_advantage`. Its settings are `algorithm.echo.*` (the `echo` group that
`echorl_verl.main_ppo` mirrors there): `base_estimator` picks what it wraps.

Two ways for the echo signal to reach the actor (`echo.mode`):
- `loss` (the paper): advantages are exactly the base estimator's; the clip NLL is added to the actor
  loss by `echo_ppo_loss`. Clip tokens are trained with no importance ratio and no clipping.
- `advantage`: for pipelines whose actor loss cannot be hooked, the estimator adds a constant `a` to the
  advantages of the clip tokens of degenerate groups (their base advantage is 0). At ratio 1 the PPO
  gradient of those tokens is `a * grad log pi / N_response_tokens` (token-mean), the same as the loss
  mode's `coef * grad log pi / N_clip` when `a = coef * N_response / N_clip` (the default). Unlike the
  loss mode the term goes through the PPO ratio and its clipping, the loss aggregation mode, and the
  batch (not mini-batch) normalisation.

verl passes a custom estimator only rewards, masks, uids and the config; the clip mask needs entropy
and tokens, so the trainer hands it over with `fold_clip_mask(...)` around its `compute_advantage` call.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Optional

import numpy as np
import torch

from verl.trainer.ppo import core_algos

from echorl_verl.config import EchoConfig, EchoConfigError

ECHO_ESTIMATOR = "echo"
_fold = threading.local()


@contextmanager
def fold_clip_mask(clip_mask: torch.Tensor):
    """Give the estimator the [B, T] clip mask for `echo.mode=advantage`, for the calls inside the block."""
    previous = getattr(_fold, "mask", None)
    _fold.mask = clip_mask
    try:
        yield
    finally:
        _fold.mask = previous


def degenerate_groups(scores: torch.Tensor, index: np.ndarray, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Which rows belong to an all-success group, and which to an all-fail group.

    Args:
        scores: [B] verifiable score of each rollout.
        index: [B] group id of each rollout (verl's uid strings, or ints).
        threshold: a rollout succeeds when its score >= threshold.
    Returns:
        (all_success [B] bool, all_fail [B] bool).
    """
    _, inverse = np.unique(np.asarray(index, dtype=object).astype(str), return_inverse=True)
    group = torch.as_tensor(inverse, dtype=torch.long, device=scores.device)
    success = (scores >= threshold).to(torch.long)
    num_groups = int(group.max().item()) + 1 if group.numel() else 0
    successes = torch.zeros(num_groups, dtype=torch.long, device=scores.device).index_add_(0, group, success)
    sizes = torch.zeros(num_groups, dtype=torch.long, device=scores.device).index_add_(0, group, torch.ones_like(success))
    return (successes == sizes)[group], (successes == 0)[group]


def echo_config_from_algorithm(config) -> EchoConfig:
    echo = config.get("echo", None) if config is not None else None
    if echo is None:
        raise EchoConfigError(
            "algorithm.adv_estimator=echo needs its settings under algorithm.echo (at least "
            "+algorithm.echo.base_estimator=grpo); echorl_verl.main_ppo fills them from the `echo` group"
        )
    return EchoConfig.from_dict(echo)


def base_advantages(base: str, token_level_rewards, response_mask, config, index, reward_baselines=None, **kwargs):
    """Run verl's estimator `base` the way verl's compute_advantage would."""
    if base in (ECHO_ESTIMATOR, None):
        raise EchoConfigError("echo.base_estimator must name the estimator EchoRL wraps (e.g. grpo), not echo/null")
    if base == core_algos.AdvantageEstimator.GAE.value:
        raise EchoConfigError(
            "echo.base_estimator=gae: EchoRL targets group-relative estimators (grpo, rloo, "
            "reinforce_plus_plus_baseline, ...); with a critic, all-success groups are not degenerate"
        )
    if base == core_algos.AdvantageEstimator.GRPO.value:
        # verl's compute_advantage hard-wires grpo (it never reaches the registry): mirror that call.
        return core_algos.compute_grpo_outcome_advantage(
            token_level_rewards=token_level_rewards,
            response_mask=response_mask,
            index=index,
            norm_adv_by_std_in_grpo=config.get("norm_adv_by_std_in_grpo", True),
        )
    try:
        fn = core_algos.get_adv_estimator_fn(base)
    except ValueError as err:
        raise EchoConfigError(
            f"echo.base_estimator={base!r} is not a verl advantage estimator; known: "
            f"{sorted(k for k in core_algos.ADV_ESTIMATOR_REGISTRY if k != ECHO_ESTIMATOR)}"
        ) from err
    extra = {"reward_baselines": reward_baselines} if reward_baselines is not None else {}
    return fn(token_level_rewards=token_level_rewards, response_mask=response_mask, config=config, index=index, **extra, **kwargs)


def fold_value(echo: EchoConfig, response_mask: torch.Tensor, clip_mask: torch.Tensor) -> float:
    """The advantage given to clip tokens in advantage mode (see the module docstring)."""
    if echo.advantage_value is not None:
        return float(echo.advantage_value)
    clip_tokens = float(clip_mask.sum())
    return echo.coef * float(response_mask.sum()) / clip_tokens if clip_tokens > 0 else 0.0


@core_algos.register_adv_est(ECHO_ESTIMATOR)
def compute_echo_advantage(
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    config=None,
    index: Optional[np.ndarray] = None,
    reward_baselines: Optional[torch.Tensor] = None,
    **kwargs,
):
    """EchoRL advantage estimator.

    Args:
        token_level_rewards: [B, T] rewards (the verifiable score sits at the last response token).
        response_mask: [B, T] 0/1.
        config: verl's algorithm config; settings under `config.echo`.
        index: [B] group uids.
        reward_baselines: [B] passed through to estimators that take it.
    Returns:
        (advantages [B, T], returns [B, T]): the base estimator's, plus in advantage mode the folded
        echo signal on the clip tokens of all-success groups.
    """
    echo = echo_config_from_algorithm(config)
    base = echo.base_estimator
    advantages, returns = base_advantages(base, token_level_rewards, response_mask, config, index, reward_baselines, **kwargs)
    if not echo.enable or echo.mode != "advantage":
        return advantages, returns

    clip_mask = getattr(_fold, "mask", None)
    if clip_mask is None:
        raise RuntimeError(
            "echo.mode=advantage needs the EchoClip mask, which the echorl_verl trainer computes from the "
            "old-policy entropy; run `python -m echorl_verl.main_ppo` (verl's main_ppo cannot provide it)"
        )
    clip_mask = clip_mask.to(device=advantages.device, dtype=advantages.dtype)
    if clip_mask.shape != advantages.shape:
        raise ValueError(f"echo clip mask has shape {tuple(clip_mask.shape)}, advantages {tuple(advantages.shape)}")
    if echo.scope == "all_success_groups":
        # EchoRL folds only into advantage-degenerated groups; a clip elsewhere means the trainer's and
        # the estimator's success decisions disagree (e.g. success_key=acc vs reward sums): say so.
        all_success, _ = degenerate_groups(token_level_rewards.sum(-1), index, echo.success_threshold)
        stray = (clip_mask.sum(-1) > 0) & ~all_success
        if stray.any():
            raise RuntimeError(
                f"echo: rows {stray.nonzero().flatten().tolist()[:8]} have EchoClips but their group is not "
                f"all-success by token_level_rewards >= echo.success_threshold={echo.success_threshold}; check "
                "echo.success_key / algorithm.use_kl_in_reward"
            )
    value = fold_value(echo, response_mask, clip_mask)
    return advantages + value * clip_mask * response_mask, returns


__all__ = ["compute_echo_advantage", "fold_clip_mask", "degenerate_groups", "fold_value", "ECHO_ESTIMATOR"]
