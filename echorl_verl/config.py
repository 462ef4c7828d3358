"""EchoConfig: every EchoRL setting in one dataclass.

It is the `echo` group of `echorl_verl/configs/echo_ppo_trainer.yaml`, so on the command line each field is
an override such as `echo.coef=0.01` or `echo.clip_mode=full_response`. Bad values fail where the object
is made (`__post_init__`, so also `EchoConfig(...)` and `dataclasses.replace`), unknown keys in
`EchoConfig.from_dict`; each with a message that names the key and the valid values.

Where the paper is silent (see docs/method.md) the default is our choice, and the field says so.

The object is frozen and an EchoConfig that exists is a valid one: it is parsed once per process
(`from_dict`: in the driver by `main_ppo.prepare_config`, in the TaskRunner by the trainer, since the
config crosses Ray as a DictConfig), and nothing downstream re-checks or changes it;
`dataclasses.replace(config, ...)` builds a new, validated object. The lists of choices are defined where
they are implemented (clip modes: the span table of `clip_modes.py`; step aggregations: `steps.py`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Optional

from echorl_verl.clip_modes import CLIP_SPANS
from echorl_verl.steps import STEP_AGGREGATIONS

SCOPES = ("all_success_groups", "all_successes")
CLIP_MODES = tuple(CLIP_SPANS)
PER_GROUP = ("all", "one")
SIGNAL_MODES = ("loss", "advantage")


class EchoConfigError(ValueError):
    """A bad EchoRL setting. The message names the key, the value and what is valid."""


@dataclass(frozen=True)
class EchoConfig:
    enable: bool = True
    """Turn EchoRL on. With `false`, `python -m echorl_verl.main_ppo` trains exactly like verl's main_ppo
    (no clip selection, verl's own `ppo_loss`), which is how the recipes run their baselines."""

    coef: float = 0.001
    """lambda in `L = L_RL + lambda * L_clip`. 0.001 is the value in the authors' launch script."""

    mode: str = "loss"
    """How the echo signal reaches the actor. `loss` (the paper): an auxiliary token-mean NLL over the clip
    tokens, added by the actor-loss hook `echo_ppo_loss`. `advantage`: for pipelines whose actor loss cannot
    be hooked, the signal is folded into the advantages of the clip tokens (see docs/method.md for how the
    two differ: the folded form goes through the PPO ratio and clipping)."""

    scope: str = "all_success_groups"
    """Which success rollouts may give a clip. `all_success_groups` (default, the paper's target): only
    rollouts of groups in which every rollout succeeded, i.e. the advantage-degenerated groups.
    `all_successes`: every success rollout of any group (a wider, ablation setting)."""

    per_group: str = "all"
    """`all`: every eligible rollout of a group gives a clip (default). `one`: only the rollout whose peak
    step entropy is highest in its group (ties: the earliest row)."""

    clip_mode: str = "peak_prefix"
    """What is supervised. `peak_prefix` (the method): the response prefix that ends with the highest-
    entropy step. Ablations: `peak_step` (that step alone), `full_response` (positive-sample SFT, the naive
    baseline), `random_prefix` (a prefix ending at a uniformly drawn step boundary; control, seeded)."""

    step_agg: str = "mean"
    """How token entropies make a step entropy: `mean` (default, the natural reading), `max` or `sum`."""

    min_step_tokens: int = 1
    """Steps with fewer tokens cannot be the peak (a lone blank line must not win on one noisy token).
    1 = every step is a candidate. A sample with no candidate step gets no clip (counted in a metric)."""

    boundary_token_ids: Optional[tuple[int, ...]] = None
    """Token ids that end a step (the boundary token belongs to the step it ends). None (default): every
    token of the tokenizer whose decoded text contains a newline, which works for any tokenizer; the
    authors' Qwen2.5 ids are [198, 271]. Ids outside the vocabulary are an error at start-up."""

    success_threshold: float = 0.5
    """A rollout is a success when its verifiable score is >= this. 0.5 separates both 0/1 rewards and
    DAPO's -1/+1 rewards."""

    success_key: str = "score"
    """Which number is the verifiable score: `score` = the sequence reward (sum of verl's
    token_level_scores); any other name = that field of the reward function's extra info (e.g. `acc`).
    A missing field is an error naming the fields that exist, never a silent fallback."""

    base_estimator: Optional[str] = None
    """The advantage estimator EchoRL wraps (`grpo`, `rloo`, `reinforce_plus_plus_baseline`, ...). None:
    take it from `algorithm.adv_estimator`. `grpo` honours `algorithm.norm_adv_by_std_in_grpo` (false =
    Dr.GRPO-style, as in the authors' script)."""

    advantage_value: Optional[float] = None
    """Only for mode=advantage: the advantage added to each clip token. None (default): chosen per batch
    as `coef * response_tokens / clip_tokens`, which makes the first-order gradient at ratio 1 equal to
    the loss mode's under token-mean aggregation."""

    dapo_keep_all_success: bool = True
    """With DAPO dynamic sampling on (`algorithm.filter_groups.enable`), keep the all-success groups that
    it would drop (they are EchoRL's input; their RL advantages stay 0) and drop only the other
    zero-variance groups. false = DAPO's filter unchanged, and echo then sees no all-success group."""

    seed: int = 0
    """Seed of the random_prefix ablation (combined with the training step, so runs are reproducible)."""

    grad_telemetry_every: int = 0
    """Every N training steps (0 = never, the default), measure in the actor the gradient norm of the echo
    term (`coef * L_clip`) and of verl's RL loss on each mini-batch, logged as `actor/echo_grad_norm`,
    `actor/rl_grad_norm`, `actor/echo_grad_ratio` and `actor/echo_grad_cos`; verl logs each as the mean over
    the step's mini-batches, so one mini-batch whose groups are nearly all degenerate (a near-zero RL gradient)
    can set a step's ratio: read the median over several steps (`report summary`). It costs two extra
    forward-backward passes over the batch on those steps, and a float32 copy of the rank's gradient shard in
    host memory while they run (mode=loss only)."""

    @classmethod
    def from_dict(cls, values: Any) -> "EchoConfig":
        """Build from a dict or DictConfig; unknown keys and bad values raise EchoConfigError."""
        if values is None:
            return cls()
        if not isinstance(values, dict):
            from omegaconf import DictConfig, OmegaConf

            if isinstance(values, DictConfig):
                values = OmegaConf.to_container(values, resolve=True)
            elif isinstance(values, EchoConfig):
                return values
            else:
                raise EchoConfigError(f"echo: expected a mapping of settings, got {type(values).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise EchoConfigError(f"echo: unknown key(s) {unknown}; valid keys are {sorted(known)}")
        return cls(**values)

    def __post_init__(self) -> None:
        ids = self.boundary_token_ids
        if ids is not None and not isinstance(ids, (str, bytes, tuple)) and hasattr(ids, "__iter__"):
            object.__setattr__(self, "boundary_token_ids", tuple(ids))  # a tuple: the object can be hashed and shared
        self.validate()

    def validate(self, vocab_size: Optional[int] = None) -> None:
        """Check every field (construction does); with `vocab_size`, also that boundary ids lie in the vocabulary.

        The object is not changed. Raises EchoConfigError naming the key, the value and what is valid.
        """

        def choice(key: str, valid: tuple[str, ...]) -> None:
            if getattr(self, key) not in valid:
                raise EchoConfigError(f"echo.{key}={getattr(self, key)!r} is not valid; choose one of {list(valid)}")

        for key, kind in (("enable", bool), ("dapo_keep_all_success", bool)):
            if not isinstance(getattr(self, key), kind):
                raise EchoConfigError(f"echo.{key} must be true or false, got {getattr(self, key)!r}")
        if not isinstance(self.coef, (int, float)) or isinstance(self.coef, bool) or not (self.coef >= 0):
            raise EchoConfigError(f"echo.coef must be a finite number >= 0, got {self.coef!r}")
        if self.coef == float("inf"):
            raise EchoConfigError("echo.coef must be finite, got inf")
        choice("mode", SIGNAL_MODES)
        choice("scope", SCOPES)
        choice("per_group", PER_GROUP)
        choice("clip_mode", CLIP_MODES)
        choice("step_agg", STEP_AGGREGATIONS)
        if not isinstance(self.min_step_tokens, int) or isinstance(self.min_step_tokens, bool) or self.min_step_tokens < 1:
            raise EchoConfigError(f"echo.min_step_tokens must be an integer >= 1, got {self.min_step_tokens!r}")
        if not isinstance(self.success_threshold, (int, float)) or self.success_threshold != self.success_threshold:
            raise EchoConfigError(f"echo.success_threshold must be a number, got {self.success_threshold!r}")
        if not isinstance(self.success_key, str) or not self.success_key:
            raise EchoConfigError(f"echo.success_key must be a non-empty string, got {self.success_key!r}")
        if self.advantage_value is not None and not (
            isinstance(self.advantage_value, (int, float)) and 0 <= self.advantage_value < float("inf")
        ):
            raise EchoConfigError(f"echo.advantage_value must be null or a finite number >= 0, got {self.advantage_value!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise EchoConfigError(f"echo.seed must be an integer, got {self.seed!r}")
        if not isinstance(self.grad_telemetry_every, int) or isinstance(self.grad_telemetry_every, bool) \
                or self.grad_telemetry_every < 0:
            raise EchoConfigError(f"echo.grad_telemetry_every must be an integer >= 0 (0 = off), got {self.grad_telemetry_every!r}")
        if self.boundary_token_ids is not None:
            ids = list(self.boundary_token_ids)
            if not ids or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
                raise EchoConfigError(
                    f"echo.boundary_token_ids must be null (derive from the tokenizer) or a non-empty list of "
                    f"integer token ids, got {self.boundary_token_ids!r}"
                )
            bad = [i for i in ids if i < 0 or (vocab_size is not None and i >= vocab_size)]
            if bad:
                where = f"[0, {vocab_size})" if vocab_size is not None else ">= 0"
                raise EchoConfigError(
                    f"echo.boundary_token_ids {bad} lie outside the vocabulary {where}; give ids of the model's "
                    f"tokenizer or null to derive them"
                )


def boundary_ids_from_tokenizer(tokenizer) -> list[int]:
    """Every token id whose decoded text contains a newline: the step boundaries of any tokenizer.

    For Qwen2.5 this finds 198 ("\\n") and 271 ("\\n\\n") among others (e.g. "\\n\\n\\n", ".\\n").
    Raises EchoConfigError if the tokenizer has no such token, since then no response has steps.
    """
    vocab_size = len(tokenizer)
    ids = [i for i in range(vocab_size) if "\n" in tokenizer.decode([i])]
    if not ids:
        raise EchoConfigError(
            "echo.boundary_token_ids: the tokenizer has no token whose text contains a newline; "
            "set echo.boundary_token_ids to the ids that end a reasoning step"
        )
    return ids


def resolve_boundary_ids(config: EchoConfig, tokenizer) -> list[int]:
    """The configured ids checked against the tokenizer's vocabulary, or the derived ones."""
    if config.boundary_token_ids is None:
        return boundary_ids_from_tokenizer(tokenizer)
    config.validate(vocab_size=len(tokenizer))
    return list(config.boundary_token_ids)


__all__ = [
    "EchoConfig",
    "EchoConfigError",
    "boundary_ids_from_tokenizer",
    "resolve_boundary_ids",
    "SCOPES",
    "CLIP_MODES",
    "STEP_AGGREGATIONS",
    "PER_GROUP",
    "SIGNAL_MODES",
]
