"""Trainer glue: verl's synchronous v1 PPO trainer with EchoClip selection after the old-policy pass.

`echorl_verl.main_ppo` builds this class for every run in verl's sync mode, the baselines included. What it
adds to `verl.trainer.ppo.v1.trainer_sync.PPOTrainerSync`:
- on every run, echo on or off: the step metric `reward/infra_error_rows` (rollouts whose reward could not be
  computed: the sandbox failed, not the model), counted over the step's real rows after verl's own metrics;
- on every run: checkpoint retention counted on disk (`echorl_verl.checkpoints.prune`: verl's forgets the
  checkpoints of an earlier attempt and leaves each `global_step_N/` folder behind);
- with echo.enable only:
  1. The actor worker is `EchoActorRolloutRefWorker` (counts clip tokens per global mini-batch).
  2. After `_setup`, the actor's loss becomes `echo_ppo_loss` (mode=loss).
  3. `_compute_advantage` is fetch -> success mask -> select -> verl's own advantage step -> put. Fetch reads
     from TransferQueue what verl already stored: the old policy's per-token `entropy` (from
     `_compute_old_log_prob`, so no extra forward pass), `responses`, `response_mask`, `uid`, `rm_scores`
     (and the rows' `extra_fields` when echo.success_key is not `score`). Put writes the clip mask as the
     per-token field `echo_clip_mask` (mode=loss) or folds it into the advantages verl wrote
     (mode=advantage, `echorl_verl.advantage.fold_into_advantages`).
  4. Per-step `echo/*` metrics go into verl's tracking with the rest of the step's metrics; every
     `echo.grad_telemetry_every` steps the actor also measures the echo and RL gradient norms.
  5. With `trainer.rollout_data_dir` set, each dumped rollout carries its clip facts (key `echo`); with
     ECHORL_DUMP_TOKEN_IDS=1 (tests) also its prompt and response ids, clip mask and the advantages the actor
     trained on, what a recomputation of the echo term or of the fold needs.

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
from echorl_verl.checkpoints import prune
from echorl_verl.config import EchoConfig, resolve_boundary_ids
from echorl_verl.errors import failure_line
from echorl_verl.loss import CLIP_MASK_KEY, TELEMETRY_KEY
from echorl_verl.sampling import keep_all_success_groups
from echorl_verl.selection import EchoClips, group_ids_from_uids, select_echo_clips, selection_metrics
from echorl_verl.workers import EchoActorRolloutRefWorker

logger = logging.getLogger(__name__)

_ACTOR_ROLES = (Role.Actor, Role.ActorRollout, Role.ActorRolloutRef)
#: environment switch (tests): the rollout dump's clip facts also carry each row's token ids, clip mask and advantages
DUMP_TOKEN_IDS = "ECHORL_DUMP_TOKEN_IDS"


def reward_extra_info(extra) -> dict:
    """The reward's extra info of one row of verl's `extra_fields` ({} where the row has none).

    `extra` is the row's `extra_fields` as TransferQueue returns it: a dict holding `reward_extra_info`, or a
    NonTensorData-like wrapper around one (`.data`).
    """
    extra = getattr(extra, "data", extra)
    info = extra.get("reward_extra_info") if isinstance(extra, dict) else None
    return info if isinstance(info, dict) else {}


def not_padding_rows(batch: KVBatchMeta) -> torch.Tensor:
    """[B] bool: the rows that are not verl's padding (`upsample_batch_to_divisible_size` tags those `is_padding`).

    A padding row is a copy of a real row's fields with zero rewards: its `extra_fields` still hold that row's
    reward info, so reward facts must skip it.
    """
    return torch.tensor([not tag.get("is_padding", False) for tag in batch.tags], dtype=torch.bool)


def success_scores(rm_scores: torch.Tensor, extra_fields: list | None, success_key: str,
                   rows: list[int]) -> torch.Tensor:
    """[len(rows)] verifiable score of the given batch rows: the reward sum, or one field of the reward's extra info.

    rm_scores: [B, T] verl's per-token reward; extra_fields: verl's per-row `extra_fields` (read only when
    success_key is not `score`); rows: batch row indices (the real rows).
    """
    if success_key == "score":
        return rm_scores[rows].sum(-1).float()
    values = []
    for row in rows:
        info = reward_extra_info(extra_fields[row])
        if success_key not in info:
            raise KeyError(
                f"echo.success_key={success_key!r}: row {row} has no such reward field; the reward function "
                f"returned {sorted(info)}. Return it from the reward function or set echo.success_key=score"
            )
        values.append(float(info[success_key]))
    return torch.tensor(values, dtype=torch.float32)


def success_mask(rm_scores: torch.Tensor, extra_fields: list | None, not_padding: torch.Tensor,
                 echo: EchoConfig) -> torch.Tensor:
    """[B] bool: a real row whose verifiable score reaches echo.success_threshold; padding rows never succeed."""
    rows = not_padding.nonzero().squeeze(1).tolist()
    success = torch.zeros_like(not_padding)
    success[rows] = success_scores(rm_scores, extra_fields, echo.success_key, rows) >= echo.success_threshold
    return success


def infra_error_rows(extra_fields: list, not_padding: torch.Tensor) -> float:
    """Real rows whose reward could not be computed (the sandbox failed, not the model): `infra_error` of the reward."""
    return float(sum(float(reward_extra_info(extra).get("infra_error", 0.0) or 0.0)
                     for extra, keep in zip(extra_fields, not_padding.tolist()) if keep))


class RolloutEngineFailed(RuntimeError):
    """No rollout of a step survived because the rollout engine failed (the message names its error)."""


class EchoPPOTrainer(PPOTrainerSync):
    """verl's sync v1 trainer + EchoRL. With `echo.enable=false` it is PPOTrainerSync + `reward/infra_error_rows`."""

    def __init__(self, config):
        self.echo = EchoConfig.from_dict(config.get("echo"))  # parsed once in this (TaskRunner) process
        self.echo_boundary_ids: torch.Tensor | None = None
        self._echo_facts: dict[str, dict] = {}  # batch key -> clip facts, from selection until the rollout dump
        self._dump_token_ids = os.environ.get(DUMP_TOKEN_IDS) == "1"
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
        data, extra_fields, response_mask_nested = self._fetch_selection_inputs(batch)
        not_padding = not_padding_rows(batch)
        success = success_mask(data["rm_scores"], extra_fields, not_padding, self.echo)
        clips = self._select(batch.keys, data, success, metrics)
        metrics["timing_s/echo_select"] = time.perf_counter() - start

        batch = super()._compute_advantage(batch, metrics)  # verl's own step, exactly the baseline's
        if self.echo.mode == "advantage":
            return self._fold_advantages(batch, clips.mask, not_padding, metrics)
        return self._put_clip_mask(batch, clips.mask, response_mask_nested)

    def _fetch_selection_inputs(self, batch: KVBatchMeta) -> tuple[TensorDict, list | None, torch.Tensor]:
        """What selection reads from TransferQueue: (padded [B, T] responses, response_mask, entropy, rm_scores
        and [B] `group_ids`; the rows' extra_fields, or None when success is the reward sum; verl's nested
        response mask, whose layout the put step reuses)."""
        fields = ["responses", "response_mask", "entropy", "uid", "rm_scores"]
        if self.echo.success_key != "score":
            fields.append("extra_fields")
        data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=fields)
        group_ids = group_ids_from_uids(np.array(data.pop("uid").tolist(), dtype=object))
        extra_fields = data.pop("extra_fields").tolist() if "extra_fields" in data.keys() else None
        response_mask_nested = data["response_mask"]
        data = data.to_padded_tensor()
        data["group_ids"] = group_ids
        return data, extra_fields, response_mask_nested

    def _select(self, keys: list[str], data: TensorDict, success: torch.Tensor, metrics: dict) -> EchoClips:
        """The batch's EchoClips; their metrics go into `metrics`, their facts (with the rollout dump on) are kept for it."""
        clips = select_echo_clips(
            responses=data["responses"],
            response_mask=data["response_mask"],
            entropy=data["entropy"],
            success=success,
            group_ids=data["group_ids"],
            boundary_token_ids=self.echo_boundary_ids,
            config=self.echo,
            step=self.global_steps,
        )
        metrics.update(selection_metrics(clips, data["response_mask"]))
        if self.config.trainer.get("rollout_data_dir"):
            self._remember_clip_facts(keys, clips, data)
        return clips

    def _put_clip_mask(self, batch: KVBatchMeta, clip_mask: torch.Tensor, response_mask_nested) -> KVBatchMeta:
        """mode=loss: the clip mask as the per-token field `echo_clip_mask`, in the nested layout of verl's own
        advantages (it, too, uses the response mask read before its step)."""
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

    def _update_actor(self, batch: KVBatchMeta, metrics: dict) -> KVBatchMeta:
        if self.echo.enable:
            every = self.echo.grad_telemetry_every
            batch.extra_info[TELEMETRY_KEY] = bool(every) and self.echo.mode == "loss" and self.global_steps % every == 0
        return super()._update_actor(batch, metrics)

    # --- every run: the reward fact --------------------------------------------------------------------
    def _compute_metrics(self, batch: KVBatchMeta, metrics, timing_raw, global_steps, epoch):
        """verl's step metrics + `reward/infra_error_rows`, over the whole step's batch (all its local updates)."""
        super()._compute_metrics(batch, metrics, timing_raw, global_steps, epoch)
        data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=["extra_fields"])
        metrics["reward/infra_error_rows"] = infra_error_rows(data.pop("extra_fields").tolist(), not_padding_rows(batch))

    # --- every run: checkpoint retention --------------------------------------------------------------
    # --- a failed rollout engine, named --------------------------------------------------------------
    def _step_once(self, metrics: dict, timing_raw: dict, sample_batch_size: int) -> KVBatchMeta:
        """verl's step; when no rollout of the step survived, the error names the rollout engine's own failure.

        verl's agent loop logs each rollout's error and marks its group failed (agent_loop_tq.py:131-148); with
        every group failed, the replay buffer raises "no materializable trajectories ... enable
        sync_refill_failed_groups" (replay_buffer.py:505-510), which names neither the cause nor the fix when
        the vLLM engine itself died. Each rollout server is then asked to clear its KV cache, which touches the
        engine: a dead one answers with its own error (vLLM's EngineDeadError), and that is what the run reports.
        """
        try:
            return super()._step_once(metrics, timing_raw, sample_batch_size)
        except RuntimeError as err:
            if "no materializable trajectories" not in str(err):
                raise
            cause = self._rollout_engine_failure()
            if cause is None:
                raise
            raise RolloutEngineFailed(
                f"every rollout of step {self.global_steps} failed: the rollout engine is down ({cause}); "
                "its log above has the root cause"
            ) from err

    def _rollout_engine_failure(self, timeout_s: float = 30.0) -> str | None:
        """`Type: message` of the first rollout server whose engine fails a KV-cache clear; None when all answer."""
        manager = getattr(self, "llm_server_manager", None)
        for replica in (manager.get_replicas() if manager is not None else []):
            for server in getattr(replica, "servers", []):
                try:
                    ray.get(server.clear_kv_cache.remote(), timeout=timeout_s)
                except Exception as err:  # noqa: BLE001  (any failure here is the diagnosis)
                    return failure_line(err)
        return None

    def _save_checkpoint(self):
        super()._save_checkpoint()
        trainer = self.config.trainer
        if not self.config.actor_rollout_ref.actor.get("checkpoint", {}).get("async_save", False):  # as verl's tracker
            keep = 1 if trainer.get("remove_previous_ckpt_in_save", False) else trainer.get("max_actor_ckpt_to_keep")
            prune(trainer.default_local_dir, self.global_steps, keep)

    # --- the rollout dump ------------------------------------------------------------------------------
    def _remember_clip_facts(self, keys: list[str], clips: EchoClips, data: TensorDict) -> None:
        from echorl_verl.clip_facts import clip_facts

        facts = clip_facts(clips, data["responses"], data["response_mask"], self.tokenizer)
        if self._dump_token_ids:  # what a recomputation of the echo term needs (prompt ids: at the dump)
            for row, fact in enumerate(facts):
                valid = data["response_mask"][row].bool()
                fact.update(response_ids=data["responses"][row][valid].tolist(),
                            clip_mask=clips.mask[row][valid].int().tolist())
        self._echo_facts.update(zip(keys, facts))  # a step's local updates (parameter_sync_step) add up

    def _log_rollout_data(self, batch: KVBatchMeta, timing_raw: dict, rollout_data_dir: str):
        """verl's rollout dump. With ECHORL_DUMP_TOKEN_IDS=1 each rollout's clip facts also get its prompt ids and
        the advantages the actor trained on (on its response tokens, aligned with `response_ids`)."""
        if self.echo.enable and self._dump_token_ids and self._echo_facts:
            fields = ["prompts", "response_mask", "advantages"]
            data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=fields)
            for key, prompt, mask, advantages in zip(batch.keys, data["prompts"].unbind(), data["response_mask"].unbind(),
                                                     data["advantages"].unbind()):
                fact = self._echo_facts.get(key)
                if fact is not None:
                    fact.update(prompt_ids=prompt.tolist(), advantages=advantages[mask.bool()].tolist())
        return super()._log_rollout_data(batch, timing_raw, rollout_data_dir)

    def _dump_generations(self, inputs, outputs, gts, scores, reward_extra_infos_dict, dump_path):
        """verl's rollout dump, plus each training rollout's clip facts under `echo`. Validation dumps (other keys)
        get none and leave the step's facts for the training dump, which verl writes after validation."""
        uids = reward_extra_infos_dict.get("uid")
        if self.echo.enable and uids is not None and any(uid in self._echo_facts for uid in uids):
            facts = [self._echo_facts.pop(uid, None) for uid in uids]
            reward_extra_infos_dict = dict(reward_extra_infos_dict, echo=facts)
        return super()._dump_generations(inputs, outputs, gts, scores, reward_extra_infos_dict, dump_path)
