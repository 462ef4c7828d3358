"""The vLLM-on-CPU workarounds (echorl_verl/cpu/vllm_compat.py): each one needed, each one CPU-only.

Each workaround is checked against the real verl / vLLM code it answers, with the workaround and without it
(the "without" case shows the failure it prevents). A subprocess without VERL_PLATFORM=cpu shows that none
of them is installed in a process that is not on the CPU platform, so a GPU run executes what it did before.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import time

import pytest
import torch

from echo_testlib import REPO, python_json

# with the training runs (pytest.ini): the weight-sync check counts every verl_weights_* segment in /dev/shm
pytestmark = pytest.mark.training_runs

PROBE = r"""
import importlib.metadata, json, sys
import verl
from echorl_verl.cpu import vllm_compat
from vllm.model_executor.layers import utils
try:
    version = importlib.metadata.version("vllm")
except importlib.metadata.PackageNotFoundError:
    version = None
finders = [type(f).__name__ for f in sys.meta_path]
from verl.plugin.platform import get_platform
print(json.dumps({
    "installed": vllm_compat.installed(),
    "version": version,
    "metadata_version_patched": importlib.metadata.version is vllm_compat.vllm_version,
    "gemm_patched": getattr(utils.dispatch_cpu_unquantized_gemm, "_echorl_keeps_weights", False),
    "finder": "_PatchOnImport" in finders,
    "env": get_platform().rollout_env_vars(),
}))
"""


def test_workarounds_only_on_the_cpu_platform():
    off = python_json(PROBE)
    env = off.pop("env")
    assert off == {"installed": False, "version": None, "metadata_version_patched": False, "gemm_patched": False,
                   "finder": False}, off
    assert not any(name.startswith("VLLM_CPU_") for name in env)  # the GPU platform's own variables only
    on = python_json(PROBE, {"VERL_PLATFORM": "cpu"})
    assert on["installed"] and on["metadata_version_patched"] and on["gemm_patched"] and on["finder"]
    assert on["version"] == importlib.metadata.version("vllm-cpu") + "+cpu"
    assert on["env"] == {"VLLM_CPU_KVCACHE_SPACE": "2", "VLLM_CPU_OMP_THREADS_BIND": "nobind"}


def test_verl_and_vllm_agree_on_the_version_only_with_the_workaround():
    """verl reads version("vllm") (third_party/vllm/__init__.py:31); vLLM itself reads version("vllm-cpu") + "+cpu"."""
    code = r"""
import json
import verl
from verl.third_party import vllm as third_party
from vllm.platforms import current_platform
print(json.dumps({"verl": third_party.vllm_version, "cpu": current_platform.is_cpu()}))
"""
    on = python_json(code, {"VERL_PLATFORM": "cpu"})
    assert on == {"verl": importlib.metadata.version("vllm-cpu") + "+cpu", "cpu": True}
    env = {k: v for k, v in os.environ.items() if k != "VERL_PLATFORM"}
    off = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert off.returncode != 0 and "vllm version None not supported" in off.stderr


def test_linear_weights_survive_packing_only_with_the_workaround():
    """vllm/model_executor/layers/linear.py:211-215 drops the weight after packing; verl then cannot load into it."""
    from vllm.model_executor.layers import utils

    from echorl_verl.cpu import vllm_compat

    original = getattr(utils.dispatch_cpu_unquantized_gemm, "__wrapped__", utils.dispatch_cpu_unquantized_gemm)
    layer = torch.nn.Linear(64, 32, bias=False)
    original(layer, remove_weight=True)
    assert layer.weight.numel() == 0  # what verl's weight sync then fails on

    class Module:  # a stand-in for the module object; the function is vLLM's own
        dispatch_cpu_unquantized_gemm = staticmethod(original)

    vllm_compat.keep_linear_weights(Module)
    layer = torch.nn.Linear(64, 32, bias=False)
    weight = layer.weight.detach().clone()
    Module.dispatch_cpu_unquantized_gemm(layer, remove_weight=True)
    assert torch.equal(layer.weight, weight)
    x = torch.randn(3, 64)
    assert torch.allclose(layer.cpu_linear(x, layer.weight, None), x @ weight.T, atol=1e-4)


SENDER = r"""
import asyncio, importlib.util, os, sys, threading, uuid
import torch, verl, zmq
from echorl_verl.cpu import vllm_compat
from echorl_verl.cpu.platform import DEVICE_MODULE

# verl's bucketed_weight_transfer.py itself, without its package's vLLM version check (not a CPU process)
path = os.path.join(os.path.dirname(verl.__file__), "workers/rollout/vllm_rollout/bucketed_weight_transfer.py")
spec = importlib.util.spec_from_file_location("bucketed_weight_transfer", path)
transfer = importlib.util.module_from_spec(spec)
spec.loader.exec_module(transfer)
transfer.get_torch_device = lambda: DEVICE_MODULE  # the CPU platform's device calls
transfer.is_support_ipc = lambda: False
if sys.argv[1] == "bounded":
    vllm_compat.bound_weight_sync(transfer)

handle = f"ipc:///tmp/echorl-test-{uuid.uuid4().hex}.sock"

def silent_receiver():
    # takes the shared-memory handle and answers it, then never acknowledges the weights (a failed load)
    socket = zmq.Context.instance().socket(zmq.REP)
    socket.connect(handle)
    socket.recv_pyobj()
    socket.send(b"")
    socket.recv_pyobj()

threading.Thread(target=silent_receiver, daemon=True).start()
sender = transfer.BucketedWeightSender(handle, bucket_size_mb=1, use_shm=True)
try:
    asyncio.run(sender.async_send_weights(iter([("w", torch.ones(1024))])))
except vllm_compat.WeightSyncTimeout as err:
    print("ERROR", err, flush=True)
    os._exit(0)
"""


def test_weight_sync_ends_with_one_error_instead_of_waiting_forever(tmp_path):
    """verl's BucketedWeightSender waits on socket.recv() with no timeout (bucketed_weight_transfer.py:164)."""
    from echorl_verl import shm

    def segments():
        return {n for n in os.listdir("/dev/shm") if n.startswith("verl_weights_")}

    before, started = segments(), time.time()
    env = {**os.environ, "ECHORL_WEIGHT_SYNC_TIMEOUT_S": "2"}
    env.pop("VERL_PLATFORM", None)
    # without the bound: still waiting long after the receiver stopped answering
    proc = subprocess.Popen([sys.executable, "-c", SENDER, "unbounded"], env=env, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 180  # the imports take a while on a loaded machine
        while not segments() - before and proc.poll() is None and time.time() < deadline:
            time.sleep(0.5)
        time.sleep(8)  # four times the bound below
        assert proc.poll() is None, "the unbounded sender returned"
    finally:
        proc.kill()
        proc.wait()
    shm.remove_leftovers(started)  # (Python's resource tracker may have unlinked the killed sender's bucket)

    # with the bound: one clear error within the bound, and verl's own `finally` unlinks the bucket
    run = subprocess.run([sys.executable, "-c", SENDER, "bounded"], env=env, cwd=REPO, capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "ERROR weight sync to vLLM: no acknowledgement within 2 s (ECHORL_WEIGHT_SYNC_TIMEOUT_S)" in run.stdout
    assert segments() - before == set()


@pytest.mark.parametrize("value", ["0", "-3", "soon"])
def test_a_bad_weight_sync_timeout_is_named(monkeypatch, value):
    from echorl_verl.cpu import vllm_compat

    monkeypatch.setenv(vllm_compat.WEIGHT_SYNC_TIMEOUT_ENV, value)
    with pytest.raises(ValueError, match=f"ECHORL_WEIGHT_SYNC_TIMEOUT_S={value!r}: give a positive number"):
        vllm_compat.weight_sync_timeout_s()
