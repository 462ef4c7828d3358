"""The gloo fix for `verl.utils.distributed.initialize_global_process_group_ray` on a CPU.

verl builds the backend string `f"cpu:gloo,{device}:{backend}"`, which on the CPU platform is
`cpu:gloo,cpu:gloo`: torch rejects a device listed twice (ValueError). The wrapper passes
`backend="gloo"` when no backend is given and the platform device is 'cpu'; any other call goes to
verl's function unchanged. `engine_workers` imports the function by name, so its module-level name
is patched too when that module is already imported (otherwise it picks the wrapper up on import).
"""

from __future__ import annotations

import functools
import sys

_MODULES = ("verl.utils.distributed", "verl.workers.engine_workers")


def _wrap(original):
    @functools.wraps(original)
    def initialize_global_process_group_ray(timeout_second=None, backend=None):
        from verl.utils.device import get_device_name

        if backend is None and get_device_name() == "cpu":
            backend = "gloo"
        return original(timeout_second=timeout_second, backend=backend)

    initialize_global_process_group_ray.__echorl_cpu_wrapper__ = True
    return initialize_global_process_group_ray


def patch_process_group_init() -> None:
    """Install the wrapper (idempotent)."""
    import verl.utils.distributed as dist

    if not getattr(dist.initialize_global_process_group_ray, "__echorl_cpu_wrapper__", False):
        dist.initialize_global_process_group_ray = _wrap(dist.initialize_global_process_group_ray)
    for name in _MODULES[1:]:
        mod = sys.modules.get(name)
        if mod is not None and hasattr(mod, "initialize_global_process_group_ray"):
            mod.initialize_global_process_group_ray = dist.initialize_global_process_group_ray
