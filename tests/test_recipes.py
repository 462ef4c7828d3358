"""The 8 GPU recipe scripts with DRY_RUN=1 on this machine (no GPU): the real script, the real start-up
checks of `python -m echorl_verl.main_ppo`, and the resolved config it writes, read back and checked
against what each recipe promises (the authors' settings, the findings of the cluster review).

The model is a config.json-only folder with 16384 positions (the recipes' default is a hub id, which
cannot be read here: that case is checked to be reported as skipped, not passed); the data are the
shared benchmark rows.
"""

import json
import os
import pathlib
import shutil
import subprocess

import pytest
import yaml

from echo_testlib import shared_benchmarks_dir

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
ALGORITHMS = ("grpo", "drgrpo", "dapo", "gspo")
SUITE = os.path.join(shared_benchmarks_dir(), "math_eval_suite.parquet")
pytestmark = pytest.mark.skipif(not os.path.exists(SUITE), reason="shared benchmark rows not found")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("qwen16k")
    (folder / "config.json").write_text(json.dumps({"model_type": "qwen2", "max_position_embeddings": 16384}))
    return str(folder)


def dry_run(tmp_path, script, *overrides, cwd=None, **env):
    """DRY_RUN=1 of a recipe, called from `cwd`; RUN_DIR (default tmp_path/<script>) may be relative to it."""
    env.setdefault("RUN_DIR", str(tmp_path / script.replace(".sh", "")))
    run_dir = pathlib.Path(cwd or os.getcwd()) / env["RUN_DIR"]
    environ = {k: v for k, v in os.environ.items()
               if not k.startswith(("VERL_", "ECHORL_")) and k not in ("PROFILE", "RAY_ADDRESS", "ENTRY", "SEED")}
    environ.update({"DRY_RUN": "1", "TRAIN_FILES": SUITE, "VAL_FILES": f"[{SUITE}]", "HF_HUB_OFFLINE": "1",
                    "PYTHON": os.path.join(REPO, ".venv", "bin", "python") if os.path.exists(os.path.join(REPO, ".venv"))
                    else "python3", **env})
    proc = subprocess.run(["bash", os.path.join(REPO, "recipes", script), *overrides], capture_output=True, text=True,
                          env=environ, cwd=cwd, timeout=300)
    return proc, run_dir


def resolved(tmp_path, script, *overrides, **env):
    proc, run_dir = dry_run(tmp_path, script, *overrides, **env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "[echorl] dry run: every start-up check passed; nothing was trained" in proc.stderr
    assert not (run_dir / "checkpoints").exists() and not list(run_dir.glob("metrics*.jsonl"))
    with open(run_dir / "resolved_config.yaml") as handle:
        config = yaml.safe_load(handle)
    # stdout: the command, then the same resolved config
    assert "-m echorl_verl.main_ppo" in proc.stdout.splitlines()[1]
    assert yaml.safe_load("\n".join(proc.stdout.splitlines()[2:])) == config
    return config, proc


@pytest.fixture(scope="module")
def configs(tmp_path_factory, model):
    tmp = tmp_path_factory.mktemp("dry")
    return {(a, kind): resolved(tmp, f"{a}_{kind}_qwen.sh", MODEL_PATH=model)[0]
            for a in ALGORITHMS for kind in ("echo", "baseline")}


def flat(tree, prefix=""):
    if isinstance(tree, dict):
        return {k: v for key, sub in tree.items() for k, v in flat(sub, f"{prefix}{key}.").items()}
    return {prefix[:-1]: tree}


#: keys that name the run (its label and folders): they differ between any two runs
RUN_NAMING = ("experiment_name", "default_local_dir", "VERL_FILE_LOGGER_PATH", "rollout_data_dir")


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_echo_and_baseline_differ_only_in_echo(configs, algorithm):
    echo, base = configs[(algorithm, "echo")], configs[(algorithm, "baseline")]
    assert echo["echo"]["enable"] is True and echo["echo"]["coef"] == 0.001
    assert base["echo"]["enable"] is False
    a, b = flat(echo), flat(base)
    differ = {k for k in a.keys() | b.keys() if a.get(k) != b.get(k) and not k.endswith(RUN_NAMING)}
    assert differ and all(k.startswith("echo.") for k in differ), sorted(differ)
    assert echo["trainer"]["experiment_name"] == f"{algorithm}_echo_qwen"
    assert base["trainer"]["experiment_name"] == f"{algorithm}_baseline_qwen"  # the baseline script's own name


def test_every_recipe_has_the_cluster_fixes(configs):
    for (algorithm, kind), cfg in configs.items():
        actor, rollout = cfg["actor_rollout_ref"]["actor"], cfg["actor_rollout_ref"]["rollout"]
        assert cfg["trainer"]["max_actor_ckpt_to_keep"] == 2  # finding 3: not ~100 x 90 GB
        assert rollout["name"] == "vllm" and rollout["gpu_memory_utilization"] == 0.8
        assert actor["ppo_max_token_len_per_gpu"] == 32768 and actor["use_dynamic_bsz"] is True
        assert cfg["actor_rollout_ref"]["model"]["use_remove_padding"] is True
        assert cfg["reward"]["custom_reward_function"]["path"] == "pkg://echorl_verl.rewards"
        assert cfg["reward"]["custom_reward_function"]["reward_kwargs"]["math_format"] == "think"  # finding 7
        if kind == "echo":
            assert cfg["echo"]["boundary_token_ids"] == [198, 271]  # finding 6: the authors' Qwen2.5 ids


def test_algorithm_settings(configs):
    grpo, drgrpo = configs[("grpo", "echo")], configs[("drgrpo", "echo")]
    dapo, gspo = configs[("dapo", "echo")], configs[("gspo", "echo")]
    assert grpo["algorithm"]["norm_adv_by_std_in_grpo"] is True
    assert drgrpo["algorithm"]["norm_adv_by_std_in_grpo"] is False
    actor = drgrpo["actor_rollout_ref"]["actor"]
    assert actor["loss_agg_mode"] == "seq-mean-token-sum-norm" and actor["loss_scale_factor"] == 8192  # finding 4
    actor = dapo["actor_rollout_ref"]["actor"]
    assert (actor["clip_ratio_low"], actor["clip_ratio_high"], actor["clip_ratio_c"], actor["entropy_coeff"]) == (0.2, 0.28, 10.0, 0)
    assert dapo["algorithm"]["filter_groups"]["enable"] is True and dapo["algorithm"]["filter_groups"]["metric"] == "acc"
    assert dapo["reward"]["reward_manager"]["name"] == "dapo"  # finding 5: overlong shaping
    assert dapo["reward"]["reward_kwargs"]["overlong_buffer_cfg"] == {"enable": True, "len": 1638, "penalty_factor": 1.0, "log": True}
    assert dapo["reward"]["reward_kwargs"]["max_resp_len"] == 8192
    assert dapo["echo"]["success_key"] == "acc" and dapo["echo"]["dapo_keep_all_success"] is True
    actor = gspo["actor_rollout_ref"]["actor"]
    assert actor["policy_loss"]["loss_mode"] == "gspo" and (actor["clip_ratio_low"], actor["clip_ratio_high"]) == (0.0003, 0.0004)
    # what every algorithm shares (recipes/common.sh), where the algorithm does not set its own
    for cfg in configs.values():
        assert cfg["algorithm"]["use_kl_in_reward"] is False and cfg["actor_rollout_ref"]["actor"]["use_kl_loss"] is False
    for cfg in (grpo, drgrpo, dapo):
        assert cfg["actor_rollout_ref"]["actor"]["policy_loss"]["loss_mode"] == "vanilla"
    for actor in (grpo["actor_rollout_ref"]["actor"], drgrpo["actor_rollout_ref"]["actor"]):
        assert (actor["clip_ratio_low"], actor["clip_ratio_high"]) == (0.2, 0.2)


def test_environment_and_overrides_win(tmp_path, model):
    cfg, _ = resolved(tmp_path, "grpo_echo_qwen.sh", "echo.clip_mode=full_response", "trainer.total_training_steps=7",
                      MODEL_PATH=model, NNODES="4", ECHO_COEF="0.01", MAX_CKPT_TO_KEEP="5", BOUNDARY_IDS="", SEED="3")
    assert cfg["trainer"]["nnodes"] == 4 and cfg["trainer"]["max_actor_ckpt_to_keep"] == 5
    assert cfg["echo"]["coef"] == 0.01 and cfg["echo"]["clip_mode"] == "full_response"
    assert cfg["echo"]["boundary_token_ids"] is None and cfg["echo"]["seed"] == 3
    assert cfg["data"]["seed"] == 3 and cfg["actor_rollout_ref"]["rollout"]["seed"] == 3
    assert cfg["actor_rollout_ref"]["actor"]["data_loader_seed"] == 3
    assert cfg["trainer"]["total_training_steps"] == 7


def test_the_driver_environment_reaches_the_ray_workers(tmp_path, model):
    cfg, _ = resolved(tmp_path, "grpo_echo_qwen.sh", MODEL_PATH=model, WANDB_PROJECT="echo", WANDB_API_KEY="s3cret")
    env_vars = cfg["ray_kwargs"]["ray_init"]["runtime_env"]["env_vars"]
    assert env_vars["VERL_FILE_LOGGER_PATH"] == str(tmp_path / "grpo_echo_qwen" / "metrics.jsonl")
    assert env_vars["WANDB_PROJECT"] == "echo" and "WANDB_API_KEY" not in env_vars


def test_the_default_hub_model_is_a_skipped_check(tmp_path):
    cfg, proc = resolved(tmp_path, "grpo_echo_qwen.sh")
    assert cfg["actor_rollout_ref"]["model"]["path"] == "Elliott/Qwen2.5-Math-7B-16k-think"
    assert "context length: skipped, could not fetch config.json of Elliott/Qwen2.5-Math-7B-16k-think" in proc.stderr
    assert "attention: skipped" in proc.stderr  # flash-attn: checked where CUDA is


@pytest.mark.parametrize("override, env, message", [
    ((), {"MAX_RESPONSE": "20000"}, r"max_position_embeddings \(16384"),
    (("echo.scope=everything",), {}, "echo.scope='everything' is not valid"),
    (("algorithm.rollout_correction.bypass_mode=True",), {}, "bypass_mode=True"),
    ((), {"NNODES": "3"}, "do not split over 24 data-parallel ranks"),
    ((), {"ECHO_ENABLE": "no"}, r"ECHO_ENABLE=no: use true \(default\) or false"),
])
def test_a_failed_check_stops_the_dry_run(tmp_path, model, override, env, message):
    import re

    proc, run_dir = dry_run(tmp_path, "grpo_echo_qwen.sh", *override, MODEL_PATH=model, **env)
    assert proc.returncode == 2 and re.search(message, proc.stderr), proc.stderr[-2000:]
    assert "dry run: every start-up check passed" not in proc.stderr


def test_the_stock_4096_position_model_is_refused(tmp_path):
    folder = tmp_path / "qwen4k"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "qwen2", "max_position_embeddings": 4096}))
    proc, _ = dry_run(tmp_path, "drgrpo_echo_qwen.sh", MODEL_PATH=str(folder))
    assert proc.returncode == 2
    assert "9216 > the model's max_position_embeddings (4096" in proc.stderr and "extend_context" in proc.stderr


def test_extend_context_writes_a_model_the_check_accepts(tmp_path):
    from echorl_verl.tools.extend_context import main

    src = tmp_path / "src"
    src.mkdir()
    (src / "config.json").write_text(json.dumps({"model_type": "qwen2", "max_position_embeddings": 4096, "rope_theta": 10000.0}))
    (src / "model.safetensors").write_bytes(b"weights")
    (src / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 4096}))
    assert main([str(src), str(tmp_path / "dst"), "--max_positions", "16384", "--rope_theta", "40000"]) == 0
    config = json.loads((tmp_path / "dst" / "config.json").read_text())
    assert config["max_position_embeddings"] == 16384 and config["rope_theta"] == 40000.0
    assert json.loads((tmp_path / "dst" / "tokenizer_config.json").read_text())["model_max_length"] == 16384
    assert os.path.islink(tmp_path / "dst" / "model.safetensors")
    assert json.loads((src / "config.json").read_text())["max_position_embeddings"] == 4096  # SRC untouched
    assert main([str(src), str(tmp_path / "dst")]) == 2  # DST exists: refused, nothing changed
    proc, _ = dry_run(tmp_path, "drgrpo_echo_qwen.sh", MODEL_PATH=str(tmp_path / "dst"))
    assert proc.returncode == 0, proc.stderr[-2000:]


# ---- where paths are read: the dry run checks what the run will run ---------------------------------------------
def test_a_relative_path_means_the_same_file_in_the_dry_run_and_in_the_run(tmp_path, model):
    """The run starts in RUN_DIR. The paths a recipe takes from the environment are read against the caller's
    directory and made absolute first, and the dry run starts in RUN_DIR as the run does: a relative path in a
    Hydra override is then found (or not) by both alike. Before, the dry run checked from the caller's
    directory what the run would look for in RUN_DIR."""
    caller = tmp_path / "caller"
    (caller / "data").mkdir(parents=True)
    shutil.copy(SUITE, caller / "data" / "suite.parquet")
    shutil.copytree(model, caller / "qwen16k")
    env = dict(cwd=caller, RUN_DIR="run", MODEL_PATH="qwen16k", TRAIN_FILES="data/suite.parquet",
               VAL_FILES="[data/suite.parquet, './data/suite.parquet']")
    cfg, proc = resolved(tmp_path, "grpo_echo_qwen.sh", **env)
    suite, run_dir = str(caller / "data" / "suite.parquet"), caller / "run"
    assert cfg["data"]["train_files"] == suite and cfg["data"]["val_files"] == [suite, suite]
    assert cfg["actor_rollout_ref"]["model"]["path"] == str(caller / "qwen16k")
    assert cfg["trainer"]["default_local_dir"] == str(run_dir / "checkpoints")
    assert proc.stdout.splitlines()[0].endswith(f"in {run_dir}: the command would be")
    assert (run_dir / "outputs").is_dir() and not (caller / "outputs").exists()  # Hydra ran in RUN_DIR

    # a Hydra override is not the recipe's to resolve: found from RUN_DIR, as the run would find it
    proc, _ = dry_run(tmp_path, "grpo_echo_qwen.sh", "data.val_files=[data/suite.parquet]", **env)
    assert proc.returncode == 2 and "data.val_files: data/suite.parquet does not exist" in proc.stderr, proc.stderr[-2000:]
    (run_dir / "data").mkdir()
    shutil.copy(SUITE, run_dir / "data" / "suite.parquet")
    cfg, _ = resolved(tmp_path, "grpo_echo_qwen.sh", "data.val_files=[data/suite.parquet]", **env)
    assert cfg["data"]["val_files"] == ["data/suite.parquet"]


# ---- the profiles ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cpu_profile(quick_build):
    """The environment of PROFILE=cpu on the quick toy build (built once, cached)."""
    from echorl_verl.toy.build import paths

    toy = paths(quick_build)
    return dict(PROFILE="cpu", TOY_DIR=quick_build, TOY_BUILD_ARGS="--quick", TRAIN_FILES=toy["train"],
                VAL_FILES=toy["val"])


def test_the_cpu_profile_sets_its_defaults_before_the_recipe(tmp_path, cpu_profile):
    """The profile's defaults come first: the recipe's own defaults that derive from them follow them
    (Dr.GRPO divides by the profile's MAX_RESPONSE), and every algorithm and echo setting stays the recipe's."""
    cfg, _ = resolved(tmp_path, "drgrpo_echo_qwen.sh", **cpu_profile)
    actor = cfg["actor_rollout_ref"]["actor"]
    assert cfg["data"]["max_response_length"] == 96 and actor["loss_scale_factor"] == 96
    assert actor["loss_agg_mode"] == "seq-mean-token-sum-norm" and cfg["algorithm"]["norm_adv_by_std_in_grpo"] is False
    assert cfg["actor_rollout_ref"]["model"]["path"] == os.path.join(cpu_profile["TOY_DIR"], "model")
    assert cfg["echo"]["enable"] is True and cfg["echo"]["boundary_token_ids"] is None  # the toy's newlines
    assert cfg["trainer"]["device"] == "cpu"
    ray_init = cfg["ray_kwargs"]["ray_init"]
    assert ray_init["num_cpus"] == 16 and ray_init["num_gpus"] == 1  # a Ray the driver starts itself


def test_the_cpu_profile_leaves_a_cluster_started_first_its_own_sizes(tmp_path, cpu_profile):
    """With RAY_ADDRESS set the driver joins a cluster that `ray start --num-cpus/--num-gpus` sized, and
    ray.init refuses sizes when it connects: the profile adds none (before, the user had to remove them
    with `~ray_kwargs.ray_init.num_cpus` and `~ray_kwargs.ray_init.num_gpus`)."""
    cfg, _ = resolved(tmp_path, "grpo_echo_qwen.sh", RAY_ADDRESS="127.0.0.1:6379", GPUS_PER_NODE="2", **cpu_profile)
    ray_init = cfg["ray_kwargs"]["ray_init"]
    assert ray_init["num_cpus"] is None and "num_gpus" not in ray_init  # verl's defaults
    assert ray_init["runtime_env"]["env_vars"]["VERL_PLATFORM"] == "cpu"  # the rest of the CPU profile stays
    assert cfg["trainer"]["n_gpus_per_node"] == 2 and cfg["trainer"]["device"] == "cpu"


@pytest.mark.parametrize("raw", [dict(WARMUP_STEPS="0"), "MODEL_PATH"])
def test_the_smollm2_profile_with_the_raw_model(tmp_path, smollm2_build, raw):
    """PROFILE=smollm2 without its warm-up (WARMUP_STEPS=0, or a MODEL_PATH of one's own, which a `$(... && ...)`
    under `set -e` once ended silently with exit code 1): the two worked examples that a raw model needs, task data
    in a folder of its own settings, and the profile's bf16 actor."""
    import pandas as pd

    env = raw if isinstance(raw, dict) else {"MODEL_PATH": os.path.join(smollm2_build, "model")}
    cfg, _ = resolved(tmp_path, "grpo_echo_qwen.sh", PROFILE="smollm2", SMOLLM2_DIR=smollm2_build, TRAIN_FILES="",
                      VAL_FILES="", **env)
    assert cfg["actor_rollout_ref"]["model"]["path"] == os.path.join(smollm2_build, "model")
    task = os.path.join(smollm2_build, "tasks", "ops2-val256-shots2", "data")
    assert cfg["data"]["train_files"] == os.path.join(task, "train.parquet")
    val = pd.read_parquet(os.path.join(task, "val.parquet"))
    assert len(val) == 256 and len(val["prompt"][0]) == 5  # two worked examples (4 turns), then the question
    actor = cfg["actor_rollout_ref"]["actor"]
    assert actor["fsdp_config"]["mixed_precision"]["param_dtype"] == "bf16" and actor["fsdp_config"]["dtype"] == "float32"
    assert cfg["actor_rollout_ref"]["model"]["enable_gradient_checkpointing"] is False


def test_an_unknown_profile_is_refused(tmp_path):
    proc, _ = dry_run(tmp_path, "grpo_echo_qwen.sh", PROFILE="tpu")
    assert proc.returncode == 2
    assert "PROFILE=tpu: no recipes/profile_tpu.sh; use one of: gpu cpu" in proc.stderr, proc.stderr


# ---- ENTRY=verl: verl's own main_ppo, for the baselines ----------------------------------------------------------
def test_entry_verl_runs_a_baseline_through_verls_main_ppo(tmp_path, model):
    proc, _ = dry_run(tmp_path, "gspo_baseline_qwen.sh", MODEL_PATH=model, ENTRY="verl")
    assert proc.returncode == 0, proc.stderr[-2000:]
    command = proc.stdout.splitlines()[1]
    assert "-m verl.trainer.main_ppo" in command and " echo." not in command  # verl has no echo group
    assert "actor_rollout_ref.actor.policy_loss.loss_mode=gspo" in command
    proc, _ = dry_run(tmp_path, "gspo_echo_qwen.sh", MODEL_PATH=model, ENTRY="verl")
    assert proc.returncode == 2 and "ENTRY=verl runs verl's own main_ppo, which has no EchoRL" in proc.stderr
