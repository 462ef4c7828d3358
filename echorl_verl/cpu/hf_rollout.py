"""An HF-transformers rollout for verl 0.9.1, registered as `actor_rollout_ref.rollout.name=hf`.

verl 0.9.1 only ships vLLM / SGLang / TensorRT-LLM rollout servers, all GPU-only. This module gives
verl's agent loop the same token-in-token-out interface on a CPU:

* `HFRolloutServer`: a Ray actor holding an HF causal LM. `generate(prompt_ids, sampling_params,
  request_id, ...) -> TokenOutput` (the signature of `vLLMHttpServer.generate`). Concurrent requests
  are queued and run as one left-padded `model.generate()` batch per sampling setting; the log-probs
  are the log-softmax of the *processed* scores (after temperature / top-k / top-p), like vLLM's
  default `logprobs_mode=processed_logprobs`, i.e. what verl's actor computes at that temperature.
* `HFReplica(RolloutReplica)`: launches one server per replica (hybrid mode: next to the trainer).
* `HFServerAdapter(BaseRollout)`: lives in the trainer's `ActorRolloutRefWorker`; after each step
  verl's naive checkpoint engine hands it the trainer's weights, which it forwards to the server.

Weights travel through the Ray object store as CPU tensors: fine for small models, which is what a
CPU run is for.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Generator, Optional

import ray
import torch

from verl.workers.rollout.base import BaseRollout
from verl.workers.rollout.replica import RolloutMode, RolloutReplica, TokenOutput

logger = logging.getLogger(__name__)

ROLLOUT_NAME = "hf"
# How long the server waits for more concurrent requests before starting a batch (seconds).
BATCH_WINDOW_S = 0.02
BATCH_MAX_WAIT_S = 0.5  # cap of the wait for a quiet queue


def server_actor_name(replica_rank: int, name_suffix: str = "", kind: str = "") -> str:
    """Ray actor name of the server of one replica; the adapter finds its server by this name."""
    return f"hf_server{kind}_{replica_rank}_0{name_suffix}"


@dataclass
class _Request:
    prompt_ids: list[int]
    max_tokens: int
    want_logprobs: bool
    future: asyncio.Future = field(repr=False)


class HFRolloutServer:
    """Token-in-token-out generation with `transformers` (wrap with `ray.remote`).

    Args:
        config: RolloutConfig (response_length, prompt_length, seed, ...).
        model_config: the `actor_rollout_ref.model` config (DictConfig or HFModelConfig): path,
            override_config.attn_implementation.
        Both are read with `.get(key, default)`, which verl's config dataclasses (BaseConfig), DictConfig
        and dict all have (`OmegaConf.select` does not take verl's dataclasses).
        rollout_mode / replica_rank: bookkeeping, as in verl's servers.
        num_threads: torch threads for generation (default: $ECHORL_HF_ROLLOUT_THREADS or 1; a tiny
            model's small matmuls gain nothing from a second thread, and on a shared 2-core machine
            OpenMP spin-waiting made 2 threads 10-50x slower than 1).
    """

    def __init__(self, config, model_config, rollout_mode=None, replica_rank: int = 0, num_threads: int | None = None):
        from transformers import AutoModelForCausalLM

        self.config = config
        self.rollout_mode = rollout_mode
        self.replica_rank = replica_rank
        self.global_steps: Optional[int] = None
        self.weight_updates = 0
        torch.set_num_threads(num_threads or int(os.environ.get("ECHORL_HF_ROLLOUT_THREADS", "1")))

        path = model_config.get("local_path") or model_config.get("path")
        if not path or not os.path.isdir(path):
            raise FileNotFoundError(
                f"hf rollout: model path {path!r} (actor_rollout_ref.model.path) is not a local directory; "
                "build the toy model with `python -m echorl_verl.toy.build --output_dir DIR` and pass DIR"
            )
        attn = (model_config.get("override_config") or {}).get("attn_implementation") or "sdpa"
        self.model = AutoModelForCausalLM.from_pretrained(
            path, dtype=torch.float32, attn_implementation=attn,
            trust_remote_code=bool(model_config.get("trust_remote_code", False)),
        )
        self.model.eval()
        gen_cfg = self.model.generation_config
        eos = gen_cfg.eos_token_id if gen_cfg.eos_token_id is not None else self.model.config.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos]) - {None}
        pad = gen_cfg.pad_token_id if gen_cfg.pad_token_id is not None else self.model.config.pad_token_id
        self.pad_id = pad if pad is not None else min(self.eos_ids)
        torch.manual_seed(int(config.get("seed", 0) or 0) + replica_rank)

        self._pending: list[tuple[tuple, _Request]] = []
        self._batcher: Optional[asyncio.Task] = None
        self._model_lock = asyncio.Lock()

    # ------------------------------------------------------------------ generation
    async def generate(
        self,
        prompt_ids: list[int],
        sampling_params: dict[str, Any],
        request_id: str,
        image_data: Optional[list[Any]] = None,
        video_data: Optional[list[Any]] = None,
        audio_data: Optional[list[Any]] = None,
        mm_processor_kwargs: Optional[dict[str, Any]] = None,
        priority: int = 0,
        **kwargs,
    ) -> TokenOutput:
        """Generate one response. `sampling_params`: temperature, top_p, top_k (-1 = off),
        repetition_penalty, logprobs (bool), max_tokens / max_new_tokens (optional)."""
        if image_data is not None or video_data is not None or audio_data is not None:
            raise NotImplementedError("hf rollout: multimodal inputs are not supported")
        prompt_ids = [int(t) for t in prompt_ids]
        params = dict(sampling_params)
        response_length = int(self.config.get("response_length"))
        prompt_length = int(self.config.get("prompt_length"))
        max_tokens = params.pop("max_tokens", params.pop("max_new_tokens", None))
        if max_tokens is None:
            max_tokens = min(response_length, prompt_length + response_length - len(prompt_ids))
        max_tokens = max(1, int(max_tokens))
        key = (
            float(params.get("temperature", 1.0) or 0.0),
            float(params.get("top_p", 1.0) or 1.0),
            int(params.get("top_k", -1) if params.get("top_k") is not None else -1),
            float(params.get("repetition_penalty", 1.0) or 1.0),
        )
        fut = asyncio.get_running_loop().create_future()
        self._pending.append((key, _Request(prompt_ids, max_tokens, bool(params.get("logprobs", False)), fut)))
        if self._batcher is None or self._batcher.done():
            self._batcher = asyncio.create_task(self._run_batches())
        token_ids, log_probs = await fut
        return TokenOutput(
            token_ids=token_ids,
            log_probs=log_probs,
            stop_reason="completed",
            extra_fields={"global_steps": self.global_steps},
        )

    async def _run_batches(self):
        """Drain the queue: wait until requests stop arriving, then one batch per sampling key.

        Waiting until the queue is quiet (up to BATCH_MAX_WAIT_S) gathers most of a step's requests into one
        `generate()` call (faster on CPU than several small ones); sorting by prompt makes the batch order
        independent of arrival order. Runs are still not bit-reproducible: how requests split into batches
        depends on timing, and each split draws the sampling noise differently.
        """
        loop = asyncio.get_running_loop()
        while self._pending:
            seen, deadline = -1, loop.time() + BATCH_MAX_WAIT_S
            while len(self._pending) != seen and loop.time() < deadline:
                seen = len(self._pending)
                await asyncio.sleep(BATCH_WINDOW_S)
            pending, self._pending = self._pending, []
            pending.sort(key=lambda item: (item[0], item[1].prompt_ids, item[1].max_tokens))
            groups: dict[tuple, list[_Request]] = {}
            for key, req in pending:
                groups.setdefault(key, []).append(req)
            for key, reqs in groups.items():
                try:
                    async with self._model_lock:
                        results = await asyncio.to_thread(self._generate_batch, key, reqs)
                    for req, res in zip(reqs, results):
                        req.future.set_result(res)
                except Exception as err:  # noqa: BLE001  (delivered to every waiting caller)
                    for req in reqs:
                        if not req.future.done():
                            req.future.set_exception(err)

    @torch.no_grad()
    def _generate_batch(self, key: tuple, reqs: list[_Request]) -> list[tuple[list[int], Optional[list[float]]]]:
        """One left-padded `generate()` call; returns (token_ids, log_probs or None) per request.

        token_ids end with the EOS token when the model stopped, like vLLM's output.
        """
        from transformers import GenerationConfig

        temperature, top_p, top_k, repetition_penalty = key
        width = max(len(r.prompt_ids) for r in reqs)
        ids = torch.full((len(reqs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(reqs), width), dtype=torch.long)
        for i, r in enumerate(reqs):
            ids[i, width - len(r.prompt_ids):] = torch.tensor(r.prompt_ids)
            mask[i, width - len(r.prompt_ids):] = 1
        greedy = temperature <= 1e-6
        gen_cfg = GenerationConfig(
            do_sample=not greedy,
            temperature=None if greedy else temperature,
            top_p=None if greedy else top_p,
            top_k=None if greedy or top_k <= 0 else top_k,
            repetition_penalty=repetition_penalty,
            max_new_tokens=max(r.max_tokens for r in reqs),
            eos_token_id=sorted(self.eos_ids),
            pad_token_id=self.pad_id,
            return_dict_in_generate=True,
            output_scores=True,
        )
        if not greedy and top_k <= 0:
            gen_cfg.top_k = 0  # GenerationConfig's default is 50; 0 turns the top-k filter off
        out = self.model.generate(input_ids=ids, attention_mask=mask, generation_config=gen_cfg)
        new = out.sequences[:, width:]  # [B, T]
        # out.scores are the processed logits (after temperature / top-k / top-p / repetition penalty), the
        # distribution each token was sampled from: normalised, at the sampled tokens, they are vLLM's
        # processed_logprobs (verl's default logprobs_mode).
        lp = self.model.compute_transition_scores(out.sequences, out.scores, normalize_logits=True)  # [B, T]
        results = []
        for i, r in enumerate(reqs):
            toks = new[i, : r.max_tokens].tolist()
            end = next((j + 1 for j, t in enumerate(toks) if t in self.eos_ids), len(toks))
            results.append((toks[:end], lp[i, :end].tolist() if r.want_logprobs else None))
        return results

    # ------------------------------------------------------------------ weights
    async def update_weights(self, state_dict: dict[str, torch.Tensor], global_steps: Optional[int] = None) -> int:
        """Load the trainer's weights (HF names). Raises on unknown or missing (untied) names.

        Returns the number of weight updates received so far.
        """
        async with self._model_lock:
            model_sd = self.model.state_dict()
            unexpected = sorted(set(state_dict) - set(model_sd))
            if unexpected:
                raise KeyError(f"hf rollout: the trainer sent weights the rollout model lacks: {unexpected[:5]}")
            tied = {"lm_head.weight"} if self.model.config.tie_word_embeddings else set()
            missing = sorted(set(model_sd) - set(state_dict) - tied)
            if missing:
                raise KeyError(f"hf rollout: the trainer's weights lack {missing[:5]}")
            with torch.no_grad():
                for name, tensor in state_dict.items():
                    model_sd[name].copy_(tensor.to(model_sd[name].dtype))
            self.weight_updates += 1
            if global_steps is not None:
                self.global_steps = global_steps
        return self.weight_updates

    async def get_weight(self, name: str) -> torch.Tensor:
        """A copy of one parameter (for tests and debugging)."""
        return self.model.state_dict()[name].detach().clone()

    async def num_weight_updates(self) -> int:
        return self.weight_updates

    # ------------------------------------------------------------------ control (no-ops on a CPU)
    async def ready(self) -> bool:
        return True

    async def get_server_address(self):
        return "hf", self.replica_rank

    async def wake_up(self, tags: list[str] | None = None):
        return None

    async def sleep(self):
        # Weights stay in memory: the next update_weights overwrites them before the next rollout.
        return None

    async def clear_kv_cache(self):
        return None

    async def release_kv_cache(self):
        return None

    async def resume_kv_cache(self):
        return None

    async def wait_for_requests_to_drain(self):
        while self._pending or (self._batcher is not None and not self._batcher.done()):
            await asyncio.sleep(BATCH_WINDOW_S)

    async def abort_all_requests(self, reset_prefix_cache: bool = True, reject_request: bool = False):
        return {"aborted_count": 0, "request_ids": []}

    async def abort_request(self, request_id: str, reset_prefix_cache: bool = True):
        return {"aborted": False, "request_id": request_id}

    async def resume_generation(self):
        return None

    async def set_global_steps(self, global_steps: int):
        self.global_steps = global_steps

    async def start_profile(self, **kwargs):
        return None

    async def stop_profile(self):
        return None


class HFReplica(RolloutReplica):
    """One `HFRolloutServer` per replica, next to the trainer workers (hybrid mode only)."""

    async def launch_servers(self):
        if self.rollout_mode != RolloutMode.HYBRID:
            raise NotImplementedError(
                f"hf rollout supports the hybrid (colocated trainer) mode only, got {self.rollout_mode}; "
                "set actor_rollout_ref.hybrid_engine=True and trainer.v1.trainer_mode=sync"
            )
        kind = "_reward" if self.is_reward_model else "_teacher" if self.is_teacher_model else ""
        name = server_actor_name(self.replica_rank, self.name_suffix, kind)
        node_id = await self.workers[0].__ray_call__.remote(lambda self: ray.get_runtime_context().get_node_id())
        server = (
            ray.remote(HFRolloutServer)
            .options(
                name=name,
                num_cpus=0,
                max_concurrency=self.max_concurrency,
                scheduling_strategy=ray.util.scheduling_strategies.NodeAffinitySchedulingStrategy(
                    node_id=node_id, soft=False
                ),
            )
            .remote(
                config=self.config,
                model_config=self.model_config,
                rollout_mode=self.rollout_mode,
                replica_rank=self.replica_rank,
            )
        )
        await server.ready.remote()  # surfaces a failed model load here, not at the first generate
        self.servers = [server]
        self._server_handle = server
        self._server_address = f"hf://{name}"


class HFServerAdapter(BaseRollout):
    """The rollout side inside the trainer worker: forwards the trainer's weights to the server.

    All trainer ranks iterate the weight generator (FSDP may gather inside it); the first rank of
    each replica sends the full tensors to that replica's server.
    """

    def __init__(self, config, model_config, device_mesh, replica_rank: int = -1):
        super().__init__(config, model_config, device_mesh)
        rank = int(os.environ.get("RANK", "0"))
        world = (
            self.config.tensor_model_parallel_size
            * self.config.data_parallel_size
            * self.config.pipeline_model_parallel_size
        )
        self.replica_rank = rank // world if replica_rank == -1 else replica_rank
        self._has_server = rank % world == 0
        self._server = None

    def _server_handle(self):
        if self._server is None:
            self._server = ray.get_actor(server_actor_name(self.replica_rank))
        return self._server

    async def resume(self, tags: list[str]):
        return None

    async def release(self):
        return None

    async def update_weights(
        self, weights: Generator[tuple[str, torch.Tensor], None, None], wire_format: str = "named_tensors", **kwargs
    ):
        if wire_format != "named_tensors":
            raise NotImplementedError(f"hf rollout: weight wire_format {wire_format!r} is not supported")
        state = {}
        for name, tensor in weights:
            if hasattr(tensor, "full_tensor"):  # a DTensor shard
                tensor = tensor.full_tensor()
            if self._has_server:
                state[name] = tensor.detach().to("cpu", copy=True)
        if self._has_server:
            await self._server_handle().update_weights.remote(state, global_steps=kwargs.get("global_steps"))
