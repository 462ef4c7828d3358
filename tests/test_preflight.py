"""The start-up checks of `echorl_verl.preflight`, each with a config that trips it (and one that passes).

Configs are verl's real Hydra config (ours, which extends ppo_trainer) with the GPU recipes' kind of
settings; models are config.json-only folders, data the shared benchmark rows.
"""

import json
import os

import pytest
import torch

from echo_testlib import compose_config, shared_benchmarks_dir
from echorl_verl.main_ppo import forward_environment, prepare_config, redacted_yaml
from echorl_verl.preflight import PreflightError, preflight

BENCH = shared_benchmarks_dir()
SUITE = os.path.join(BENCH, "math_eval_suite.parquet")
pytestmark = pytest.mark.skipif(not os.path.exists(SUITE), reason=f"shared benchmark rows not found at {BENCH}")


@pytest.fixture(autouse=True)
def gpu_driver(monkeypatch):
    """A GPU recipe's driver: no CPU platform, no hub access."""
    monkeypatch.delenv("VERL_PLATFORM", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def model_dir(tmp_path, positions, name="model"):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "qwen2", "max_position_embeddings": positions}))
    return str(folder)


def config(model, *extra):
    return compose_config([
        f"actor_rollout_ref.model.path={model}", f"data.train_files={SUITE}", f"data.val_files={SUITE}",
        "data.max_prompt_length=1024", "data.max_response_length=8192", "algorithm.adv_estimator=grpo",
        "trainer.n_gpus_per_node=8", "trainer.nnodes=1", "actor_rollout_ref.actor.ppo_mini_batch_size=64",
        "actor_rollout_ref.rollout.n=8", "+actor_rollout_ref.model.override_config.attn_implementation=sdpa", *extra])


def check(cfg):
    return preflight(cfg, prepare_config(cfg))


def test_a_good_config_passes(tmp_path):
    assert check(config(model_dir(tmp_path, 16384))) == []


def test_context_longer_than_the_model_names_both_numbers_and_the_fix(tmp_path):
    with pytest.raises(PreflightError, match=r"= 9216 > the model's max_position_embeddings \(4096.*cut long responses at "
                                             r"3072 tokens.*echorl_verl.tools.extend_context"):
        check(config(model_dir(tmp_path, 4096)))


def test_context_longer_than_max_model_len(tmp_path):
    model = model_dir(tmp_path, 16384)
    with pytest.raises(PreflightError, match=r"9216 > actor_rollout_ref.rollout.max_model_len \(8192\)"):
        check(config(model, "actor_rollout_ref.rollout.max_model_len=8192"))
    with pytest.raises(PreflightError, match=r"max_model_len \(32768\) > the model's max_position_embeddings \(16384"):
        check(config(model, "actor_rollout_ref.rollout.max_model_len=32768"))


def test_override_config_positions_do_not_reach_vllm(tmp_path):
    with pytest.raises(PreflightError, match="reaches the trainer's model but not vLLM"):
        check(config(model_dir(tmp_path, 4096), "+actor_rollout_ref.model.override_config.max_position_embeddings=16384"))


def test_a_hub_model_that_cannot_be_read_is_a_skipped_check_not_a_pass(tmp_path):
    notes = check(config("Elliott/Qwen2.5-Math-7B-16k-think"))
    assert len(notes) == 1 and notes[0].startswith("context length: skipped, could not fetch config.json")


def test_missing_flash_attention(tmp_path, monkeypatch):
    import importlib.util

    assert importlib.util.find_spec("flash_attn") is None  # as on this machine: the check's real trigger
    model = model_dir(tmp_path, 16384)
    cfg = config(model, "++actor_rollout_ref.model.override_config.attn_implementation=flash_attention_2")
    # no CUDA here: a GPU kernel cannot be installed, so the check is a note ...
    assert [n for n in check(cfg) if n.startswith("attention: skipped")]
    # ... and on a GPU node it is an error naming the package and the fix
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(PreflightError, match=r"needs the Python package 'flash_attn'.*attn_implementation=sdpa"):
        check(cfg)


def test_a_mini_batch_that_does_not_split_over_the_ranks(tmp_path):
    model = model_dir(tmp_path, 16384)
    with pytest.raises(PreflightError, match=r"64\) x rollout.n \(8\) = 512 sequences .* over 24 data-parallel ranks"):
        check(config(model, "trainer.nnodes=3"))
    check(config(model, "trainer.nnodes=4"))


def test_bypass_mode_would_leave_echo_without_entropy(tmp_path):
    model = model_dir(tmp_path, 16384)
    with pytest.raises(PreflightError, match="bypass_mode=True skips the old-policy pass"):
        check(config(model, "algorithm.rollout_correction.bypass_mode=True"))
    check(config(model, "algorithm.rollout_correction.bypass_mode=True", "echo.enable=false"))  # baselines may


def test_dapo_shaped_score_needs_success_on_acc(tmp_path):
    model = model_dir(tmp_path, 16384)
    with pytest.raises(PreflightError, match="set echo.success_key=acc"):
        check(config(model, "reward.reward_manager.name=dapo"))
    check(config(model, "reward.reward_manager.name=dapo", "echo.success_key=acc"))


def test_dapo_filter_and_echo_decide_success_on_the_same_field(tmp_path):
    model = model_dir(tmp_path, 16384)
    dapo = ["algorithm.filter_groups.enable=True", "algorithm.filter_groups.metric=acc"]
    with pytest.raises(PreflightError, match="filter_groups.metric=acc but echo.success_key=score.*success_key=acc"):
        check(config(model, *dapo))
    check(config(model, *dapo, "echo.success_key=acc"))
    check(config(model, "algorithm.filter_groups.enable=True", "algorithm.filter_groups.metric=reward"))  # = score
    check(config(model, *dapo, "echo.dapo_keep_all_success=false"))  # the filter alone decides


def test_code_data_self_tests_the_sandbox(tmp_path, monkeypatch):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from echorl_verl.rewards import code_sandbox

    code = tmp_path / "code.parquet"
    pq.write_table(pa.table({"data_source": ["humaneval"], "prompt": [[{"role": "user", "content": "x"}]],
                             "reward_model": [{"ground_truth": "{}", "style": "rule"}]}), code)
    model = model_dir(tmp_path, 16384)
    check(config(model, f"data.val_files={code}"))  # the real sandbox of this machine starts

    def broken(sandbox_fusion_url=None):
        raise code_sandbox.SandboxUnavailable("unshare: operation not permitted")

    monkeypatch.setattr(code_sandbox, "self_test", broken)
    with pytest.raises(PreflightError, match=r"\['humaneval'\] are scored by running code.*operation not permitted"):
        check(config(model, f"data.val_files={code}"))
    check(config(model))  # no code data: the sandbox is not needed


def test_environment_reaches_the_ray_runtime_env_without_secrets(tmp_path):
    cfg = config(model_dir(tmp_path, 16384), "+ray_kwargs.ray_init.runtime_env.env_vars.NCCL_DEBUG=INFO")
    environ = {"VERL_FILE_LOGGER_PATH": "/runs/a/metrics.jsonl", "WANDB_PROJECT": "p", "WANDB_API_KEY": "s3cret",
               "HF_TOKEN": "hf_x", "NCCL_DEBUG": "WARN", "TOKENIZERS_PARALLELISM": "false", "HOME": "/root",
               "CUDA_VISIBLE_DEVICES": "0", "ECHORL_DRY_RUN": "1", "ECHORL_DUMP_TOKEN_IDS": "1"}
    withheld = forward_environment(cfg, environ)
    env_vars = dict(cfg.ray_kwargs.ray_init.runtime_env.env_vars)
    assert env_vars == {"VERL_FILE_LOGGER_PATH": "/runs/a/metrics.jsonl", "WANDB_PROJECT": "p",
                        "NCCL_DEBUG": "INFO",  # the config's own value wins
                        "TOKENIZERS_PARALLELISM": "false", "ECHORL_DUMP_TOKEN_IDS": "1"}
    assert withheld == ["HF_TOKEN", "WANDB_API_KEY"]
    cfg = config(model_dir(tmp_path, 16384, "m2"))
    forward_environment(cfg, dict(environ, ECHORL_FORWARD_SECRETS="1"))
    assert cfg.ray_kwargs.ray_init.runtime_env.env_vars.WANDB_API_KEY == "s3cret"
    text = redacted_yaml(cfg)
    assert "s3cret" not in text and "WANDB_API_KEY: '***'" in text
