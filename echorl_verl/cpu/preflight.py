"""Start-up checks for a `main_ppo` config, run in the driver before Ray starts.

Without them, a wrong path or a missing CPU override surfaces minutes later as a trace from inside a
Ray worker, or as a hang (Ray waiting for GPUs that do not exist). Each check raises PreflightError
naming the config key or file, the problem, and the fix. Call `preflight(config)` with the Hydra
DictConfig of `verl.trainer.main_ppo`.
"""

from __future__ import annotations

import os

GPU_ONLY_ROLLOUTS = ("vllm", "sglang", "trtllm")
TOY_BUILD_HINT = "build the toy model with `python -m echorl_verl.toy.build --output_dir DIR` and pass DIR/model"


class PreflightError(ValueError):
    """A main_ppo config that cannot work; the message names the key and the fix."""


def _get(cfg, dotted: str, default=None):
    """`cfg.a.b.c` or `default` when any part is missing (DictConfig or dict)."""
    node = cfg
    for part in dotted.split("."):
        if node is None:
            return default
        try:
            node = node.get(part) if hasattr(node, "get") else getattr(node, part)
        except Exception:  # noqa: BLE001  (omegaconf raises on missing keys in struct mode)
            return default
    return default if node is None else node


def _on_cpu() -> bool:
    return os.environ.get("VERL_PLATFORM", "").strip().lower() == "cpu"


def _is_remote(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def _as_list(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def check_rollout(config) -> None:
    """The rollout backend matches the platform, and the `hf` rollout is registered when used."""
    name = _get(config, "actor_rollout_ref.rollout.name")
    if name == "hf":
        if not _on_cpu():
            raise PreflightError(
                "actor_rollout_ref.rollout.name=hf is the CPU backend's rollout, but VERL_PLATFORM is "
                f"{os.environ.get('VERL_PLATFORM')!r}: export VERL_PLATFORM=cpu before starting (every Ray worker "
                "must see it too), or use rollout.name=vllm/sglang on a GPU machine"
            )
        from verl.workers.rollout.base import _ROLLOUT_REGISTRY

        from . import cpu_backend_enabled

        if not cpu_backend_enabled() or ("hf", "async") not in _ROLLOUT_REGISTRY:
            raise PreflightError(
                "actor_rollout_ref.rollout.name=hf but the echorl_verl CPU backend is not enabled in this process: "
                "install echorl_verl (`pip install -e .`, its verl.plugins entry point enables it at `import verl` "
                "when VERL_PLATFORM=cpu) or set VERL_USE_EXTERNAL_MODULES=echorl_verl.cpu.autoload"
            )
    elif _on_cpu() and name in GPU_ONLY_ROLLOUTS:
        raise PreflightError(
            f"actor_rollout_ref.rollout.name={name} needs a GPU but VERL_PLATFORM=cpu: "
            "set actor_rollout_ref.rollout.name=hf"
        )


def check_model(config) -> None:
    """The model (and tokenizer) path is a local HF checkpoint when it looks local or we are on a CPU."""
    for key in ("actor_rollout_ref.model.path", "actor_rollout_ref.model.tokenizer_path"):
        path = _get(config, key)
        if path is None:
            if key.endswith(".path"):
                raise PreflightError(f"{key} is not set: pass the model folder, e.g. {key}=DIR/model ({TOY_BUILD_HINT})")
            continue
        path = str(path)
        if _is_remote(path):
            continue
        looks_local = path.startswith(("/", ".", "~")) or os.path.exists(path)
        if not (looks_local or _on_cpu()):
            continue  # a hub id on a machine that may download it
        full = os.path.expanduser(path)
        if not os.path.isdir(full):
            raise PreflightError(f"{key}={path}: no such folder ({TOY_BUILD_HINT}; nothing can be downloaded here)")
        needed = "config.json" if key.endswith(".path") else "tokenizer_config.json"
        if not os.path.exists(os.path.join(full, needed)):
            raise PreflightError(f"{key}={path}: the folder has no {needed}, so it is not a HF checkpoint ({TOY_BUILD_HINT})")


def check_data(config) -> None:
    """Every train/val parquet exists and has the columns verl's dataset and reward loop read."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    prompt_key = _get(config, "data.prompt_key", "prompt")
    rule_reward = not bool(_get(config, "reward.reward_model.enable", False))
    for key in ("data.train_files", "data.val_files"):
        files = _as_list(_get(config, key))
        if not files:
            raise PreflightError(f"{key} is empty: pass parquet files in verl's format (python -m echorl_verl.toy.build)")
        for path in files:
            if _is_remote(path):
                continue
            full = os.path.expanduser(path)
            if not os.path.isfile(full):
                raise PreflightError(f"{key}: {path} does not exist")
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
                    "'reward_model' {style, ground_truth}; write it with echorl_verl.toy.data or verl's data scripts"
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


def check_cpu_overrides(config) -> None:
    """The overrides a CPU run needs (see recipes/cpu_grpo_baseline.sh); only with VERL_PLATFORM=cpu."""
    if not _on_cpu():
        return
    fixes = []
    if _get(config, "actor_rollout_ref.actor.strategy") != "fsdp2":
        fixes.append("actor_rollout_ref.actor.strategy=fsdp2 (FSDP1 refuses CPU parameters)")
    if bool(_get(config, "actor_rollout_ref.model.use_remove_padding", False)):
        fixes.append("actor_rollout_ref.model.use_remove_padding=False (flash-attention varlen kernels are GPU-only)")
    attn = _get(config, "actor_rollout_ref.model.override_config.attn_implementation")
    if attn not in ("sdpa", "eager"):
        fixes.append(
            "+actor_rollout_ref.model.override_config.attn_implementation=sdpa (verl defaults to flash_attention_2)"
        )
    gpus = int(_get(config, "trainer.n_gpus_per_node", 1)) * int(_get(config, "trainer.nnodes", 1))
    ray_gpus = _get(config, "ray_kwargs.ray_init.num_gpus")
    if ray_gpus is None or int(ray_gpus) < gpus:
        fixes.append(
            f"+ray_kwargs.ray_init.num_gpus={gpus} (Ray must advertise as many GPU slots as "
            "trainer.n_gpus_per_node x trainer.nnodes, or the resource pool waits forever)"
        )
    if _get(config, "trainer.v1.trainer_mode", "sync") != "sync" or not bool(_get(config, "actor_rollout_ref.hybrid_engine", True)):
        fixes.append("trainer.v1.trainer_mode=sync and actor_rollout_ref.hybrid_engine=True (the hf rollout is colocated)")
    if fixes:
        raise PreflightError("VERL_PLATFORM=cpu needs these overrides:\n  " + "\n  ".join(fixes))


def preflight(config) -> None:
    """Run every check on a main_ppo DictConfig; raise PreflightError on the first problem found."""
    check_rollout(config)
    check_cpu_overrides(config)
    check_model(config)
    check_data(config)
