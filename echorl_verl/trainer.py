"""Trainer glue: verl's synchronous v1 PPO trainer with EchoClip selection after the old-policy pass.

What changes against `verl.trainer.ppo.v1.trainer_sync.PPOTrainerSync` (and only with echo.enable):
1. The actor worker is `EchoActorRolloutRefWorker` (counts clip tokens per global mini-batch).
2. After `_setup`, the actor's loss becomes `echo_ppo_loss` (mode=loss).
3. `_compute_advantage` first reads from TransferQueue what verl already stored: the old policy's
   per-token `entropy` (from `_compute_old_log_prob`, so no extra forward pass), `responses`,
   `response_mask`, `uid`, `rm_scores` (and the reward's extra info when success_key is not `score`);
   selects the EchoClips; runs verl's own advantage step unchanged; then either writes the clip mask as
   the per-token field `echo_clip_mask` (mode=loss) or folds it into the advantages verl wrote
   (mode=advantage, `echorl_verl.advantage.fold_into_advantages`).
4. Per-step `echo/*` metrics go into verl's tracking with the rest of the step's metrics; every
   `echo.grad_telemetry_every` steps the actor also measures the echo and RL gradient norms.
5. With `trainer.rollout_data_dir` set, each dumped rollout carries its clip facts (key `echo`).

The class keeps `trainer.v1.trainer_mode=sync`: verl treats every mode name other than "sync" as
asynchronous (replay buffer, refill, checkpointing), so `echorl_verl.main_ppo` has verl's TaskRunner build
this class for the "sync" mode instead of registering a new mode name.
"""

from __future__ import annotations

import logging
import os
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

from echorl_verl.advantage import fold_into_advantages
from echorl_verl.config import EchoConfig, resolve_boundary_ids
from echorl_verl.loss import CLIP_MASK_KEY, TELEMETRY_KEY
from echorl_verl.sampling import keep_all_success_groups
from echorl_verl.selection import group_ids_from_uids, select_echo_clips, selection_metrics
from echorl_verl.workers import EchoActorRolloutRefWorker

logger = logging.getLogger(__name__)

_ACTOR_ROLES = (Role.Actor, Role.ActorRollout, Role.ActorRolloutRef)
#: environment switch: the rollout dump's clip facts also carry each row's token ids and clip mask (tests)
DUMP_TOKEN_IDS = "ECHORL_DUMP_TOKEN_IDS"


def success_scores(data: TensorDict, extra_fields: list | None, success_key: str) -> torch.Tensor:
    """[B] verifiable score of each rollout: the reward sum, or one field of the reward's extra info.

    `extra_fields` is verl's per-row `extra_fields` (each a dict holding `reward_extra_info`); rows that
    verl padded in carry none and score 0 here (the caller masks them out anyway).
    """
    if success_key == "score":
        return data["rm_scores"].sum(-1).float()
    values = []
    for row, extra in enumerate(extra_fields or []):
        extra = getattr(extra, "data", extra)
        info = (extra or {}).get("reward_extra_info", {}) if isinstance(extra, dict) else {}
        if success_key not in info:
            raise KeyError(
                f"echo.success_key={success_key!r}: row {row} has no such reward field; the reward function "
                f"returned {sorted(info)}. Return it from the reward function or set echo.success_key=score"
            )
        values.append(float(info[success_key]))
    return torch.tensor(values, dtype=torch.float32)


def infra_error_rows(extra_fields: list) -> float:
    """Rows whose reward could not be computed (the sandbox failed, not the model): `infra_error` of the reward."""
    total = 0.0
    for extra in extra_fields:
        extra = getattr(extra, "data", extra)
        info = extra.get("reward_extra_info", {}) if isinstance(extra, dict) else {}
        total += float(info.get("infra_error", 0.0) or 0.0)
    return total


class EchoPPOTrainer(PPOTrainerSync):
    """verl's sync v1 trainer + EchoRL. With `echo.enable=false` it is PPOTrainerSync, unchanged."""

    def __init__(self, config):
        self.echo = EchoConfig.from_dict(config.get("echo"))  # parsed once in this (TaskRunner) process
        self.echo_boundary_ids: torch.Tensor | None = None
        self._echo_facts: dict[str, dict] = {}
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
        clip_mask, not_padding, response_mask_nested = self._select_clips(batch, metrics)
        metrics["timing_s/echo_select"] = time.perf_counter() - start

        batch = super()._compute_advantage(batch, metrics)  # verl's own step, exactly the baseline's
        if self.echo.mode == "advantage":
            return self._fold_advantages(batch, clip_mask, not_padding, metrics)
        # the nested layout of verl's own advantages (it, too, uses the response mask read before its step)
        fields = TensorDict({CLIP_MASK_KEY: response_to_nested(clip_mask, response_mask_nested)}, batch_size=len(batch))
        return tq.kv_batch_put(keys=batch.keys, partition_id=batch.partition_id, fields=fields)

    def _fold_advantages(self, batch: KVBatchMeta, clip_mask, not_padding, metrics: dict) -> KVBatchMeta:
        """mode=advantage: advantages verl computed + a * clip mask, written back to TransferQueue."""
        data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=["advantages", "response_mask"])
        response_mask_nested = data["response_mask"]
        padded = data.to_padded_tensor()
        response_mask = padded["response_mask"] * not_padding.unsqueeze(-1).to(padded["response_mask"].dtype)
        advantages, value = fold_into_advantages(padded["advantages"], response_mask, clip_mask, self.echo)
        metrics["echo/fold_value"] = value
        fields = TensorDict({"advantages": response_to_nested(advantages, response_mask_nested)}, batch_size=len(batch))
        return tq.kv_batch_put(keys=batch.keys, partition_id=batch.partition_id, fields=fields)

    def _select_clips(self, batch: KVBatchMeta, metrics: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Select the EchoClips of this batch: the padded [B, T] mask, [B] not-padding rows, verl's nested response mask."""
        dump = bool(self.config.trainer.get("rollout_data_dir"))
        fields = ["responses", "response_mask", "entropy", "uid", "rm_scores", "extra_fields"]
        if dump and os.environ.get(DUMP_TOKEN_IDS) == "1":
            fields.append("prompts")
        data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=fields)
        uids = np.array(data.pop("uid").tolist(), dtype=object)
        extra_fields = data.pop("extra_fields").tolist()
        prompts = [p.tolist() for p in data.pop("prompts").unbind()] if "prompts" in data.keys() else None
        response_mask_nested = data["response_mask"]
        data = data.to_padded_tensor()
        metrics["reward/infra_error_rows"] = infra_error_rows(extra_fields)

        not_padding = torch.tensor([not tag.get("is_padding", False) for tag in batch.tags], dtype=torch.bool)
        if self.echo.success_key != "score":  # rows verl padded in have no reward info: never a success
            extra_fields = [e if keep else {"reward_extra_info": {self.echo.success_key: 0.0}}
                            for e, keep in zip(extra_fields, not_padding.tolist())]
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
        if dump:
            self._remember_clip_facts(batch.keys, clips, data, prompts)
        return clips.mask, not_padding, response_mask_nested

    def _update_actor(self, batch: KVBatchMeta, metrics: dict) -> KVBatchMeta:
        every = self.echo.grad_telemetry_every if self.echo.enable else 0
        batch.extra_info[TELEMETRY_KEY] = bool(every) and self.echo.mode == "loss" and self.global_steps % every == 0
        return super()._update_actor(batch, metrics)

    # --- the rollout dump ------------------------------------------------------------------------------
    def _remember_clip_facts(self, keys: list[str], clips, data: TensorDict, prompts: list | None) -> None:
        from echorl_verl.clip_facts import clip_facts

        facts = clip_facts(clips, data["responses"], data["response_mask"], self.tokenizer)
        if prompts is not None:  # ECHORL_DUMP_TOKEN_IDS=1: what a recomputation of the echo term needs
            for row, (fact, prompt) in enumerate(zip(facts, prompts)):
                valid = data["response_mask"][row].bool()
                fact.update(prompt_ids=prompt, response_ids=data["responses"][row][valid].tolist(),
                            clip_mask=clips.mask[row][valid].int().tolist())
        self._echo_facts = {key: fact for key, fact in zip(keys, facts)}

    def _dump_generations(self, inputs, outputs, gts, scores, reward_extra_infos_dict, dump_path):
        """verl's rollout dump, plus each rollout's clip facts under `echo` (validation dumps have none)."""
        uids = reward_extra_infos_dict.get("uid")
        if self.echo.enable and uids is not None and self._echo_facts:
            reward_extra_infos_dict = dict(reward_extra_infos_dict, echo=[self._echo_facts.get(uid) for uid in uids])
            self._echo_facts = {}
        return super()._dump_generations(inputs, outputs, gts, scores, reward_extra_infos_dict, dump_path)
