"""Start-up checks for a main_ppo config, on every platform, in the driver before Ray starts.

Each check catches a setting that verl 0.9.1 would accept and then crash on minutes later (after the
first generation, inside a Ray worker) or, worse, run silently as another experiment: responses cut at
the model's context length, a missing attention kernel, a batch the data-parallel group cannot split,
echo without the entropy it needs, DAPO's filter and echo disagreeing on what a success is. Each
failure is one PreflightError line that names the key, the value and the fix.

`preflight(config, echo)` runs them all and returns notes for checks it had to skip (for example the
model's context length when its config.json cannot be read on this machine). The CPU-only checks live
in `echorl_verl/cpu/preflight.py` and run here when VERL_PLATFORM=cpu.
"""

from __future__ import annotations

import importlib.util
import json
import os
from typing import Optional

from echorl_verl.checks import PreflightError, get
from echorl_verl.cpu.preflight import check_cpu
from echorl_verl.platform_env import on_cpu

EXTEND_CONTEXT_HINT = (
    "write a copy with more positions: python -m echorl_verl.tools.extend_context SRC DST --max_positions 16384 "
    "--rope_theta 40000 (what LUFFY did for Qwen2.5-Math-7B; published as Elliott/Qwen2.5-Math-7B-16k-think), "
    "or lower data.max_response_length"
)
TOY_BUILD_HINT = "build the toy model with `python -m echorl_verl.toy.build --output_dir DIR` and pass DIR/model"
#: attn_implementation -> the module it needs (transformers imports these lazily, at model load in a worker)
ATTENTION_MODULES = {"flash_attention_2": "flash_attn", "flash_attention_3": "flash_attn_interface"}


def _is_remote(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def _as_list(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


# --------------------------------------------------------------------------------------------- model
def model_config_json(path: str) -> tuple[Optional[dict], str]:
    """The model's config.json as a dict, and where it came from; (None, why) when it cannot be read here.

    A local folder is read directly; a hub id through huggingface_hub's cache (a download where the hub
    is reachable).
    """
    full = os.path.expanduser(path)
    if os.path.isdir(full):
        file = os.path.join(full, "config.json")
        if not os.path.isfile(file):
            return None, f"{path} has no config.json"
    else:
        try:
            from huggingface_hub import hf_hub_download

            file = hf_hub_download(path, "config.json")
        except Exception as err:  # noqa: BLE001  (offline, gated, unknown repo: the check is skipped, loudly)
            return None, f"could not fetch config.json of {path} ({type(err).__name__}: {str(err).splitlines()[0][:160]})"
    with open(file, encoding="utf-8") as handle:
        return json.load(handle), file


def check_model_path(config) -> None:
    """The model (and tokenizer) path is a local HF checkpoint when it looks local or we are on a CPU."""
    for key in ("actor_rollout_ref.model.path", "actor_rollout_ref.model.tokenizer_path"):
        path = get(config, key)
        if path is None:
            if key.endswith(".path"):
                raise PreflightError(f"{key} is not set: pass the model folder, e.g. {key}=DIR/model ({TOY_BUILD_HINT})")
            continue
        path = str(path)
        if _is_remote(path):
            continue
        looks_local = path.startswith(("/", ".", "~")) or os.path.exists(path)
        if not (looks_local or on_cpu()):
            continue  # a hub id on a machine that may download it
        full = os.path.expanduser(path)
        if not os.path.isdir(full):
            raise PreflightError(f"{key}={path}: no such folder ({TOY_BUILD_HINT}; nothing can be downloaded here)")
        needed = "config.json" if key.endswith(".path") else "tokenizer_config.json"
        if not os.path.exists(os.path.join(full, needed)):
            raise PreflightError(f"{key}={path}: the folder has no {needed}, so it is not a HF checkpoint ({TOY_BUILD_HINT})")


def max_positions(model_config: dict) -> Optional[int]:
    """max_position_embeddings as verl reads it (`verl/workers/rollout/utils.py::get_max_position_embeddings`)."""
    value = model_config.get("max_position_embeddings")
    if value is None:
        value = (model_config.get("text_config") or {}).get("max_position_embeddings")
    return None if value is None else int(value)


def check_context_length(config) -> Optional[str]:
    """prompt + response fit the model's positions and rollout.max_model_len; returns a note when skipped.

    With `rollout.max_model_len` null verl gives vLLM the model's `max_position_embeddings` and clamps each
    request's max_tokens to `max_model_len - prompt` without a word (`vllm_async_server.py`), so responses
    longer than that are cut silently. `model.override_config` does not reach vLLM, which serves the
    folder's own config.json.
    """
    prompt = int(get(config, "data.max_prompt_length", 0))
    response = int(get(config, "data.max_response_length", 0))
    need = prompt + response
    path = str(get(config, "actor_rollout_ref.model.path", ""))
    key_sum = f"data.max_prompt_length ({prompt}) + data.max_response_length ({response}) = {need}"
    overridden = get(config, "actor_rollout_ref.model.override_config.max_position_embeddings")
    if overridden is not None:
        raise PreflightError(
            f"actor_rollout_ref.model.override_config.max_position_embeddings={overridden}: the override reaches the "
            f"trainer's model but not vLLM, which reads {path}/config.json; {EXTEND_CONTEXT_HINT}"
        )
    max_model_len = get(config, "actor_rollout_ref.rollout.max_model_len")
    if max_model_len is not None and need > int(max_model_len):
        raise PreflightError(
            f"{key_sum} > actor_rollout_ref.rollout.max_model_len ({max_model_len}): every response would be cut at "
            f"{int(max_model_len) - prompt} tokens; raise rollout.max_model_len or lower data.max_response_length"
        )
    if not path or _is_remote(path):
        return f"context length: skipped (model path {path!r} is not a local folder or hub id)"
    model_config, source = model_config_json(path)
    if model_config is None:
        return f"context length: skipped, {source}"
    positions = max_positions(model_config)
    if positions is None:
        return f"context length: skipped, {source} has no max_position_embeddings"
    if max_model_len is not None and int(max_model_len) > positions:
        raise PreflightError(
            f"actor_rollout_ref.rollout.max_model_len ({max_model_len}) > the model's max_position_embeddings "
            f"({positions}, {source}): verl refuses it at rollout start; {EXTEND_CONTEXT_HINT}"
        )
    if need > positions:
        raise PreflightError(
            f"{key_sum} > the model's max_position_embeddings ({positions}, {source}): the rollout would cut long "
            f"responses at {max(positions - prompt, 0)} tokens without a word (verl sets vLLM's max_model_len to the "
            f"positions); {EXTEND_CONTEXT_HINT}"
        )
    return None


def check_attention(config) -> Optional[str]:
    """The attention implementation verl asks transformers for is importable (verl's default: flash_attention_2).

    Checked where the model will run: on a machine without CUDA (a GPU recipe's DRY_RUN on a laptop, say)
    a missing GPU kernel is a note, since it cannot be installed there anyway.
    """
    key = "actor_rollout_ref.model.override_config.attn_implementation"
    impl = str(get(config, key, "flash_attention_2"))
    module = ATTENTION_MODULES.get(impl) or ("kernels" if "/" in impl else None)
    if module is None or importlib.util.find_spec(module) is not None:
        return None
    import torch

    if not torch.cuda.is_available() and not on_cpu():
        return f"attention: skipped, {key}={impl} needs {module!r}, checked on the GPU node (no CUDA here)"
    raise PreflightError(
        f"{key}={impl} (verl's default when unset) needs the Python package {module!r}, which is not installed: "
        f"install it (flash-attn: `pip install flash-attn==2.8.3 --no-build-isolation` after torch, see README) "
        f"or set +{key}=sdpa"
    )


# --------------------------------------------------------------------------------------------- data
def check_data(config) -> None:
    """Every train/val parquet exists and has the columns verl's dataset and reward loop read."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    prompt_key = get(config, "data.prompt_key", "prompt")
    rule_reward = not bool(get(config, "reward.reward_model.enable", False))
    for key in ("data.train_files", "data.val_files"):
        files = _as_list(get(config, key))
        if not files:
            raise PreflightError(f"{key} is empty: pass parquet files in verl's format (data_prep/, or echorl_verl.toy.build)")
        for path in files:
            if _is_remote(path):
                continue
            full = os.path.expanduser(path)
            if not os.path.isfile(full):
                raise PreflightError(f"{key}: {path} does not exist (build it with data_prep/, see data_prep/README.md)")
            try:
                schema = pq.read_schema(full)
            except Exception as err:  # noqa: BLE001
                raise PreflightError(f"{key}: {path} is not a readable parquet file ({err})") from err
            needed = [prompt_key] + (["data_source", "reward_model"] if rule_reward else [])
            missing = [c for c in needed if c not in schema.names]
            if missing:
                raise PreflightError(
                    f"{key}: {path} lacks column(s) {missing} (has {schema.names}); verl needs {prompt_key!r} "
                    "(chat messages, see data.prompt_key), 'data_source' (selects the reward) and "
                    "'reward_model' {style, ground_truth}; write it with data_prep/ or echorl_verl.toy.data"
                )
            if not pa.types.is_list(schema.field(prompt_key).type):
                raise PreflightError(
                    f"{key}: {path} column {prompt_key!r} is {schema.field(prompt_key).type}, "
                    "not a list of chat messages [{'role': 'user', 'content': ...}]"
                )
            if rule_reward:
                rm = schema.field("reward_model").type
                if not (pa.types.is_struct(rm) and rm.get_field_index("ground_truth") >= 0):
                    raise PreflightError(
                        f"{key}: {path} column 'reward_model' is {rm}; it must be a struct with a 'ground_truth' field"
                    )


def data_sources(config) -> set[str]:
    """The distinct data_source values of every local train/val file."""
    import pyarrow.parquet as pq

    sources: set[str] = set()
    for key in ("data.train_files", "data.val_files"):
        for path in _as_list(get(config, key)):
            if not _is_remote(path) and os.path.isfile(os.path.expanduser(path)):
                column = pq.read_table(os.path.expanduser(path), columns=["data_source"]).column("data_source")
                sources.update(str(s) for s in column.unique().to_pylist())
    return sources


# --------------------------------------------------------------------------------------------- batch
def check_batch_split(config) -> None:
    """The PPO mini-batch splits evenly over the data-parallel ranks.

    verl asserts `mini_batch_size % dp_size == 0` in `TrainingWorker.train_mini_batch`, after the first
    generation; `validate_config` checks the batch only without dynamic batch sizing.
    """
    n_gpus = int(get(config, "trainer.n_gpus_per_node", 1)) * int(get(config, "trainer.nnodes", 1))
    sp = int(get(config, "actor_rollout_ref.actor.ulysses_sequence_parallel_size", 1))
    if get(config, "actor_rollout_ref.actor.strategy") == "megatron":
        return  # megatron's dp size depends on its own parallel layout; verl validates it
    dp = max(n_gpus // max(sp, 1), 1)
    mini = int(get(config, "actor_rollout_ref.actor.ppo_mini_batch_size", 1))
    n = int(get(config, "actor_rollout_ref.rollout.n", 1))
    if (mini * n) % dp:
        raise PreflightError(
            f"actor_rollout_ref.actor.ppo_mini_batch_size ({mini}) x rollout.n ({n}) = {mini * n} sequences per mini-batch "
            f"do not split over {dp} data-parallel ranks (trainer.nnodes x trainer.n_gpus_per_node = {n_gpus}"
            + (f", / ulysses {sp}" if sp > 1 else "")
            + "): verl fails after the first generation; choose a mini-batch (or GPU count) so that it divides"
        )


# --------------------------------------------------------------------------------------------- echo
def check_echo(config, echo) -> None:
    """Settings under which echo would fail mid-run or decide success on another number than DAPO's filter."""
    if echo is None or not echo.enable:
        return
    if bool(get(config, "algorithm.rollout_correction.bypass_mode", False)):
        raise PreflightError(
            "algorithm.rollout_correction.bypass_mode=True skips the old-policy pass and with it the per-token "
            "entropy EchoRL selects clips by: set it to False (or echo.enable=false)"
        )
    manager = get(config, "reward.reward_manager.name", "naive")
    if manager == "dapo" and echo.success_key == "score":
        raise PreflightError(
            "reward.reward_manager.name=dapo shapes the score (overlong penalty), so echo.success_key=score no longer "
            "means verified success: set echo.success_key=acc"
        )
    if bool(get(config, "algorithm.filter_groups.enable", False)) and echo.dapo_keep_all_success:
        metric = str(get(config, "algorithm.filter_groups.metric", ""))
        # verl's filter reads rm_scores for "reward" and reward_extra_info[metric] otherwise (replay_buffer.py)
        echo_field = "reward" if echo.success_key == "score" else echo.success_key
        if metric != echo_field:
            fix = "score" if metric == "reward" else metric
            raise PreflightError(
                f"algorithm.filter_groups.metric={metric} but echo.success_key={echo.success_key}: DAPO's filter and "
                f"echo must decide success on the same number (echo keeps the groups the filter calls all-success); "
                f"set echo.success_key={fix}"
            )


def check_code_sandbox(config) -> None:
    """When code data sources are configured, the sandbox runs a trivial program (else every reward is 0)."""
    from echorl_verl.rewards import CODE_SOURCES

    code = sorted(data_sources(config) & set(CODE_SOURCES))
    if not code:
        return
    from echorl_verl.rewards.code_sandbox import self_test

    url = get(config, "reward.custom_reward_function.reward_kwargs.sandbox_fusion_url")
    try:
        self_test(sandbox_fusion_url=url)
    except Exception as err:  # noqa: BLE001  (re-raised as one line naming the data and the fix)
        raise PreflightError(f"data sources {code} are scored by running code, but the sandbox self-test failed: {err}") from err


def preflight(config, echo=None) -> list[str]:
    """Run every check on a main_ppo DictConfig; raise PreflightError on the first problem, return skip notes."""
    notes = []
    check_cpu(config)  # on VERL_PLATFORM=cpu: the vLLM rollout's CPU settings and the CPU overrides
    check_model_path(config)
    notes += [note for note in (check_attention(config), check_context_length(config)) if note]
    check_data(config)
    check_batch_split(config)
    check_echo(config, echo)
    check_code_sandbox(config)
    return notes
