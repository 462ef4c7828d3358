"""Every recipe script, run for real on this CPU (`PROFILE=cpu`): verl's trainer, the toy model, 2 steps.

What a cluster runs is what runs here: the same 8 scripts, with the profile swapping model, data, sizes,
platform and rollout backend and keeping every algorithm setting (and the GPU recipes' actor settings:
use_remove_padding, dynamic batch sizes, gradient checkpointing). Everything is read back from verl's file
logger, its rollout dump, its checkpoints and the resolved config the recipe wrote. The GRPO pair comes
from the smoke study (2 arms x 2 seeds through `python -m echorl_verl.study`), so the study harness and
the recipes share their runs. Further runs: verl's own main_ppo, a resumed run, advantage mode, and 2 FSDP
ranks on a Ray cluster started before the script (the multi-node path) with the echo term recomputed.
"""

import json
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import pytest
import torch
import yaml

from echo_testlib import toy_cache_dir

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = os.path.join(REPO, ".venv", "bin", "python") if os.path.exists(os.path.join(REPO, ".venv")) else sys.executable
ECHO_KEYS = ("echo/all_success_group_share", "echo/all_fail_group_share", "echo/clip_rollouts",
             "echo/clip_token_share", "echo/clip_len_mean", "echo/peak_rel_pos_mean", "echo/peak_entropy_mean",
             "actor/echo_loss")
#: the sizes of every run here: 16 prompts x 8 rollouts, two PPO mini-batches, 2 steps
SIZES = {"TRAIN_BATCH": "16", "MINI_BATCH": "8", "TOTAL_STEPS": "2"}


@pytest.fixture(scope="session")
def toy_dir():
    """The demo's toy model (0.4M parameters; built once into the cache, about 1.5 minutes on 2 idle cores)."""
    from echorl_verl.toy.build import BuildSettings, build

    out = toy_cache_dir("toy-default")
    build(out, BuildSettings(), progress=False)
    return out


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("VERL_", "ECHORL_")) and k not in ("PROFILE", "RAY_ADDRESS", "ENTRY", "SEED")}
    env.update(HF_HUB_OFFLINE="1", PYTHON=PYTHON, **extra)
    return env


def steps_of(run_dir):
    """{step: metrics} of every attempt of a run, through the report's own reader."""
    from echorl_verl.report.runlog import load_run

    steps = {}
    for row in load_run(str(run_dir)).records.itertuples():
        steps.setdefault(int(row.step), {})[row.metric] = float(row.value)
    return steps


def run_recipe(run_dir, script, *overrides, timeout=900, **env):
    proc = subprocess.run(["bash", os.path.join(REPO, "recipes", script), "trainer.val_before_train=False", *overrides],
                          env=clean_env(PROFILE="cpu", RUN_DIR=str(run_dir), TOY_DIR=TOY, **{**SIZES, **env}),
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return {"dir": run_dir, "steps": steps_of(run_dir), "stdout": proc.stdout,
            "config": yaml.safe_load(open(os.path.join(run_dir, "resolved_config.yaml")))}


TOY = toy_cache_dir("toy-default")
RUNS = {}


@pytest.fixture(scope="session")
def recipe_run(toy_dir, tmp_path_factory):
    """run(script) -> the run's metrics, config and folder; each recipe runs once per session."""

    def run(script, *overrides, key=None, **env):
        key = key or script
        if key not in RUNS:
            RUNS[key] = run_recipe(tmp_path_factory.mktemp(key.replace(".sh", "")), script, *overrides, **env)
        return RUNS[key]

    return run


@pytest.fixture(scope="session")
def smoke_study(toy_dir, tmp_path_factory):
    """The CI smoke study: GRPO baseline and GRPO + EchoRL, seeds 0 and 1, through the study harness, then its report."""
    root = tmp_path_factory.mktemp("smoke_study")
    spec = {"study_dir": str(root / "study"), "seeds": [0, 1], "baseline": "grpo",
            "env": {"PROFILE": "cpu", "TOY_DIR": TOY, "SAVE_FREQ": "2", **SIZES},
            "overrides": ["trainer.val_before_train=False"],
            "arms": {"grpo": {"recipe": "recipes/grpo_baseline_qwen.sh"},
                     "grpo_echo": {"recipe": "recipes/grpo_echo_qwen.sh"}}}
    (root / "smoke.yaml").write_text(yaml.safe_dump(spec))
    proc = subprocess.run([PYTHON, "-m", "echorl_verl.study", "run", str(root / "smoke.yaml")], env=clean_env(),
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = subprocess.run([PYTHON, "-m", "echorl_verl.study", "report", spec["study_dir"], "--out", str(root / "report")],
                            env=clean_env(), capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stdout[-3000:] + report.stderr[-3000:]
    runs = {}
    for arm in spec["arms"]:
        for seed in spec["seeds"]:
            run_dir = root / "study" / arm / f"seed{seed}"
            runs[arm, seed] = {"dir": run_dir, "steps": steps_of(run_dir),
                               "config": yaml.safe_load(open(run_dir / "resolved_config.yaml"))}
    return {"runs": runs, "report": (root / "report" / "report.md").read_text(), "stderr": proc.stderr}


def echo_run(recipe_run, smoke_study, algorithm):
    if algorithm == "grpo":
        return smoke_study["runs"]["grpo_echo", 0]
    # Dr.GRPO checkpoints its last step: the resume test continues that run
    return recipe_run(f"{algorithm}_echo_qwen.sh", **({"SAVE_FREQ": "2"} if algorithm == "drgrpo" else {}))


def baseline_run(recipe_run, smoke_study, algorithm):
    return smoke_study["runs"]["grpo", 0] if algorithm == "grpo" else recipe_run(f"{algorithm}_baseline_qwen.sh")


def assert_trained(steps):
    assert sorted(steps) == [1, 2]
    for step, m in steps.items():
        for key in ("actor/pg_loss", "actor/grad_norm", "critic/score/mean", "timing_s/step"):
            assert key in m and math.isfinite(float(m[key])), (step, key)


# ------------------------------------------------------------------ the 8 recipes
@pytest.mark.parametrize("algorithm", ["grpo", "drgrpo", "dapo", "gspo"])
def test_echo_recipe_selects_clips_and_trains(recipe_run, smoke_study, algorithm):
    run = echo_run(recipe_run, smoke_study, algorithm)
    assert_trained(run["steps"])
    for step, m in run["steps"].items():
        for key in ECHO_KEYS:
            assert key in m and math.isfinite(float(m[key])), (step, key)
        assert 0 <= m["echo/all_success_group_share"] <= 1 and m["reward/infra_error_rows"] == 0
    with_clips = [m for m in run["steps"].values() if m["echo/clip_rollouts"] > 0]
    assert with_clips, "no EchoClip selected in any step"
    for m in with_clips:
        assert m["actor/echo_loss"] > 0 and m["echo/clip_len_mean"] >= 1
        assert m["echo/clip_rollouts"] <= round(m["echo/all_success_group_share"] * 16) * 8  # all-success groups only
    # the actor settings of the GPU recipes ran here too
    model, actor = run["config"]["actor_rollout_ref"]["model"], run["config"]["actor_rollout_ref"]["actor"]
    assert model["use_remove_padding"] and model["enable_gradient_checkpointing"] and actor["use_dynamic_bsz"]


@pytest.mark.parametrize("algorithm", ["grpo", "drgrpo", "dapo", "gspo"])
def test_baseline_recipe_has_no_echo_term(recipe_run, smoke_study, algorithm):
    run = baseline_run(recipe_run, smoke_study, algorithm)
    assert_trained(run["steps"])
    for m in run["steps"].values():
        assert not [k for k in m if k.startswith("echo/") or "echo_" in k]


def test_the_profile_keeps_each_algorithms_settings(recipe_run, smoke_study):
    cfg = {a: echo_run(recipe_run, smoke_study, a)["config"] for a in ("grpo", "drgrpo", "dapo", "gspo")}
    assert cfg["drgrpo"]["actor_rollout_ref"]["actor"]["loss_scale_factor"] == 96  # = the profile's MAX_RESPONSE
    assert cfg["dapo"]["reward"]["reward_manager"]["name"] == "dapo"
    assert cfg["dapo"]["reward"]["reward_kwargs"]["overlong_buffer_cfg"]["len"] == 19
    assert cfg["gspo"]["actor_rollout_ref"]["actor"]["policy_loss"]["loss_mode"] == "gspo"
    assert all(c["actor_rollout_ref"]["rollout"]["name"] == "hf" for c in cfg.values())


def group_outcomes(run_dir):
    """Per dumped step: (all-success groups, all-fail groups, groups), scored by the toy reward itself."""
    from echorl_verl.toy.reward import compute_score

    out = {}
    for name in sorted(os.listdir(os.path.join(run_dir, "rollouts"))):
        groups = {}
        for line in open(os.path.join(run_dir, "rollouts", name)):
            row = json.loads(line)
            acc = float(compute_score("echorl/addition", row["output"], row["gts"])["acc"])
            groups.setdefault(row["uid"].split("_")[0], []).append(acc)
        out[int(name.split(".")[0])] = (sum(all(g) for g in groups.values()), sum(not any(g) for g in groups.values()),
                                       len(groups))
    return out


def test_dapo_with_echo_keeps_all_success_groups_and_drops_all_fail(recipe_run):
    echo, base = group_outcomes(recipe_run("dapo_echo_qwen.sh")["dir"]), group_outcomes(recipe_run("dapo_baseline_qwen.sh")["dir"])
    assert all(fail == 0 for _, fail, _ in echo.values()) and all(fail == 0 for _, fail, _ in base.values())
    assert sum(success for success, _, _ in echo.values()) > 0  # echo's input reached the trainer ...
    assert all(success == 0 for success, _, _ in base.values())  # ... where DAPO alone drops it
    assert all(n == 16 for _, _, n in echo.values()) and all(n == 16 for _, _, n in base.values())


def test_the_rollout_dump_carries_clip_facts(smoke_study):
    run_dir = smoke_study["runs"]["grpo_echo", 0]["dir"]
    rows = [json.loads(line) for line in open(run_dir / "rollouts" / "1.jsonl")]
    assert len(rows) == 16 * 8 and all(row["echo"]["version"] == 1 for row in rows)
    clipped = [row["echo"] for row in rows if row["echo"]["selected"]]
    assert len(clipped) == smoke_study["runs"]["grpo_echo", 0]["steps"][1]["echo/clip_rollouts"]
    assert all(0 < fact["clip_len"] <= fact["response_tokens"] for fact in clipped)


# ------------------------------------------------------------------ GRPO: weights, verl's own main_ppo
def final_weights(run):
    path = os.path.join(run["dir"], "checkpoints", "global_step_2", "actor", "model_world_size_1_rank_0.pt")
    state = torch.load(path, weights_only=False, map_location="cpu")
    return {k: (v.full_tensor() if hasattr(v, "full_tensor") else v) for k, v in state.items()}


def test_echo_and_baseline_change_every_weight(smoke_study):
    from safetensors.torch import load_file

    init = load_file(os.path.join(TOY, "model", "model.safetensors"))
    for arm in ("grpo", "grpo_echo"):
        final = final_weights(smoke_study["runs"][arm, 0])
        assert sum(not torch.equal(final[k].float(), init[k].float()) for k in init) == len(init), arm


@pytest.fixture(scope="session")
def verl_main(recipe_run):
    """verl's unmodified `python -m verl.trainer.main_ppo` (recipes/cpu_grpo_baseline.sh, ENTRY=verl), seed 0."""
    return recipe_run("cpu_grpo_baseline.sh", SEED="0", SAVE_FREQ="2")  # as the smoke study


def test_verls_own_main_ppo_runs_and_syncs_weights(verl_main):
    assert_trained(verl_main["steps"])
    assert verl_main["steps"][1]["actor/grad_norm"] > 0  # the weights changed at step 1 ...
    assert verl_main["steps"][2]["training/rollout_probs_diff_max"] < 1e-3  # ... and step 2's rollout used them


def test_echo_off_is_verls_own_trainer(smoke_study, verl_main):
    """echo.enable=false runs verl's TaskRunner and trainer: the same metrics as verl's main_ppo, on the same
    prompts (same seed). The HF rollout's samples are not bit-reproducible across runs (batching depends on
    timing), so rollout statistics are not compared."""
    ours, theirs = smoke_study["runs"]["grpo", 0]["steps"], verl_main["steps"]
    for step in ours:
        assert set(ours[step]) == set(theirs[step])
        assert ours[step]["prompt_length/mean"] == theirs[step]["prompt_length/mean"]


def test_echo_adds_its_metrics_and_nothing_else(smoke_study):
    on, off = set(smoke_study["runs"]["grpo_echo", 0]["steps"][1]), set(smoke_study["runs"]["grpo", 0]["steps"][1])
    assert off <= on
    assert on - off == {k for k in on if k.startswith("echo/")} | {"actor/echo_loss", "timing_s/echo_select",
                                                                   "reward/infra_error_rows"}


# ------------------------------------------------------------------ the smoke study
def test_seeds_change_the_run(smoke_study):
    runs = smoke_study["runs"]
    assert runs["grpo", 0]["config"]["data"]["seed"] == 0 and runs["grpo", 1]["config"]["data"]["seed"] == 1
    a, b = runs["grpo", 0]["steps"][1], runs["grpo", 1]["steps"][1]
    assert a["prompt_length/mean"] != b["prompt_length/mean"] or a["critic/score/mean"] != b["critic/score/mean"]


def test_the_smoke_study_report(smoke_study):
    report = smoke_study["report"]
    assert "grpo_echo" in report and "grpo" in report


# ------------------------------------------------------------------ resume, advantage mode
def test_a_resumed_run_continues_with_echo_and_loses_nothing(recipe_run, smoke_study):
    """Attempt 1 (the Dr.GRPO + EchoRL recipe run) trained 2 steps and checkpointed; attempt 2, the same command
    with 4 steps (trainer.resume_mode=auto, verl's default), goes on to step 4. Each attempt has its own metrics
    file; the report reads both."""
    run_dir = echo_run(recipe_run, smoke_study, "drgrpo")["dir"]
    second = run_recipe(run_dir, "drgrpo_echo_qwen.sh", "trainer.resume_mode=auto", SAVE_FREQ="2", TOTAL_STEPS="4")
    assert {"metrics.jsonl", "metrics.1.jsonl"} <= set(os.listdir(run_dir))
    first_file = [json.loads(line)["step"] for line in open(run_dir / "metrics.jsonl")]
    second_file = [json.loads(line)["step"] for line in open(run_dir / "metrics.1.jsonl")]
    assert set(first_file) == {1, 2} and set(second_file) == {3, 4}  # attempt 2 started from the checkpoint
    assert sorted(second["steps"]) == [1, 2, 3, 4]
    for step in (3, 4):
        assert "echo/clip_rollouts" in second["steps"][step] and "actor/echo_loss" in second["steps"][step]
    summary = subprocess.run([PYTHON, "-m", "echorl_verl.report", "summary", str(run_dir)], capture_output=True,
                             text=True, env=clean_env(), timeout=120)
    assert summary.returncode == 0 and "4" in summary.stdout, summary.stderr


def test_advantage_mode_end_to_end(recipe_run):
    run = recipe_run("grpo_echo_qwen.sh", "echo.mode=advantage", key="advantage_mode", TOTAL_STEPS="1")
    m = run["steps"][1]
    assert "actor/echo_loss" not in m  # verl's own loss: the signal is in the advantages
    assert m["echo/fold_value"] > 0 if m["echo/clip_rollouts"] > 0 else m["echo/fold_value"] == 0
    assert run["config"]["algorithm"]["adv_estimator"] == "grpo"


# ------------------------------------------------------------------ many nodes: a Ray cluster started first
def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def cluster_run(toy_dir, tmp_path_factory):
    """GRPO + EchoRL on 2 FSDP ranks, joining a Ray cluster that `ray start` began in an environment without
    the run's variables (as on a cluster): metrics reach the run folder only if the driver forwards
    VERL_FILE_LOGGER_PATH. One mini-batch per step, so step 1's echo loss is the initial model's."""
    ray = os.path.join(os.path.dirname(PYTHON), "ray")
    port = _free_port()
    env = clean_env()
    # its own temp dir (short: Ray's socket paths must stay under 108 bytes), so that only this cluster is stopped
    # afterwards; `ray stop` would stop every Ray instance of the machine, other users' training runs included
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    start = subprocess.run([ray, "start", "--head", f"--temp-dir={temp}", "--node-ip-address=127.0.0.1", f"--port={port}",
                            "--num-cpus=16", "--num-gpus=2", "--include-dashboard=false", "--disable-usage-stats"],
                           env=env, capture_output=True, text=True, timeout=180)
    assert start.returncode == 0, start.stderr[-2000:]
    try:
        run_dir = tmp_path_factory.mktemp("cluster")
        # scope=all_successes: clips from every success rollout, so that step 1 surely has some to recompute.
        # RAY_AUTH_MODE=token: Ray 2.60's `ray start` turns on token authentication for its clients.
        return run_recipe(run_dir, "grpo_echo_qwen.sh", "~ray_kwargs.ray_init.num_cpus", "~ray_kwargs.ray_init.num_gpus",
                          "echo.scope=all_successes",
                          RAY_ADDRESS=f"127.0.0.1:{port}", RAY_AUTH_MODE="token", GPUS_PER_NODE="2",
                          MINI_BATCH="16", TOTAL_STEPS="1", ECHORL_DUMP_TOKEN_IDS="1")
    finally:
        for signal in ("-TERM", "-KILL"):
            subprocess.run(["pkill", signal, "-f", temp], capture_output=True)
            time.sleep(3)
        shutil.rmtree(temp, ignore_errors=True)


def test_a_cluster_started_first_gets_the_metrics_path(cluster_run):
    assert sorted(cluster_run["steps"]) == [1]
    assert cluster_run["config"]["trainer"]["n_gpus_per_node"] == 2


def test_the_echo_term_is_exact_with_packing_dynamic_batches_and_two_ranks(cluster_run):
    """actor/echo_loss of step 1 against a recomputation: the initial model's token-mean NLL over every clip
    token of the step (prompt and response ids and the clip mask come from the rollout dump)."""
    from transformers import AutoModelForCausalLM

    m = cluster_run["steps"][1]
    assert m["echo/clip_rollouts"] > 0
    model = AutoModelForCausalLM.from_pretrained(os.path.join(TOY, "model"), dtype=torch.float64).eval()
    nll, tokens = 0.0, 0
    for line in open(cluster_run["dir"] / "rollouts" / "1.jsonl"):
        fact = json.loads(line)["echo"]
        if not fact["selected"]:
            continue
        ids = torch.tensor([fact["prompt_ids"] + fact["response_ids"]])
        with torch.no_grad():
            logp = torch.log_softmax(model(ids).logits[0, :-1].double(), -1)
        start = len(fact["prompt_ids"])
        targets = ids[0, start:]
        token_logp = logp[start - 1:].gather(-1, targets[:, None])[:, 0]
        mask = torch.tensor(fact["clip_mask"], dtype=torch.bool)
        nll -= float(token_logp[mask].sum())
        tokens += int(mask.sum())
    assert m["actor/echo_loss"] == pytest.approx(nll / tokens, rel=1e-4)


def test_the_clip_viewer_on_a_real_run_opens_in_chromium(smoke_study, tmp_path):
    """`python -m echorl_verl.report clips RUN_DIR` on the smoke study's echo run, looked at in headless Chromium."""
    run_dir = smoke_study["runs"]["grpo_echo", 0]["dir"]
    out = tmp_path / "clips.html"
    proc = subprocess.run([PYTHON, "-m", "echorl_verl.report", "clips", str(run_dir), "--out", str(out)],
                          capture_output=True, text=True, env=clean_env(), timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    page = out.read_text()
    assert "clip ends at token" in page and os.path.exists(str(out).replace(".html", ".png"))
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("needs Chromium (make test installs Debian's chromium when it can): the page was checked as HTML only")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0", "--dump-dom"]
    done = subprocess.run([chromium, *flags, f"file://{out}"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "clip ends at token" in done.stdout
    assert [line for line in done.stderr.splitlines() if ":CONSOLE" in line] == []
