"""End to end on this CPU: verl's real trainer with EchoRL on, with it off, and verl's own main_ppo.

Three runs of 2 steps (32 prompts x 8 rollouts, two PPO mini-batches per step) with the toy addition model,
through the recipes a user runs (recipes/cpu_demo.sh, recipes/cpu_grpo_baseline.sh). Everything is read
back from verl's own file logger (JSONL) and checkpoint.
"""

import json
import math
import os
import subprocess

import pytest
import torch

from echo_testlib import toy_cache_dir
from echorl_verl.toy.build import BuildSettings, build, paths

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 2
ECHO_KEYS = ("echo/all_success_group_share", "echo/all_fail_group_share", "echo/clip_rollouts",
             "echo/clip_token_share", "echo/clip_len_mean", "echo/peak_rel_pos_mean", "echo/peak_entropy_mean",
             "actor/echo_loss")


@pytest.fixture(scope="module")
def toy():
    """The demo's model (0.4M parameters; built once into the cache, about 1.5 minutes on 2 idle cores)."""
    out = toy_cache_dir("toy-default")
    build(out, BuildSettings(), progress=False)
    return paths(out)


def run(tmp_path_factory, toy, script, name, *overrides):
    run_dir = tmp_path_factory.mktemp(name)
    env = dict(os.environ, TOY_DIR=os.path.dirname(toy["model"]), STEPS=str(STEPS), TRAIN_BATCH="32",
               RUN_DIR=str(run_dir), NAME=name)
    env.pop("VERL_FILE_LOGGER_PATH", None)
    proc = subprocess.run(["bash", os.path.join(REPO, "recipes", script), "trainer.val_before_train=False",
                           f"trainer.save_freq={STEPS}", *overrides], env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    records = [json.loads(line) for line in open(run_dir / "metrics.jsonl")]
    steps = {r["step"]: r["data"] for r in records if "critic/score/mean" in r["data"]}
    assert sorted(steps) == list(range(1, STEPS + 1))
    return {"dir": run_dir, "steps": steps, "stdout": proc.stdout, "name": name}


@pytest.fixture(scope="module")
def echo_on(tmp_path_factory, toy):
    return run(tmp_path_factory, toy, "cpu_demo.sh", "echo_on")


@pytest.fixture(scope="module")
def echo_off(tmp_path_factory, toy):
    return run(tmp_path_factory, toy, "cpu_demo.sh", "echo_off", "echo.enable=false")


@pytest.fixture(scope="module")
def verl_baseline(tmp_path_factory, toy):
    return run(tmp_path_factory, toy, "cpu_grpo_baseline.sh", "verl_baseline")


def final_weights(result):
    path = result["dir"] / "checkpoints" / "echorl_cpu" / result["name"] / f"global_step_{STEPS}" / "actor"
    state = torch.load(path / "model_world_size_1_rank_0.pt", weights_only=False, map_location="cpu")
    return {k: (v.full_tensor() if hasattr(v, "full_tensor") else v) for k, v in state.items()}


def initial_weights(toy):
    from safetensors.torch import load_file

    return load_file(os.path.join(toy["model"], "model.safetensors"))


def test_echo_run_selects_clips_and_trains(echo_on, toy):
    steps = echo_on["steps"]
    for step, m in steps.items():
        for key in ECHO_KEYS + ("actor/pg_loss", "actor/loss", "actor/grad_norm", "critic/score/mean"):
            assert key in m and math.isfinite(float(m[key])), (step, key, m.get(key))
        assert 0 <= m["echo/all_success_group_share"] <= 1 and 0 <= m["echo/clip_token_share"] <= 1
    assert sum(m["echo/clip_rollouts"] for m in steps.values()) >= 1, "no EchoClip selected in any step"
    with_clips = [m for m in steps.values() if m["echo/clip_rollouts"] > 0]
    assert all(m["actor/echo_loss"] > 0 and m["echo/clip_len_mean"] >= 1 for m in with_clips)
    # clips only come from all-success groups (default scope): clip rollouts <= 8 x all-success groups
    for m in with_clips:
        assert m["echo/all_success_group_share"] > 0
        assert m["echo/clip_rollouts"] <= round(m["echo/all_success_group_share"] * 32) * 8
    # the weights changed
    init, final = initial_weights(toy), final_weights(echo_on)
    assert sum(not torch.equal(final[k].float(), init[k].float()) for k in init) == len(init)
    # the demo ends with its summary and the metrics path
    assert "EchoClip token share" in echo_on["stdout"] and "metrics file:" in echo_on["stdout"]


def test_echo_off_has_no_echo_term(echo_off, toy):
    for m in echo_off["steps"].values():
        assert not [k for k in m if k.startswith("echo/") or "echo_loss" in k]
        assert math.isfinite(m["actor/pg_loss"])
    init, final = initial_weights(toy), final_weights(echo_off)
    assert any(not torch.equal(final[k].float(), init[k].float()) for k in init)


def test_verls_own_main_ppo_runs_on_cpu(verl_baseline):
    """verl's unmodified main_ppo (GRPO) through recipes/cpu_grpo_baseline.sh: finite metrics, weight sync."""
    for step, m in verl_baseline["steps"].items():
        for key in ("critic/score/mean", "critic/advantages/mean", "actor/pg_loss", "actor/entropy",
                    "actor/grad_norm", "response_length/mean", "timing_s/step", "timing_s/gen",
                    "training/rollout_probs_diff_max"):
            assert key in m and math.isfinite(float(m[key])), (step, key, m.get(key))
    assert verl_baseline["steps"][1]["actor/grad_norm"] > 0  # the weights changed at step 1 ...
    assert verl_baseline["steps"][2]["training/rollout_probs_diff_max"] < 1e-3  # ... and step 2's rollout used them


def test_echo_off_is_verls_own_trainer(echo_off, verl_baseline):
    """echo.enable=false runs verl's TaskRunner and trainer: the same metrics as verl's main_ppo, on the same
    prompts (the data order is seeded). The HF rollout's samples are not bit-reproducible across runs
    (batching depends on timing), so rollout statistics are not compared."""
    ours, theirs = echo_off["steps"], verl_baseline["steps"]
    for step in ours:
        assert set(ours[step]) == set(theirs[step])
        assert ours[step]["prompt_length/mean"] == theirs[step]["prompt_length/mean"]


def test_echo_adds_its_metrics_and_nothing_else(echo_on, echo_off):
    on, off = set(echo_on["steps"][1]), set(echo_off["steps"][1])
    added = on - off
    assert off <= on
    assert added == {k for k in on if k.startswith("echo/")} | {"actor/echo_loss", "timing_s/echo_select"}
