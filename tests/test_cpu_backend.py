"""The CPU backend: platform registration, gloo, the CPU start-up checks of verl's vLLM rollout, and the
recipes' stop at a failed check. The vLLM workarounds are in tests/test_vllm_compat.py, the trainer runs in
tests/test_recipes_cpu.py."""

import json
import os
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from echo_testlib import REPO, python_json
from echorl_verl.cpu.overrides import cpu_overrides
from echorl_verl.preflight import PreflightError, preflight

RECIPE = os.path.join(REPO, "recipes", "grpo_baseline_qwen.sh")


# ---------------------------------------------------------------- platform
PROBE = """
    import json, os
    import verl
    from verl.plugin.platform import PlatformRegistry
    from verl.utils.device import get_device_name, get_nccl_backend, get_device_id
    from echorl_verl.cpu import vllm_compat
    out = {"registered": "cpu" in PlatformRegistry.registered_names(), "vllm_compat": vllm_compat.installed()}
    if out["registered"]:
        out.update(device=get_device_name(), backend=get_nccl_backend(), device_id=get_device_id())
        import socket; sock = socket.socket(); sock.bind(("127.0.0.1", 0)); port = sock.getsockname()[1]; sock.close()
        os.environ.update(RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        import torch.distributed as dist
        from verl.utils.distributed import initialize_global_process_group_ray
        initialize_global_process_group_ray()  # verl's own call; without the fix: "cpu:gloo,cpu:gloo" ValueError
        out["pg_backend"] = dist.get_backend()
        t = __import__("torch").ones(2); dist.all_reduce(t); out["allreduce"] = t.tolist()
        from echorl_verl.cpu import enable_cpu_backend; enable_cpu_backend()  # idempotent
    print(json.dumps(out))
"""


def test_platform_only_with_verl_platform_cpu():
    """The verl.plugins entry point alone (no VERL_USE_EXTERNAL_MODULES) switches the backend on, and only on CPU."""
    on = python_json(PROBE, {"VERL_PLATFORM": "cpu"})
    assert on == {"registered": True, "vllm_compat": True, "device": "cpu", "backend": "gloo", "device_id": "cpu",
                  "pg_backend": "gloo", "allreduce": [1.0, 1.0]}
    # without VERL_PLATFORM=cpu the plugin changes nothing (a GPU machine keeps CUDA)
    off = python_json(PROBE, {})
    assert off == {"registered": False, "vllm_compat": False}


def test_enable_refuses_another_platform():
    code = """
        import json
        from echorl_verl.cpu import enable_cpu_backend, CPUBackendError
        try:
            enable_cpu_backend(); print(json.dumps("no error"))
        except CPUBackendError as e:
            print(json.dumps(str(e)))
    """
    msg = python_json(code, {"VERL_PLATFORM": "nvidia"})
    assert "VERL_PLATFORM='nvidia'" in msg and "VERL_PLATFORM=cpu" in msg


# ---------------------------------------------------------------- start-up checks
def _compose(overrides):
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="verl.trainer.config", version_base=None):
        return compose(config_name="ppo_trainer", overrides=overrides)


@pytest.fixture
def cpu_config(toy, monkeypatch):
    """Configs as a CPU driver sees them (VERL_PLATFORM=cpu), built from the CPU profile's own overrides."""
    monkeypatch.setenv("VERL_PLATFORM", "cpu")

    def make(*extra):
        return _compose(cpu_overrides(1) + ["trainer.n_gpus_per_node=1", "trainer.nnodes=1", "data.max_prompt_length=32", "data.max_response_length=96", f"actor_rollout_ref.model.path={toy['model']}",
                                         f"data.train_files={toy['train']}", f"data.val_files={toy['val']}", *extra])

    return make


def test_preflight_accepts_the_recipe_config(cpu_config):
    preflight(cpu_config())


def test_preflight_missing_model_path(cpu_config, tmp_path):
    with pytest.raises(PreflightError, match=r"actor_rollout_ref.model.path=.*no such folder.*echorl_verl.toy.build"):
        preflight(cpu_config(f"actor_rollout_ref.model.path={tmp_path}/nope"))
    with pytest.raises(PreflightError, match="has no config.json"):
        preflight(cpu_config(f"actor_rollout_ref.model.path={tmp_path}"))


def test_preflight_parquet_without_columns(cpu_config, tmp_path):
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"prompt": [[{"role": "user", "content": "1+1"}]], "answer": ["2"]}), bad)
    with pytest.raises(PreflightError, match=r"data.train_files: .*bad.parquet lacks column\(s\) \['data_source', 'reward_model'\]"):
        preflight(cpu_config(f"data.train_files={bad}"))
    with pytest.raises(PreflightError, match="data.val_files: .*missing.parquet does not exist"):
        preflight(cpu_config(f"data.val_files={tmp_path}/missing.parquet"))
    flat = tmp_path / "flat.parquet"
    pq.write_table(pa.table({"prompt": ["1+1"], "data_source": ["x"], "reward_model": [{"ground_truth": "2"}]}), flat)
    with pytest.raises(PreflightError, match="not a list of chat messages"):
        preflight(cpu_config(f"data.train_files={flat}"))


def test_preflight_on_cpu_refuses_what_vllm_cpu_cannot_do(cpu_config, tmp_path):
    """Each is a failure that otherwise comes minutes later from a Ray worker (the note's trial, vLLM's sources)."""
    with pytest.raises(PreflightError, match=r"rollout.name=hf \(the project's former hf rollout is retired\).*rollout.name=vllm"):
        preflight(cpu_config("actor_rollout_ref.rollout.name=hf"))
    with pytest.raises(PreflightError, match=r"sleep mode .*\+actor_rollout_ref.rollout.enable_sleep_mode=False"):
        preflight(cpu_config("actor_rollout_ref.rollout.enable_sleep_mode=True"))
    with pytest.raises(PreflightError, match="full_determinism=True .*CPU Generator does not use offset"):
        preflight(cpu_config("actor_rollout_ref.rollout.full_determinism=True"))
    import shutil

    model = tmp_path / "head24"
    shutil.copytree(os.path.dirname(cpu_config().actor_rollout_ref.model.path + "/"), model)
    cfg = json.loads((model / "config.json").read_text())
    cfg.update(hidden_size=96, num_attention_heads=4, head_dim=None)
    (model / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(PreflightError, match="heads of 24 dimensions; vLLM's CPU attention serves 32, 64"):
        preflight(cpu_config(f"actor_rollout_ref.model.path={model}"))


def test_preflight_names_missing_cpu_overrides(cpu_config):
    with pytest.raises(PreflightError, match=r"strategy=fsdp2"):
        preflight(cpu_config("actor_rollout_ref.actor.strategy=fsdp"))
    with pytest.raises(PreflightError, match=r"\+ray_kwargs.ray_init.num_gpus=2"):
        preflight(cpu_config("trainer.n_gpus_per_node=2"))
    for name in ("sglang", "trtllm"):
        with pytest.raises(PreflightError, match=f"rollout.name={name}: on VERL_PLATFORM=cpu .*rollout.name=vllm"):
            preflight(cpu_config(f"actor_rollout_ref.rollout.name={name}"))


def test_cpu_profile_takes_its_overrides_from_the_one_list():
    text = open(os.path.join(REPO, "recipes", "profile_cpu.sh")).read()
    assert "-m echorl_verl.cpu.overrides" in text
    out = subprocess.run([sys.executable, "-m", "echorl_verl.cpu.overrides", "2"], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == cpu_overrides(2) and cpu_overrides(2)[-1] == "+ray_kwargs.ray_init.num_gpus=2"


def test_recipe_stops_at_preflight_on_a_bad_model_path(toy, tmp_path):
    """The recipe's preflight step turns a bad path into one line and exit code 2, before Ray starts."""
    env = dict(os.environ, PROFILE="cpu", TOY_DIR=os.path.dirname(toy["model"]), TOY_BUILD_ARGS="--quick",
               RUN_DIR=str(tmp_path))
    proc = subprocess.run(["bash", RECIPE, f"actor_rollout_ref.model.path={tmp_path}/missing"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "echorl_verl: actor_rollout_ref.model.path=" in proc.stderr and "no such folder" in proc.stderr
    assert "Started a local Ray instance" not in proc.stdout + proc.stderr

# The trainer runs of every recipe (and of verl's own main_ppo) on this CPU are in tests/test_recipes_cpu.py.
