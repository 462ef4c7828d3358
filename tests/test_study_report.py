"""`study report` / `study export`: exact statistics on runs with known numbers, and clear refusals.

The study folder is laid out as the harness leaves it (study.yaml, per run study_run.json from the
harness's own writer, resolved_config.yaml, metrics through verl's FileLogger with validation metrics from
verl's `_val_metrics_update`, the baseline's rollout dump through verl's `_write_generations`).
Arms `base` (echo.enable=false, all-success share only in the rollout dump) and `echo` (echo.coef=0.01,
logs echo/all_success_group_share), seeds 0-2, 4 training steps, validation at steps 0, 2, 4 on 4 prompts
x 4 samples (k = 4).
"""

import functools
import math
import os
import shutil

import pytest
import yaml

from echorl_verl.study.export import export_study
from echorl_verl.study.report import build_report, write_report
from echorl_verl.study.results import load_results, load_study_dir
from echorl_verl.study.run import plan, write_status
from echorl_verl.study.spec import StudyError, parse_study
from echorl_verl.study.stats import area, outcome_table, paired, t_interval
from metrics_testlib import dump_rollouts, log_lines, verl_val_metrics

T2 = 0.95 / math.sqrt(2 * 0.975 * 0.025)  # Student t 97.5% quantile, 2 df, closed form (2p-1)/sqrt(2p(1-p))
SOURCE = "echorl/addition"
# correct samples (of 4) per prompt at validation steps 0, 2, 4
VAL = {
    ("base", 0): ([1, 0, 0, 0], [2, 1, 0, 0], [4, 1, 0, 0]),
    ("base", 1): ([1, 0, 0, 0], [2, 2, 0, 0], [4, 4, 0, 0]),
    ("base", 2): ([1, 0, 0, 0], [4, 2, 0, 0], [4, 4, 4, 0]),
    ("echo", 0): ([1, 0, 0, 0], [4, 0, 0, 0], [4, 4, 1, 0]),
    ("echo", 1): ([1, 0, 0, 0], [4, 4, 0, 0], [4, 4, 4, 0]),
    ("echo", 2): ([1, 0, 0, 0], [4, 4, 0, 0], [4, 4, 4, 0]),
}


def pass1(counts) -> float:
    return sum(counts) / 16


def samples(counts) -> dict:
    return {SOURCE: [[1] * c + [0] * (4 - c) for c in counts]}


@functools.lru_cache(maxsize=None)
def val_metrics(counts: tuple) -> dict:
    """verl's validation metrics for these counts (its 1000-round bootstrap is slow: computed once)."""
    return verl_val_metrics(samples(counts))


def spec(tmp_path) -> dict:
    recipe = tmp_path / "recipe.sh"
    recipe.write_text("#!/bin/sh\n")
    return {"name": "known", "study_dir": str(tmp_path / "study"), "seeds": [0, 1, 2], "baseline": "base",
            "env": {"PROFILE": "cpu"}, "overrides": ["trainer.total_training_steps=4"],
            "arms": {"base": {"recipe": str(recipe), "overrides": ["echo.enable=false"]},
                     "echo": {"recipe": str(recipe), "overrides": ["echo.coef=0.01"]}}}


def write_run(study, arm: str, seed: int, steps: int = 4, val=None, config_extra=None):
    """One finished run of the study with the numbers above; returns its folder."""
    p = plan(study, arm, seed)
    run_dir = p.run_dir
    counts = VAL[(arm, seed)] if val is None else val
    val_at = dict(zip((0, 2, 4), counts))
    records = [(0, val_metrics(tuple(val_at[0])))] if 0 in val_at else []
    for step in range(1, steps + 1):
        data = {"actor/entropy": 1.0 + 0.1 * seed, "response_length/mean": 10.0 * step, "timing_s/step": 2.0 + seed,
                "critic/score/mean": 0.1 * step + 0.01 * seed + (0.001 if arm == "echo" else 0.0)}
        if arm == "echo":
            data["echo/all_success_group_share"] = 0.1 * step + 0.1 * seed
            data["actor/echo_loss"] = 0.001 * step + 0.001 * seed
            data["timing_s/update_actor"] = 3.0 if step % 2 == 0 else 1.0 + seed
            if step % 2 == 0:  # echo.grad_telemetry_every=2
                data["actor/echo_grad_ratio"] = 0.01 * step * (seed + 1)
        if step in val_at:
            data.update(val_metrics(tuple(val_at[step])))
        records.append((step, data))
    log_lines(os.path.join(run_dir, "metrics.jsonl"), records)
    config = {"trainer": {"total_training_steps": 4, "experiment_name": p.env["NAME"],
                          "default_local_dir": f"{run_dir}/checkpoints", "rollout_data_dir": f"{run_dir}/rollouts"},
              "data": {"seed": seed}, "actor_rollout_ref": {"rollout": {"seed": seed}, "actor": {"optim": {"lr": 1e-5}}},
              "echo": {"enable": arm == "echo", "coef": 0.01 if arm == "echo" else 0.001,
                       "success_threshold": 0.5, "success_key": "score",
                       "base_estimator": "grpo" if arm == "echo" else None}}  # as echorl's main_ppo resolves it
    if arm == "base":  # echo runs log the share themselves; the baseline has only the dump
        for step in range(1, steps + 1):  # step - 1 of 4 groups all-success (0.5 counts as success)
            groups = [[1.0, 0.5]] * (step - 1) + [[1.0, 0.0]] * (5 - step)
            dump_rollouts(os.path.join(run_dir, "rollouts"), step, groups, padding=3)  # padding rows: no group
    for key, value in (config_extra or {}).items():
        node = config
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    with open(os.path.join(run_dir, "resolved_config.yaml"), "w") as fh:
        yaml.safe_dump(config, fh)
    write_status(p, [{"exit_code": 0, "wall_s": 1.0, "error": None}])
    return run_dir


@pytest.fixture(autouse=True)
def _close_figures():
    """build_report hands its figures to the caller (write_report closes them): close them after each test."""
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """The study folder with every run, built once (the tests get copies)."""
    root = tmp_path_factory.mktemp("template")
    study = parse_study(spec(root), "known.yaml")
    os.makedirs(study.study_dir)
    with open(os.path.join(study.study_dir, "study.yaml"), "w") as fh:
        yaml.safe_dump(study.to_dict(), fh)
    for arm, seed in study.runs():
        write_run(study, arm, seed)
    return root


@pytest.fixture
def study(template, tmp_path):
    """A copy of the template study under tmp_path (its files name the template's paths, as a moved
    study folder would; the report does not depend on them)."""
    shutil.copytree(template, tmp_path, dirs_exist_ok=True)
    return load_study_dir(str(tmp_path / "study"))


def test_statistics_by_hand():
    iv = t_interval([0.25, 0.5, 0.75])
    half = T2 * 0.25 / math.sqrt(3)
    assert (iv.mean, iv.n) == (0.5, 3) and iv.lo == pytest.approx(0.5 - half, abs=1e-12)
    assert iv.hi == pytest.approx(0.5 + half, abs=1e-12)
    one = t_interval([0.3, float("nan")])
    assert one.mean == 0.3 and one.n == 1 and math.isnan(one.lo) and math.isnan(one.hi)
    import pandas as pd

    d = paired(pd.Series({0: 0.5, 1: 0.75, 2: 0.75, 3: 0.9}), pd.Series({0: 0.25, 1: 0.5, 2: 0.75}))  # seed 3 unpaired
    sd = math.sqrt(((1 / 12) ** 2 * 2 + (1 / 6) ** 2) / 2)
    assert d.n == 3 and d.mean == pytest.approx(1 / 6) and d.hi - d.mean == pytest.approx(T2 * sd / math.sqrt(3))
    assert area(pd.Series({0: 0.0, 2: 1.0, 4: 1.0})) == pytest.approx(0.75)  # (0 + 2*1 + 1) / 4
    assert area(pd.Series({4: 0.3})) == 0.3


def test_per_run_outcomes_are_exact(study):
    results, problems = load_results(study)
    assert problems == [] and len(results) == 6
    table = outcome_table(results)
    for (arm, seed), counts in VAL.items():
        row = table.loc[(arm, seed)]
        a0, a2, a4 = (pass1(c) for c in counts)
        assert row["first_pass1"] == pytest.approx(a0)
        assert row["gain_pass1"] == pytest.approx(a4 - a0)
        assert row["final_pass1"] == pytest.approx(a4) and row["best_pass1"] == pytest.approx(max(a0, a2, a4))
        assert row["auc_pass1"] == pytest.approx((a0 + 2 * a2 + a4) / 4)
        assert row["entropy"] == pytest.approx(1.0 + 0.1 * seed) and row["response_length"] == pytest.approx(25.0)
        assert row["step_seconds"] == pytest.approx(2.0 + seed)
        # echo runs: update_actor 3.0 on the telemetry steps 2 and 4, 1.0 + seed on the others; the base logs none
        if arm == "echo":
            assert row["update_seconds"] == pytest.approx(1.0 + seed)
        else:
            assert math.isnan(row["update_seconds"])
        share = 0.375 if arm == "base" else 0.25 + 0.1 * seed  # dump: (0+1+2+3)/16; echo: mean of 0.1*step+0.1*seed
        assert row["all_success"] == pytest.approx(share)
        # pass@k is verl's val-core best@4/mean (not best@2, not maj@4), averaged as logged
        logged = val_metrics(tuple(counts[2]))
        assert row["final_passk"] == logged[f"val-core/{SOURCE}/acc/best@4/mean"]
        assert f"val-aux/{SOURCE}/acc/best@2/mean" in logged
    assert table.loc[("base", 0), "final_passk"] > table.loc[("base", 0), "final_pass1"]  # a mixed prompt
    sources = {r.arm: r.share_source for r in results}
    assert sources == {"base": "rollout dump", "echo": "echo/all_success_group_share"}


def test_report_cells_intervals_and_paired_differences(study):
    text, figures = build_report(study)
    assert "WARNING" not in text
    assert sorted(figures) == sorted(["val_accuracy", "pass_at_k", "all_success_share", "entropy",
                                      "response_length", "step_seconds", "echo_grad_ratio", "effect_vs_ratio"])
    lines = text.splitlines()
    base = next(line for line in lines if line.startswith("| base | 3 |"))
    finals = [pass1(VAL[("base", s)][2]) for s in range(3)]
    iv = t_interval(finals)
    assert f"| {iv.mean * 100:.1f} [{iv.lo * 100:.1f}, {iv.hi * 100:.1f}] |" in base
    mean = sum(finals) / 3
    sd = math.sqrt(sum((f - mean) ** 2 for f in finals) / 2)
    assert f"{(mean - T2 * sd / math.sqrt(3)) * 100:.1f}" in base  # the interval is the t-interval
    assert "37.5 [37.5, 37.5]" in base  # the dump's all-success share: the same every seed
    delta = next(line for line in lines if line.startswith("| echo | 3 |") and "+" in line)
    diffs = [pass1(VAL[("echo", s)][2]) - pass1(VAL[("base", s)][2]) for s in range(3)]
    dm = sum(diffs) / 3
    dsd = math.sqrt(sum((d - dm) ** 2 for d in diffs) / 2)
    want = f"{dm * 100:+.1f} [{(dm - T2 * dsd / math.sqrt(3)) * 100:+.1f}, {(dm + T2 * dsd / math.sqrt(3)) * 100:+.1f}]"
    assert want in delta
    assert delta.startswith("| echo | 3 | +0.0 [+0.0, +0.0] |")  # step 0: the same counts in both arms (A/A)
    sd_share = 0.1  # echo - base share per seed: -0.125, -0.025, +0.075
    lo, hi = -0.025 - T2 * sd_share / math.sqrt(3), -0.025 + T2 * sd_share / math.sqrt(3)
    assert f"-2.5 [{lo * 100:+.1f}, {hi * 100:+.1f}]" in delta
    assert "`echo.base_estimator`, `echo.coef`, `echo.enable`" in text  # the arm's own differences (echo.enable=false
    # covers its group), listed
    assert "/tmp" not in text and str(study.study_dir) not in text  # no absolute path: the copy reproduces it


def test_what_the_design_can_detect_is_exact(study):
    """The pooled sd of the paired differences, and the smallest effect found with 80% power: checked against
    scipy's noncentral t (a computation of its own) where scipy gives a number, and by hand for the sd."""
    from scipy import stats

    from echorl_verl.study.stats import detectable

    d = detectable([[0.1, 0.2, 0.3], [0.0, 0.1, float("nan")], [5.0]], pairs=3)  # the 1-pair arm has no spread
    assert d.df == 3 and d.sd == pytest.approx(math.sqrt((0.01 * 2 + 0.005 * 1) / 3))
    assert d.half_width == pytest.approx(T2 * d.sd / math.sqrt(3))
    for pairs in (3, 6, 10):
        crit = stats.t.ppf(0.975, pairs - 1)
        nc = detectable([[0.0, 1.0]], pairs).smallest * math.sqrt(pairs) / math.sqrt(0.5)
        assert stats.nct.sf(crit, pairs - 1, nc) + stats.nct.cdf(-crit, pairs - 1, nc) == pytest.approx(0.8, abs=1e-6)
    assert detectable([[0.0, 1.0]], 3).smallest / math.sqrt(0.5) == pytest.approx(3.264, abs=1e-3)
    assert detectable([[1.0], [2.0]], 3) is None and detectable([[0.0, 1.0]], 1) is None
    # in the report: the one non-baseline arm's paired Δ of final pass@1 (3 pairs), and the A/A row (all 0)
    section = build_report(study)[0].split("## What this design can detect")[1].split("## The echo signal")[0]
    diffs = [pass1(VAL[("echo", s)][2]) - pass1(VAL[("base", s)][2]) for s in range(3)]
    dm = sum(diffs) / 3
    dsd = math.sqrt(sum((x - dm) ** 2 for x in diffs) / 2)
    want = (f"| Δ final val acc (pass@1) % | {100 * dsd:.1f} | 2 | ±{100 * T2 * dsd / math.sqrt(3):.1f} | "
            f"{100 * detectable([diffs], 3).smallest:.1f} |")
    assert want in section and "| Δ first val acc (pass@1) % (A/A) | 0.0 | 2 | ±0.0 | 0.0 |" in section


def test_the_echo_signal_and_the_telemetry_cost_are_exact(study):
    """Only the echo arm has an echo term; gradient ratios over the steps that measured them (2, 4), the
    update_actor medians split by those steps."""
    from echorl_verl.study.stats import signal_table

    results, _ = load_results(study)
    table = signal_table(results)
    assert set(table.index) == {("echo", 0), ("echo", 1), ("echo", 2)}
    for seed in range(3):
        row = table.loc[("echo", seed)]
        assert row["echo_loss"] == pytest.approx(0.0025 + 0.001 * seed)
        assert row["grad_ratio"] == pytest.approx(0.03 * (seed + 1))
        assert (row["update_s_telemetry"], row["update_s_other"]) == (3.0, 1.0 + seed)
        assert math.isnan(row["grad_cos"]) and math.isnan(row["clip_token_share"])  # not logged: not made up
    text = build_report(study)[0]
    half = T2 * 0.03 / math.sqrt(3)
    line = next(l for l in text.splitlines() if l.startswith("| echo | 3 | 0.0035 ["))
    assert f"0.0600 [{0.06 - half:.4f}, {0.06 + half:.4f}]" in line and "| 3.00 [3.00, 3.00] | 2.00 [" in line
    assert not any(l.startswith("| base |") for l in text.split("## The echo signal")[1].split("## Curves")[0].splitlines())


def test_the_effect_against_the_measured_ratio_is_exact(study):
    """The table a user choosing echo.coef reads: per echo arm its coefficient, the measured ratio over
    seeds, and the paired Δ of final pass@1 and pass@k; the plot puts the arm at its mean ratio, the
    horizontal bar over the runs' lowest and highest ratio."""
    from echorl_verl.study.stats import outcome_table, signal_table
    from echorl_verl.study.weight import draw_weight, weight_rows

    results, _ = load_results(study)
    rows = weight_rows(results, outcome_table(results), signal_table(results), ["base", "echo"], "base")
    assert [r["arm"] for r in rows] == ["echo"] and rows[0]["coef"] == [0.01]
    (row,) = rows
    assert row["ratio"].mean == pytest.approx(0.06) and row["ratio_range"] == pytest.approx((0.03, 0.09))
    # steps 2 and 4 of seeds 0-2 measured 0.02 0.04 | 0.04 0.08 | 0.06 0.12: the median of the six, not of run means
    assert row["ratio_median"] == pytest.approx((0.05, 6))
    assert row["aa"].mean == 0.0 and row["aa"].n == 3
    diffs = [pass1(VAL[("echo", s)][2]) - pass1(VAL[("base", s)][2]) for s in range(3)]  # 4/16, 4/16, 0
    assert row["final_pass1"].mean == pytest.approx(sum(diffs) / 3)
    text = build_report(study)[0]
    section = text.split("## The effect against what the echo term weighs")[1].split("## Curves")[0]
    line = next(l for l in section.splitlines() if l.startswith("| echo |"))
    half = T2 * 0.03 / math.sqrt(3)
    assert line.startswith(f"| echo | 0.01 | 0.06 [{0.06 - half:.2g}, {0.06 + half:.2g}] | 0.05 (6) | - "
                           "| +0.0 [+0.0, +0.0] |")
    assert f"| {100 * sum(diffs) / 3:+.1f} [" in line and "![effect against the echo term's weight]" in section
    fig = draw_weight(rows, "base", ["base", "echo"])
    (bars,) = fig.axes[0].containers
    (xs, ys), = [line.get_xydata()[0] for line in bars.lines[:1]]
    assert (xs, ys) == pytest.approx((0.06, 100 * sum(diffs) / 3))
    assert fig.axes[0].get_xscale() == "log"
    # without telemetry there is no ratio: the arm stays in the table with dashes, no plot
    no_ratio = signal_table(results).assign(grad_ratio=float("nan"))
    rows = weight_rows(results, outcome_table(results), no_ratio, ["base", "echo"], "base")
    assert rows[0]["ratio"].n == 0 and rows[0]["ratio_range"] is None
    assert draw_weight(rows, "base", ["base", "echo"]) is None
    # no baseline run: no paired difference, no rows
    assert weight_rows(results, outcome_table(results).drop("base", level="arm"), signal_table(results),
                       ["base", "echo"], "base") == []


def test_export_then_report_reproduces_the_report(study, tmp_path):
    full, compact, again = tmp_path / "full", tmp_path / "compact", tmp_path / "again"
    write_report(study, str(full))
    assert export_study(study, str(compact)) == []
    files = sorted(os.path.relpath(os.path.join(d, f), compact) for d, _, fs in os.walk(compact) for f in fs)
    assert files == sorted(["study.yaml"] + [f"{arm}/seed{s}/{n}" for arm in ("base", "echo") for s in range(3)
                                             for n in ("metrics.jsonl", "resolved_config.yaml", "study_run.json")])
    assert not any("rollouts" in f for f in files)  # the dump's share travels as a metric
    write_report(load_study_dir(str(compact)), str(again))
    assert sorted(os.listdir(full)) == sorted(os.listdir(again))
    for name in os.listdir(full):
        assert (full / name).read_bytes() == (again / name).read_bytes(), name
    size = sum(os.path.getsize(compact / f) for f in files)
    assert size < 60_000, size


def test_missing_unfinished_truncated_and_unvalidated_runs_are_named(study, tmp_path):
    shutil.rmtree(study.run_dir("echo", 2))
    write_run(study, "base", 1, steps=3, val=([1, 0, 0, 0], [2, 2, 0, 0]))  # stopped after step 3
    write_run(study, "base", 2, val=())  # no validation at all
    p = plan(study, "echo", 1)
    write_status(p, [{"exit_code": 1, "wall_s": 1.0, "error": "exit code 1"}])
    with pytest.raises(StudyError) as err:
        load_results(study)
    msg = str(err.value)
    assert "5 run problem(s)" in msg
    assert "echo/seed2: missing" in msg and "echo/seed1: unfinished (exit code 1)" in msg
    assert "base/seed1: truncated: 3 of 4 training steps logged (last 3)" in msg
    assert "base/seed2: " in msg and "has no validation metrics" in msg
    assert "base/seed1: validated at steps [0, 2], the other runs at [0, 2, 4]" in msg
    text, _ = build_report(study, allow_incomplete=True)
    head = text.split("## Setup")[0]
    assert "WARNING" in head and "incomplete run left out: echo/seed2: missing" in head
    assert "| base | 1 |" in text and "| echo | 1 |" in text and "(n=1)" in text


def test_validation_at_other_steps_is_a_problem(study):
    write_run(study, "echo", 0, val=([1, 0, 0, 0], [4, 0, 0, 0]))  # steps 0, 2 only (4 steps trained)
    with pytest.raises(StudyError, match=r"echo/seed0: validated at steps \[0, 2\], the other runs at \[0, 2, 4\]"):
        load_results(study)


def test_config_differences_beyond_the_overrides_are_flagged(study):
    write_run(study, "echo", 1, config_extra={"actor_rollout_ref.actor.optim.lr": 3e-5})
    text, _ = build_report(study)
    head = text.split("## Setup")[0]
    assert "echo: seed0 and seed1 differ at actor_rollout_ref.actor.optim.lr: 1e-05 vs 3e-05" in head
    for seed in (0, 2):
        write_run(study, "echo", seed, config_extra={"actor_rollout_ref.actor.optim.lr": 3e-5})
    head = build_report(study)[0].split("## Setup")[0]
    assert "config: echo vs base: actor_rollout_ref.actor.optim.lr = 3e-05 vs 1e-05, not set by either" in head
    assert "seed" not in head.split("optim.lr")[0].split("config:")[-1]  # seed keys and run paths: expected


def test_another_recipe_explains_its_feature_switch_and_nothing_else(tmp_path):
    """The real study's arms: `grpo_baseline_qwen.sh` (echo.enable=false inside the recipe) against
    `grpo_echo_qwen.sh`, no override naming echo.enable; a retried baseline run logs to metrics.1.jsonl."""
    raw = spec(tmp_path)
    other = tmp_path / "echo_recipe.sh"
    other.write_text("#!/bin/sh\n")
    raw["arms"]["base"]["overrides"] = []
    raw["arms"]["echo"]["recipe"] = str(other)
    study = parse_study(raw, "known.yaml")
    for arm, seed in study.runs():
        path = f"{plan(study, arm, seed).run_dir}/metrics{'.1' if (arm, seed) == ('base', 1) else ''}.jsonl"
        write_run(study, arm, seed, config_extra={"ray_kwargs.ray_init.runtime_env.env_vars.VERL_FILE_LOGGER_PATH": path})
    text = build_report(study)[0]
    assert "WARNING" not in text.split("## Setup")[0], text.split("## Setup")[0]
    assert "`echo.base_estimator`, `echo.coef`, `echo.enable`" in text  # explained, and shown
    write_run(study, "echo", 0, config_extra={"actor_rollout_ref.actor.optim.lr": 3e-5})
    head = build_report(study)[0].split("## Setup")[0]
    assert "echo: seed0 and seed1 differ at actor_rollout_ref.actor.optim.lr" in head


def test_identical_seeds_are_flagged(study):
    write_run(study, "base", 1, val=VAL[("base", 0)])
    text = build_report(study)[0]
    # the training metrics depend on the seed, so only identical curves would trip it: make two equal
    assert "identical critic/score/mean" not in text
    results, _ = load_results(study)
    from echorl_verl.study.report import identical_seeds

    twin = [r for r in results if r.arm == "base"][:2]
    twin[1].log.records.loc[twin[1].log.records["metric"] == "critic/score/mean", "value"] = (
        twin[0].log.records.loc[twin[0].log.records["metric"] == "critic/score/mean", "value"].to_numpy())
    assert identical_seeds(twin) == [
        "base: seed0 and seed1 logged identical critic/score/mean at every step: do the seeds reach the run "
        "(the recipe maps SEED to data, rollout and actor seeds)?"]
