"""Actor workers that know the clip-token count of each global mini-batch.

verl splits the actor update into mini-batches inside the worker (`TrainingWorker.train_mini_batch`,
optionally shuffled) and each mini-batch into micro-batches inside the engine. The loss only ever sees a
micro-batch, so the count that normalises L_clip over the global mini-batch has to be taken where the
mini-batch is whole: `train_batch`, once per mini-batch, summed over the data-parallel group. This is
what verl's engine does for `batch_num_tokens` one call deeper.

`ActorRolloutRefWorker.actor_worker_cls` is verl's own extension point for this (the Tinker worker
uses it too).

The same place measures how strong the echo signal is (`echo.grad_telemetry_every`): on the steps the
trainer marks, before the real update, two extra forward-backward passes over the mini-batch give the
gradient of `coef * L_clip` alone and of verl's `ppo_loss` alone: both norms, their ratio, and their cosine
from the dot product with a copy of the echo gradient kept in host memory (this rank's FSDP shard, float32),
so the accelerator's memory is not touched. (The cosine is not derived from the real update's norm through
`|g|^2 = |g_echo|^2 + |g_rl|^2 + 2 g_echo.g_rl`: at the ratios the paper's coefficient gives, 1e-3 to 1e-7,
that difference of near-equal numbers is rounding noise; one SmolLM2 step logged a "cosine" of -60.)
"""

from __future__ import annotations

from functools import partial

import torch
from tensordict import TensorDict

from verl.single_controller.base.decorator import Dispatch, register
from verl.utils import tensordict_utils as tu
from verl.utils.device import get_device_id
from verl.workers.engine_workers import ActorRolloutRefWorker, TrainingWorker
from verl.workers.utils.losses import ppo_loss

from echorl_verl.loss import CLIP_MASK_KEY, CLIP_TOKENS_KEY, TELEMETRY_KEY, echo_only_loss, echo_ppo_loss


def assign_global_clip_tokens(data: TensorDict, dp_group=None) -> None:
    """Write `echo_clip_tokens` = clip tokens of this mini-batch summed over the DP group (no-op without a mask).

    Same recipe as the engine's `batch_num_tokens`: a local sum, all-reduced over the data-parallel group.
    """
    if CLIP_MASK_KEY not in data.keys():
        return
    clip_mask = data[CLIP_MASK_KEY]
    local = (clip_mask.values() if clip_mask.is_nested else clip_mask).sum()
    if dp_group is not None and torch.distributed.is_initialized():
        local = local.to(get_device_id())  # NCCL reduces device tensors only
        torch.distributed.all_reduce(local, op=torch.distributed.ReduceOp.SUM, group=dp_group)
    tu.assign_non_tensor(data, **{CLIP_TOKENS_KEY: int(round(local.item()))})


def _local(grad: torch.Tensor) -> torch.Tensor:
    """This rank's shard of a gradient (FSDP2 keeps DTensors), detached."""
    return (grad.to_local() if hasattr(grad, "to_local") else grad).detach()


def _all_reduced(total: torch.Tensor | None, group) -> float:
    if total is None:
        return 0.0
    if group is not None and torch.distributed.is_initialized():
        total = total.to(get_device_id())
        torch.distributed.all_reduce(total, op=torch.distributed.ReduceOp.SUM, group=group)
    return float(total.item())


def grad_sq_norm(parameters, group=None) -> float:
    """Squared L2 norm of the gradients, over the FSDP shards of every data-parallel rank."""
    parts = [_local(p.grad).double().pow(2).sum() for p in parameters if p.grad is not None]
    return _all_reduced(sum(parts) if parts else None, group)


def saved_grads(parameters) -> list[torch.Tensor | None]:
    """A float32 copy in host memory of this rank's gradient shards (None where a parameter has no gradient)."""
    return [None if p.grad is None else _local(p.grad).to("cpu", torch.float32, copy=True) for p in parameters]


def grad_dot(parameters, saved: list[torch.Tensor | None], group=None) -> float:
    """Sum over the parameters of grad . saved (the saved_grads of the same parameters), over every rank."""
    parts = [(_local(p.grad).double() * s.to(p.grad.device).double()).sum()
             for p, s in zip(parameters, saved, strict=True) if p.grad is not None and s is not None]
    return _all_reduced(sum(parts) if parts else None, group)


def gradient_telemetry(parameters, backward_echo, backward_rl, zero_grad, group=None) -> dict[str, float]:
    """Norms, ratio and cosine of the echo and RL gradients, each from its own backward pass.

    backward_echo / backward_rl: callables that accumulate the gradient of `coef * L_clip` / of the RL loss into
    the parameters' .grad; zero_grad: clears them. The gradients are left cleared."""
    parameters = list(parameters)
    zero_grad()
    backward_echo()
    echo_sq, echo = grad_sq_norm(parameters, group), saved_grads(parameters)
    zero_grad()
    backward_rl()
    rl_sq, dot = grad_sq_norm(parameters, group), grad_dot(parameters, echo, group)
    zero_grad()
    return telemetry_metrics(echo_sq, rl_sq, dot)


def telemetry_metrics(echo_sq: float, rl_sq: float, dot: float) -> dict[str, float]:
    """Norms, ratio and cosine of the echo and RL gradients from their squared norms and their dot product."""
    echo_norm, rl_norm = echo_sq ** 0.5, rl_sq ** 0.5
    out = {"echo_grad_norm": echo_norm, "rl_grad_norm": rl_norm}
    if rl_norm > 0:
        out["echo_grad_ratio"] = echo_norm / rl_norm
    if echo_norm > 0 and rl_norm > 0:
        out["echo_grad_cos"] = dot / (echo_norm * rl_norm)
    return out


class EchoTrainingWorker(TrainingWorker):
    """TrainingWorker that writes the global clip-token count into each mini-batch before training."""

    def train_batch(self, data: TensorDict) -> TensorDict:
        assign_global_clip_tokens(data, self.engine.get_data_parallel_group())
        measured = None
        if tu.get_non_tensor_data(data=data, key=TELEMETRY_KEY, default=False) and isinstance(self.loss_fn, partial) \
                and self.loss_fn.func is echo_ppo_loss \
                and tu.get_non_tensor_data(data=data, key=CLIP_TOKENS_KEY, default=0):
            measured = self._gradient_telemetry(data)
        output = super().train_batch(data)
        if measured is not None and output is not None:
            tu.get(output, "metrics").update(measured)
        return output

    def _gradient_telemetry(self, data: TensorDict) -> dict[str, float]:
        """gradient_telemetry on this mini-batch at the current weights, through the engine; grads left zero."""
        config, coef = self.loss_fn.keywords["config"], self.loss_fn.keywords["coef"]
        group = self.engine.get_data_parallel_group()
        data = data.copy()
        # the engineering keys TrainingWorker.train_batch injects before it calls the engine
        defaults = dict(
            use_remove_padding=self.model_config.get("use_remove_padding", False),
            use_dynamic_bsz=self.engine_config.use_dynamic_bsz,
            max_token_len_per_gpu=self.engine_config.max_token_len_per_gpu,
            micro_batch_size_per_gpu=self.engine_config.micro_batch_size_per_gpu,
            use_fused_kernels=self.engine_config.use_fused_kernels,
        )
        tu.assign_non_tensor(data, **{k: v for k, v in defaults.items() if k not in data.keys()})

        def backward(loss_fn):
            return lambda: self.engine.forward_backward_batch(data.copy(), loss_fn, forward_only=False)

        with self.engine.train_mode(disable_auto_offload=tu.get(data, key="disable_auto_offload", default=False)):
            return gradient_telemetry(self.engine.module.parameters(),
                                      backward(partial(echo_only_loss, config=config, coef=coef)),
                                      backward(partial(ppo_loss, config=config)),
                                      self.engine.optimizer_zero_grad, group)


class EchoActorRolloutRefWorker(ActorRolloutRefWorker):
    """verl's ActorRolloutRefWorker with an EchoTrainingWorker as its actor and a way to install the loss."""

    actor_worker_cls = EchoTrainingWorker

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def set_echo_loss(self, coef: float):
        """Wrap the actor's verl loss (`partial(ppo_loss, config=actor_config)`) with the echo term.

        Done in the worker so that the loss keeps the ActorConfig the worker built (model config and all).
        """
        base = self.loss_fn
        if not (isinstance(base, partial) and base.func is ppo_loss):
            raise RuntimeError(
                "EchoRL's loss mode wraps verl's ppo_loss, but this actor uses "
                f"{getattr(base, 'func', base)!r} (e.g. distillation). Use echo.mode=advantage instead."
            )
        self.loss_fn = partial(echo_ppo_loss, config=base.keywords["config"], coef=float(coef))
        self.actor.set_loss_fn(self.loss_fn)
