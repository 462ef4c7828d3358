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
`algorithm.adv_estimator=echo` (with `echo.base_estimator=...`) to `python -m echorl_verl.main_ppo`, which
replaces it by the base estimator before verl sees it (`check_base_estimator` at start-up). Anywhere else
echo cannot take effect (verl's own main_ppo builds neither the EchoClips nor the echo loss), so the name
never computes advantages: verl's own main_ppo is stopped at `import verl`, before Hydra and Ray
(`stop_echo_in_verl_main`, called by the plugin), and any other route that reaches the estimator
(a config file, a direct `compute_advantage` call) is stopped by `compute_echo_advantage` itself.
"""

from __future__ import annotations

import os
import sys

import torch

from verl.trainer.ppo import core_algos

from echorl_verl.config import EchoConfig, EchoConfigError

ECHO_ESTIMATOR = "echo"
#: the one line every route that asks for echo where it cannot take effect stops with
USE_ECHORL_MAIN = (
    "algorithm.adv_estimator=echo needs EchoRL's trainer, which verl's own entry points do not build (they would "
    "train the baseline): run `python -m echorl_verl.main_ppo` with the same overrides"
)


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


def check_base_estimator(name) -> str:
    """The estimator EchoRL wraps (`echo.base_estimator`, else `algorithm.adv_estimator`), refusing what it cannot wrap."""
    if name == ECHO_ESTIMATOR:
        raise EchoConfigError("algorithm.adv_estimator=echo needs echo.base_estimator naming the estimator EchoRL "
                              "wraps (e.g. echo.base_estimator=grpo)")
    where = "(echo.base_estimator, else algorithm.adv_estimator)"
    if name == core_algos.AdvantageEstimator.GAE.value:
        raise EchoConfigError(
            f"echo wraps the estimator gae {where}, verl's default: EchoRL targets group-relative estimators, where "
            "all-success groups get no signal (with a critic they are not degenerate); set algorithm.adv_estimator=grpo "
            "(or rloo, reinforce_plus_plus_baseline, ...)"
        )
    if name not in core_algos.ADV_ESTIMATOR_REGISTRY:
        raise EchoConfigError(
            f"echo wraps the estimator {name!r} {where}, which is not a verl advantage estimator; known: "
            f"{sorted(k for k in core_algos.ADV_ESTIMATOR_REGISTRY if k != ECHO_ESTIMATOR)}"
        )
    return str(name)


def _requests_echo(argv) -> bool:
    """An override `algorithm.adv_estimator=echo` (also with `+`/`++`, or the value quoted) in argv."""
    for arg in argv:
        key, sep, value = arg.lstrip("+").partition("=")
        if sep and key == "algorithm.adv_estimator" and value.strip("'\"") == ECHO_ESTIMATOR:
            return True
    return False


def _verl_entry_point(argv, verl_dir: str) -> bool:
    """True when `argv` (the interpreter's, `sys.orig_argv`) starts a verl module (`-m verl.*`) or a script in verl."""
    for i, arg in enumerate(argv[1:], start=1):
        if arg == "-m":
            module = argv[i + 1] if i + 1 < len(argv) else ""
            return module == "verl" or module.startswith("verl.")
        if not arg.startswith("-"):
            return os.path.realpath(arg).startswith(os.path.realpath(verl_dir) + os.sep)
    return False


def stop_echo_in_verl_main(argv, verl_dir: str) -> None:
    """Stop the process (one line, exit code 2) when verl's own entry point is asked for `adv_estimator=echo`.

    Called by the plugin at `import verl`, which in `python -m verl.trainer.main_ppo` happens before Hydra
    parses the overrides and before Ray starts; verl itself checks the estimator name only at the first
    advantage step. SystemExit passes through verl's plugin loader, which swallows Exceptions.
    """
    if _requests_echo(argv[1:]) and _verl_entry_point(argv, verl_dir):
        print(f"echorl_verl: {USE_ECHORL_MAIN}", file=sys.stderr, flush=True)
        raise SystemExit(2)


@core_algos.register_adv_est(ECHO_ESTIMATOR)
def compute_echo_advantage(*args, **kwargs):
    """`algorithm.adv_estimator=echo` reached by verl itself: always an error (see the module docstring).

    `echorl_verl.main_ppo` replaces the name before verl runs, so reaching this function means echo was
    asked for where it cannot take effect; returning the base estimator's advantages would train the
    baseline without a word.
    """
    raise EchoConfigError(USE_ECHORL_MAIN)


__all__ = ["compute_echo_advantage", "check_base_estimator", "fold_into_advantages", "fold_value",
           "stop_echo_in_verl_main", "ECHO_ESTIMATOR", "USE_ECHORL_MAIN"]
