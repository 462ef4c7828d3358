"""Actor workers that know the clip-token count of each global mini-batch.

verl splits the actor update into mini-batches inside the worker (`TrainingWorker.train_mini_batch`,
optionally shuffled) and each mini-batch into micro-batches inside the engine. The loss only ever sees a
micro-batch, so the count that normalises L_clip over the global mini-batch has to be taken where the
mini-batch is whole: `train_batch`, once per mini-batch, summed over the data-parallel group. This is
what verl's engine does for `batch_num_tokens` one call deeper.

`ActorRolloutRefWorker.actor_worker_cls` is verl's own extension point for this (the Tinker worker
uses it too).
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

from echorl_verl.loss import CLIP_MASK_KEY, CLIP_TOKENS_KEY, echo_ppo_loss


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


class EchoTrainingWorker(TrainingWorker):
    """TrainingWorker that writes the global clip-token count into each mini-batch before training."""

    def train_batch(self, data: TensorDict) -> TensorDict:
        assign_global_clip_tokens(data, self.engine.get_data_parallel_group())
        return super().train_batch(data)


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
