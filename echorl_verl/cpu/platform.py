"""A CPU platform for verl 0.9.1, registered through the public `verl.plugin.platform.PlatformRegistry`.

verl has no CPU platform: `get_platform()` falls back to 'nvidia' and then calls CUDA. With this
class registered as "cpu", `VERL_PLATFORM=cpu` makes `get_device_name()` return 'cpu' and the
collective backend 'gloo'. The device module is `torch.cpu` plus no-op stand-ins for the CUDA-only
helpers verl calls through `get_torch_device()` (memory statistics, RNG state, IPC, allocator).

Ray: the resource name stays "GPU" so verl's resource pools and placement groups work unchanged;
the run declares fake GPUs with `ray_init.num_gpus` (a scheduling label: torch never sees CUDA).
"""

from __future__ import annotations

import os
import types
from contextlib import contextmanager
from typing import Any, Optional

import torch

from verl.plugin.platform import PlatformBase

PLATFORM_NAME = "cpu"


def _total_memory_bytes() -> int:
    try:
        import psutil

        return int(psutil.virtual_memory().total)
    except Exception:  # noqa: BLE001  (psutil is optional; a constant is enough for logging)
        return 0


def _free_memory_bytes() -> int:
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:  # noqa: BLE001
        return 0


def _build_device_module() -> types.ModuleType:
    """`torch.cpu` with the extra functions verl calls on `get_torch_device()` (all cheap no-ops)."""
    mod = types.ModuleType("echorl_verl.cpu.device_module")
    for name in dir(torch.cpu):
        if not name.startswith("__"):
            setattr(mod, name, getattr(torch.cpu, name))

    def _zero(*_args, **_kwargs) -> int:
        return 0

    def _noop(*_args, **_kwargs) -> None:
        return None

    mod.empty_cache = _noop
    mod.ipc_collect = _noop
    mod.set_per_process_memory_fraction = _noop
    mod.reset_peak_memory_stats = _noop
    mod.memory_allocated = _zero
    mod.memory_reserved = _zero
    mod.max_memory_allocated = _zero
    mod.max_memory_reserved = _zero
    mod.mem_get_info = lambda *_a, **_k: (_free_memory_bytes(), _total_memory_bytes())
    mod.get_device_name = lambda *_a, **_k: "cpu"
    mod.manual_seed = torch.manual_seed
    mod.manual_seed_all = torch.manual_seed
    mod.get_rng_state = lambda *_a, **_k: torch.get_rng_state()
    mod.set_rng_state = lambda state, *_a, **_k: torch.set_rng_state(state)
    mod.reset_accumulated_memory_stats = _noop
    mod.memory_stats = lambda *_a, **_k: {}
    mod.get_device_properties = lambda *_a, **_k: types.SimpleNamespace(
        name="cpu", total_memory=_total_memory_bytes(), major=None, minor=None
    )
    mod.set_device = _noop  # torch.cpu.set_device exists but rejects indices other than 'cpu'
    # verl uses the "device id" as a torch device spec (`tensor.to(get_device_id())`,
    # `torch.empty(..., device=get_device_id())`): an int would mean cuda:<int>, "cpu" means the CPU.
    mod.current_device = lambda: "cpu"
    mod.device_count = lambda: 1
    return mod


DEVICE_MODULE = _build_device_module()


class PlatformCPU(PlatformBase):
    """verl platform for running the trainer on CPUs (tests, CI, development machines)."""

    @property
    def device_name(self) -> str:
        return "cpu"

    @property
    def vendor_name(self) -> str:
        return "cpu"

    @property
    def device_module(self) -> types.ModuleType:
        return DEVICE_MODULE

    def is_available(self) -> bool:
        return True

    def is_platform_available(self, use_smi_check=False) -> bool:
        # Never auto-detected: a GPU machine must keep CUDA unless VERL_PLATFORM=cpu says otherwise.
        return False

    def current_device(self) -> str:
        # Not an int on purpose: verl passes this to `.to()` / `device=`, where 0 would mean cuda:0.
        return "cpu"

    def device_count(self) -> int:
        return 1

    def set_device(self, device_index: int) -> None:
        return None

    def synchronize(self, device_index: Optional[int] = None) -> None:
        return None

    def manual_seed(self, seed: int) -> None:
        torch.manual_seed(seed)

    def manual_seed_all(self, seed: int) -> None:
        torch.manual_seed(seed)

    def set_allocator_settings(self, settings: str) -> None:
        return None

    def empty_cache(self) -> None:
        return None

    def get_device_capability(self, device_index: int = 0) -> tuple[Optional[int], Optional[int]]:
        return None, None

    def communication_backend_name(self) -> str:
        return "gloo"

    def visible_devices_envvar(self) -> str:
        # Ray sets CUDA_VISIBLE_DEVICES for actors holding the fake GPUs; harmless on a CPU.
        return "CUDA_VISIBLE_DEVICES"

    @contextmanager
    def nvtx_range(self, msg: str):
        yield

    def profiler_start(self) -> None:
        return None

    def profiler_stop(self) -> None:
        return None

    def ray_resource_name(self) -> str:
        return "GPU"

    def ray_resource_options(self, num_gpus: float) -> dict[str, Any]:
        return {"num_gpus": num_gpus}

    def ray_noset_envvars(self) -> list[str]:
        return ["RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES"]

    def is_ipc_supported(self) -> bool:
        return False

    def rollout_env_vars(self) -> dict[str, str]:
        """The vLLM server's CPU-only settings (verl passes these to it: vllm_async_server.py:1374).

        KV cache in GiB (`VLLM_CPU_KVCACHE_SPACE`; unset, vLLM reads gpu_memory_utilization as a share of host
        RAM) and no OpenMP thread pinning (pinned threads fight the trainer's for the same cores). A value
        set in the environment wins.
        """
        return {
            "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "2"),
            "VLLM_CPU_OMP_THREADS_BIND": os.environ.get("VLLM_CPU_OMP_THREADS_BIND", "nobind"),
        }

    def cudart(self) -> Any:
        return None


def register_platform() -> None:
    """Register PlatformCPU as "cpu" (idempotent: the registry maps one name to one class)."""
    from verl.plugin.platform import PlatformRegistry

    if PlatformRegistry.get(PLATFORM_NAME) is not PlatformCPU:
        PlatformRegistry.register(platform=PLATFORM_NAME)(PlatformCPU)
