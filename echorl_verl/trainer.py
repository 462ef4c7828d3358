"""Trainer glue: verl's synchronous v1 PPO trainer with EchoClip selection after the old-policy pass.

What changes against `verl.trainer.ppo.v1.trainer_sync.PPOTrainerSync` (and only with echo.enable):
1. The actor worker is `EchoActorRolloutRefWorker` (counts clip tokens per global mini-batch).
2. After `_setup`, the actor's loss becomes `echo_ppo_loss` (mode=loss).
3. `_compute_advantage` first reads from TransferQueue what verl already stored: the old policy's
   per-token `entropy` (from `_compute_old_log_prob`, so no extra forward pass), `responses`,
   `response_mask`, `uid`, `rm_scores` (and the reward's extra info when success_key is not `score`);
   selects the EchoClips; then runs verl's own advantage step (mode=advantage: with the clip mask handed
   to the `echo` estimator); and writes the clip mask back as the per-token field `echo_clip_mask`.
4. Per-step `echo/*` metrics go into verl's tracking with the rest of the step's metrics.

The class keeps `trainer.v1.trainer_mode=sync`: verl treats every mode name other than "sync" as
asynchronous (replay buffer, refill, checkpointing), so the trainer is built directly by our TaskRunner
instead of being registered under a new mode name.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import ray
import torch
import transfer_queue as tq
from tensordict import TensorDict
from transfer_queue import KVBatchMeta

from verl.trainer.ppo.utils import Role
from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync
from verl.workers.utils.padding import response_to_nested

from echorl_verl.advantage import fold_clip_mask
from echorl_verl.config import EchoConfig, resolve_boundary_ids
from echorl_verl.loss import CLIP_MASK_KEY
from echorl_verl.sampling import keep_all_success_groups
from echorl_verl.selection import group_ids_from_uids, select_echo_clips, selection_metrics
from echorl_verl.workers import EchoActorRolloutRefWorker

logger = logging.getLogger(__name__)

_ACTOR_ROLES = (Role.Actor, Role.ActorRollout, Role.ActorRolloutRef)


def success_scores(data: TensorDict, extra_fields: list | None, success_key: str) -> torch.Tensor:
    """[B] verifiable score of each rollout: the reward sum, or one field of the reward's extra info."""
    if success_key == "score":
        return data["rm_scores"].sum(-1).float()
    values = []
    for row, extra in enumerate(extra_fields or []):
        info = (extra or {}).get("reward_extra_info", {}) if isinstance(extra, dict) else {}
        if success_key not in info:
            raise KeyError(
                f"echo.success_key={success_key!r}: row {row} has no such reward field; the reward function "
                f"returned {sorted(info)}. Return it from the reward function or set echo.success_key=score"
            )
        values.append(float(info[success_key]))
    return torch.tensor(values, dtype=torch.float32)


class EchoPPOTrainer(PPOTrainerSync):
    """verl's sync v1 trainer + EchoRL. With `echo.enable=false` it is PPOTrainerSync, unchanged."""

    def __init__(self, config):
        self.echo = EchoConfig.from_dict(config.get("echo"))
        self.echo_boundary_ids: torch.Tensor | None = None
        super().__init__(config)

    # --- set-up --------------------------------------------------------------------------------------
    def _build_replay_buffer(self):
        buffer = super()._build_replay_buffer()
        if self.echo.enable and self.echo.dapo_keep_all_success and getattr(buffer, "filter_groups_metric", None):
            keep_all_success_groups(buffer, self.echo.success_threshold)
        return buffer

    def _init_tokenizer(self):
        super()._init_tokenizer()
        if self.echo.enable:
            ids = resolve_boundary_ids(self.echo, self.tokenizer)
            self.echo_boundary_ids = torch.tensor(ids, dtype=torch.long)
            logger.info("echo: %d step-boundary token ids", len(ids))

    def _init_resource_pool_mgr(self):
        super()._init_resource_pool_mgr()
        if self.echo.enable:
            for role in list(self.role_worker_mapping):
                if role in _ACTOR_ROLES:
                    self.role_worker_mapping[role] = ray.remote(EchoActorRolloutRefWorker)

    def _setup(self):
        super()._setup()
        if self.echo.enable and self.echo.mode == "loss":
            self.actor_rollout_wg.set_echo_loss(self.echo.coef)

    # --- the step ------------------------------------------------------------------------------------
    def _compute_advantage(self, batch: KVBatchMeta, metrics: dict) -> KVBatchMeta:
        if not self.echo.enable:
            return super()._compute_advantage(batch, metrics)

        start = time.perf_counter()
        clip_mask, response_mask_nested = self._select_clips(batch, metrics)
        metrics["timing_s/echo_select"] = time.perf_counter() - start

        if self.echo.mode == "advantage":
            with fold_clip_mask(clip_mask):
                return super()._compute_advantage(batch, metrics)

        batch = super()._compute_advantage(batch, metrics)
        fields = TensorDict({CLIP_MASK_KEY: response_to_nested(clip_mask, response_mask_nested)}, batch_size=len(batch))
        return tq.kv_batch_put(keys=batch.keys, partition_id=batch.partition_id, fields=fields)

    def _select_clips(self, batch: KVBatchMeta, metrics: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Select the EchoClips of this batch; returns the padded [B, T] mask and verl's nested response mask."""
        fields = ["responses", "response_mask", "entropy", "uid", "rm_scores"]
        if self.echo.success_key != "score":
            fields.append("extra_fields")
        data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=fields)
        uids = np.array(data.pop("uid").tolist(), dtype=object)
        extra_fields = data.pop("extra_fields").tolist() if "extra_fields" in data.keys() else None
        response_mask_nested = data["response_mask"]
        data = data.to_padded_tensor()

        not_padding = torch.tensor([not tag.get("is_padding", False) for tag in batch.tags], dtype=torch.bool)
        success = (success_scores(data, extra_fields, self.echo.success_key) >= self.echo.success_threshold) & not_padding
        clips = select_echo_clips(
            responses=data["responses"],
            response_mask=data["response_mask"],
            entropy=data["entropy"],
            success=success,
            group_ids=group_ids_from_uids(uids),
            boundary_token_ids=self.echo_boundary_ids,
            config=self.echo,
            step=self.global_steps,
        )
        metrics.update(selection_metrics(clips, data["response_mask"]))
        return clips.mask, response_mask_nested
