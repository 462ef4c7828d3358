"""Every GPU recipe composes into a config that passes EchoRL's and verl's start-up checks.

The recipe scripts run for real (bash, common.sh, algorithms.sh) with PYTHON pointing at a probe that
records the command line instead of training; the recorded overrides then go through the same checks
`python -m echorl_verl.main_ppo` makes before it starts Ray (Hydra, EchoConfig, verl's validate_config).
"""

import os
import subprocess

import pytest
from omegaconf import OmegaConf

from echo_testlib import compose_config
from echorl_verl.config import EchoConfigError
from echorl_verl.main_ppo import prepare_config
from verl.trainer.ppo.utils import need_critic, need_reference_policy
from verl.utils.config import validate_config

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
ALGORITHMS = ("grpo", "drgrpo", "dapo", "gspo")


def recipe_command(tmp_path, script, *extra, **env):
    argv_file = tmp_path / f"{script}.argv"
    probe = tmp_path / "python"
    probe.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" > {argv_file}\n")
    probe.chmod(0o755)
    environ = dict(os.environ, PYTHON=str(probe), RUN_ROOT=str(tmp_path / "runs"), **env)
    environ.pop("VERL_FILE_LOGGER_PATH", None)
    out = subprocess.run(["bash", os.path.join(REPO, "recipes", script), *extra], capture_output=True, text=True,
                         env=environ, timeout=60)
    assert out.returncode == 0, out.stderr
    argv = argv_file.read_text().splitlines()
    assert argv[:2] == ["-m", "echorl_verl.main_ppo"], argv[:2]
    return argv[2:]


def recipe_config(tmp_path, script, *extra, **env):
    config = compose_config(recipe_command(tmp_path, script, *extra, **env))
    prepare_config(config)
    validate_config(config=config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config))
    return OmegaConf.to_container(config, resolve=False)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_echo_and_baseline_recipes_differ_only_in_echo(tmp_path, algorithm):
    echo = recipe_config(tmp_path, f"{algorithm}_echo_qwen.sh")
    base = recipe_config(tmp_path, f"{algorithm}_baseline_qwen.sh")
    assert echo["echo"]["enable"] is True and echo["echo"]["coef"] == 0.001
    assert base["echo"]["enable"] is False
    for section in ("actor_rollout_ref", "data", "reward"):
        assert echo[section] == base[section], section
    assert {k: v for k, v in echo["algorithm"].items() if k != "echo"} == base["algorithm"]
    assert echo["actor_rollout_ref"]["rollout"]["name"] == "vllm"
    assert echo["reward"]["custom_reward_function"]["path"] == "pkg://echorl_verl.rewards"
    assert echo["trainer"]["experiment_name"] == f"{algorithm}_echo_qwen"


def test_algorithm_settings(tmp_path):
    cfg = {a: recipe_config(tmp_path, f"{a}_echo_qwen.sh") for a in ALGORITHMS}
    assert cfg["grpo"]["algorithm"]["norm_adv_by_std_in_grpo"] is True
    assert cfg["drgrpo"]["algorithm"]["norm_adv_by_std_in_grpo"] is False
    assert cfg["drgrpo"]["actor_rollout_ref"]["actor"]["loss_agg_mode"] == "seq-mean-token-sum-norm"
    assert cfg["dapo"]["algorithm"]["filter_groups"]["enable"] is True
    assert cfg["dapo"]["actor_rollout_ref"]["actor"]["clip_ratio_high"] == 0.28
    assert cfg["gspo"]["actor_rollout_ref"]["actor"]["policy_loss"]["loss_mode"] == "gspo"


def test_environment_and_overrides_reach_the_config(tmp_path):
    cfg = recipe_config(tmp_path, "grpo_echo_qwen.sh", "echo.clip_mode=full_response", "trainer.total_training_steps=7",
                        NNODES="4", MODEL_PATH="/models/qwen", ECHO_COEF="0.01")
    assert cfg["trainer"]["nnodes"] == 4
    assert cfg["actor_rollout_ref"]["model"]["path"] == "/models/qwen"
    assert cfg["echo"]["coef"] == 0.01 and cfg["echo"]["clip_mode"] == "full_response"
    assert cfg["trainer"]["total_training_steps"] == 7


def test_a_bad_echo_override_fails_at_start_up(tmp_path):
    with pytest.raises(EchoConfigError, match="echo.scope='everything' is not valid"):
        recipe_config(tmp_path, "grpo_echo_qwen.sh", "echo.scope=everything")
