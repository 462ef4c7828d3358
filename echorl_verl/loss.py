"""The actor-loss hook: verl's `ppo_loss` plus `coef * L_clip`.

    L = ppo_loss(...)  +  coef * L_clip,     L_clip = - sum_{clip tokens} log pi(y_t) / N_clip

`N_clip` is the number of clip tokens in the whole global mini-batch (every micro-batch, every
data-parallel rank). verl normalises its policy loss the same way (`global_batch_info`): each micro-batch
returns its partial sum divided by the global count, times dp_size because FSDP averages gradients over
ranks. The accumulated gradient is then independent of the micro-batch size and the DP layout.
`N_clip` is counted once per mini-batch by `EchoTrainingWorker.train_batch` (workers.py) and reaches
the loss as the non-tensor field `echo_clip_tokens`.

The clip mask is the per-token field `echo_clip_mask` that the trainer writes into TransferQueue
(a nested tensor like verl's `response_mask`; named so it can never clash with verl's `entropy`).
With no clip token in the mini-batch the loss is verl's `ppo_loss` unchanged (bit for bit: no NaN, no
`0 * x` term).
"""

from __future__ import annotations

import torch
from tensordict import TensorDict

from verl.utils.metric import AggregationType, Metric
from verl.workers.utils.losses import ppo_loss
from verl.workers.utils.padding import no_padding_2_padding

CLIP_MASK_KEY = "echo_clip_mask"
"""Per-token 0/1 field (nested, response positions) holding the EchoClip tokens."""

CLIP_TOKENS_KEY = "echo_clip_tokens"
"""Non-tensor field: clip tokens in the global mini-batch (all micro-batches and DP ranks)."""

TELEMETRY_KEY = "echo_grad_telemetry"
"""Non-tensor field set by the trainer on the steps whose actor update measures the gradient norms."""


def clip_nll_sum(log_prob: torch.Tensor, clip_mask: torch.Tensor) -> torch.Tensor:
    """Sum of -log pi over the clip tokens.

    Args:
        log_prob: log-probabilities of the response tokens under the current policy, [b, T] or flat [N].
        clip_mask: 0/1 mask of the clip tokens, same layout.
    Returns:
        scalar tensor. `torch.where` rather than a product so that a -inf log-prob at a masked-out
        position cannot turn into NaN.
    """
    mask = clip_mask.to(torch.bool)
    return -torch.where(mask, log_prob, torch.zeros_like(log_prob)).sum()


def response_log_probs_flat(log_probs: torch.Tensor, data: TensorDict) -> torch.Tensor:
    """The response tokens' log-probs, flat [sum of response lengths], from the engine's nested output.

    Same positions as verl's `no_padding_2_padding` (row i's response token j sits at
    `seq_end_i - resp_len_i - 1 + j` of the shifted sequence log-probs), but one gather instead of a Python
    loop over rows and a padded copy: this runs on every micro-batch, next to the model's backward.
    """
    values = log_probs.values() if log_probs.is_nested else log_probs
    prompt_lens = data["prompts"].offsets().diff()
    response_lens = data["responses"].offsets().diff()
    seq_ends = (prompt_lens + response_lens).cumsum(0)
    first = seq_ends - response_lens - 1  # flat index of each row's first response log-prob
    row_starts = response_lens.cumsum(0) - response_lens
    total = int(response_lens.sum())
    within = torch.arange(total, device=values.device) - torch.repeat_interleave(row_starts, response_lens, output_size=total)
    index = torch.repeat_interleave(first, response_lens, output_size=total) + within
    return values[index]


def echo_term(model_output, data: TensorDict, *, coef: float):
    """`coef * L_clip` of one micro-batch, or None when the global mini-batch has no clip token (or coef=0).

    Returns (term or None, the value of L_clip for the `actor/echo_loss` metric).
    """
    from verl.utils import tensordict_utils as tu

    global_clip_tokens = tu.get_non_tensor_data(data=data, key=CLIP_TOKENS_KEY, default=None)
    if global_clip_tokens is None:
        raise RuntimeError(
            f"echo_ppo_loss: the micro-batch has '{CLIP_MASK_KEY}' but no '{CLIP_TOKENS_KEY}'. The global clip-token "
            "count is set by echorl_verl.workers.EchoTrainingWorker; run training through "
            "`python -m echorl_verl.main_ppo` (or use EchoActorRolloutRefWorker as the actor worker)."
        )
    if global_clip_tokens == 0 or coef == 0:
        return None, 0.0
    clip_mask = data[CLIP_MASK_KEY]
    if data["prompts"].is_nested and clip_mask.is_nested:  # verl's no-padding layout (the engine's default)
        log_prob, clip_mask = response_log_probs_flat(model_output["log_probs"], data), clip_mask.values()
    else:
        log_prob = no_padding_2_padding(model_output["log_probs"], data)
        clip_mask = data.select(CLIP_MASK_KEY).to_padded_tensor()[CLIP_MASK_KEY]
    echo_loss = clip_nll_sum(log_prob, clip_mask) / global_clip_tokens * data["dp_size"]
    return coef * echo_loss, echo_loss.detach()


def echo_ppo_loss(config, model_output, data: TensorDict, dp_group=None, *, coef: float = 0.001):
    """Drop-in for `verl.workers.utils.losses.ppo_loss` with the echo term added.

    Bind the settings with `functools.partial(echo_ppo_loss, config=actor_config, coef=...)`; the result
    has verl's loss-function signature `(model_output, data, dp_group=None)` and works for every
    `policy_loss.loss_mode` (vanilla, gspo, clip_cov, ...) because the base term IS verl's `ppo_loss`.

    Args:
        config: verl `ActorConfig` (passed through to `ppo_loss`).
        model_output: the engine's output; `log_probs` is a nested (no-padding) tensor.
        data: the micro-batch TensorDict; may hold `echo_clip_mask` and `echo_clip_tokens`.
        coef: lambda, the weight of L_clip.
    Returns:
        (loss, metrics) like `ppo_loss`; metrics gain `actor/echo_loss`.
    """
    loss, metrics = ppo_loss(config, model_output, data, dp_group)
    if CLIP_MASK_KEY not in data.keys():
        return loss, metrics
    term, value = echo_term(model_output, data, coef=coef)
    # each micro-batch holds a partial sum of a global-batch mean
    metrics["actor/echo_loss"] = Metric(value=value, aggregation=AggregationType.SUM)
    return (loss if term is None else loss + term), metrics


def echo_only_loss(config, model_output, data: TensorDict, dp_group=None, *, coef: float = 0.001):
    """`coef * L_clip` alone, with a loss function's signature (the gradient telemetry's first backward)."""
    term, _ = echo_term(model_output, data, coef=coef)
    if term is None:
        raise RuntimeError("echo_only_loss: the mini-batch has no clip token; the telemetry skips such mini-batches")
    return term, {}


__all__ = ["echo_ppo_loss", "echo_term", "echo_only_loss", "clip_nll_sum", "CLIP_MASK_KEY", "CLIP_TOKENS_KEY", "TELEMETRY_KEY"]
