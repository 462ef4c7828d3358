"""EchoRL in the advantages: the fold of `echo.mode=advantage`, and the registered `echo` estimator name.

Two ways for the echo signal to reach the actor (`echo.mode`):
- `loss` (the paper): advantages are exactly the base estimator's; the clip NLL is added to the actor
  loss by `echo_ppo_loss`. Clip tokens are trained with no importance ratio and no clipping.
- `advantage`: for pipelines whose actor loss cannot be hooked, a constant `a` is added to the
  advantages of the clip tokens (`fold_into_advantages`). At ratio 1 the PPO gradient of those tokens is
  `a * grad log pi / N_response_tokens` (token-mean), the same as the loss mode's
  `coef * grad log pi / N_clip` when `a = coef * N_response / N_clip` (the default). Unlike the loss
  mode the term goes through the PPO ratio and its clipping, the loss aggregation mode, and the batch
  (not mini-batch) normalisation.

Where the fold happens: after verl's own advantage step, in `EchoPPOTrainer._compute_advantage`, on the
advantages verl wrote. verl's step runs with the base estimator's own name, so every path it has (the
multi-trajectory GRPO path of `trainer/ppo/v1/utils.py` included) gives exactly the baseline's
advantages, and the fold is added on top: advantages = base + a * clip_mask, in every case.

The name `echo` is registered with verl's `register_adv_est` so that users can write
`algorithm.adv_estimator=echo` (with `echo.base_estimator=...`): `echorl_verl.main_ppo` replaces it by the
base estimator before verl sees it. Reached directly (verl's own main_ppo, or a direct
`compute_advantage` call), `compute_echo_advantage` returns the base estimator's advantages in loss mode
and refuses advantage mode, which needs the EchoClips only the echorl trainer selects.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from verl.trainer.ppo import core_algos

from echorl_verl.config import EchoConfig, EchoConfigError

ECHO_ESTIMATOR = "echo"


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


def fold_value(echo: EchoConfig, response_mask: torch.Tensor, clip_mask: torch.Tensor) -> float:
    """The advantage given to clip tokens in advantage mode (see the module docstring)."""
    if echo.advantage_value is not None:
        return float(echo.advantage_value)
    clip_tokens = float(clip_mask.sum())
    return echo.coef * float(response_mask.sum()) / clip_tokens if clip_tokens > 0 else 0.0


def fold_into_advantages(
    advantages: torch.Tensor, response_mask: torch.Tensor, clip_mask: torch.Tensor, echo: EchoConfig
) -> tuple[torch.Tensor, float]:
    """advantages [B, T] + a * clip_mask [B, T] on response tokens; returns (folded advantages, a).

    `response_mask` counts the batch's response tokens for the default `a`; rows that verl padded in
    (`is_padding`) must already be 0 in it and in the clip mask.
    """
    if clip_mask.shape != advantages.shape:
        raise ValueError(f"echo clip mask has shape {tuple(clip_mask.shape)}, advantages {tuple(advantages.shape)}")
    clip_mask = clip_mask.to(device=advantages.device, dtype=advantages.dtype) * response_mask.to(advantages.dtype)
    value = fold_value(echo, response_mask, clip_mask)
    return advantages + value * clip_mask, value


def base_estimator_name(algorithm_config) -> str:
    """`echo.base_estimator` from verl's algorithm config, refusing what EchoRL cannot wrap."""
    echo = algorithm_config.get("echo", None) if algorithm_config is not None else None
    base = echo.get("base_estimator", None) if echo is not None else None
    if base in (ECHO_ESTIMATOR, None):
        raise EchoConfigError(
            "algorithm.adv_estimator=echo needs algorithm.echo.base_estimator naming the estimator EchoRL wraps "
            "(e.g. grpo), not echo/null; echorl_verl.main_ppo fills it from echo.base_estimator"
        )
    if base == core_algos.AdvantageEstimator.GAE.value:
        raise EchoConfigError(
            "echo.base_estimator=gae: EchoRL targets group-relative estimators (grpo, rloo, "
            "reinforce_plus_plus_baseline, ...); with a critic, all-success groups are not degenerate"
        )
    if base not in core_algos.ADV_ESTIMATOR_REGISTRY:
        raise EchoConfigError(
            f"echo.base_estimator={base!r} is not a verl advantage estimator; known: "
            f"{sorted(k for k in core_algos.ADV_ESTIMATOR_REGISTRY if k != ECHO_ESTIMATOR)}"
        )
    return str(base)


@core_algos.register_adv_est(ECHO_ESTIMATOR)
def compute_echo_advantage(
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    config=None,
    index: Optional[np.ndarray] = None,
    reward_baselines: Optional[torch.Tensor] = None,
    **kwargs,
):
    """`algorithm.adv_estimator=echo` reached directly: the base estimator's advantages (loss mode only).

    Args:
        token_level_rewards: [B, T] rewards (the verifiable score sits at the last response token).
        response_mask: [B, T] 0/1.
        config: verl's algorithm config; settings under `config.echo` (at least `base_estimator`).
        index: [B] group uids.
        reward_baselines: [B] passed through to estimators that take it.
    Returns:
        (advantages [B, T], returns [B, T]) of the base estimator, called through verl's registry.
    """
    base = base_estimator_name(config)
    echo = EchoConfig.from_dict(config.echo)
    if echo.enable and echo.mode == "advantage":
        raise RuntimeError(
            "echo.mode=advantage folds the EchoClips into the advantages after verl's advantage step, in the "
            "echorl_verl trainer; run `python -m echorl_verl.main_ppo` (verl's main_ppo has no EchoClips)"
        )
    extra = {"reward_baselines": reward_baselines} if reward_baselines is not None else {}
    if base == core_algos.AdvantageEstimator.GRPO.value:
        extra["norm_adv_by_std_in_grpo"] = config.get("norm_adv_by_std_in_grpo", True)
    fn = core_algos.get_adv_estimator_fn(base)
    return fn(token_level_rewards=token_level_rewards, response_mask=response_mask, config=config, index=index,
              **extra, **kwargs)


__all__ = ["compute_echo_advantage", "fold_into_advantages", "degenerate_groups", "fold_value", "ECHO_ESTIMATOR"]
