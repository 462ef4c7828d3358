"""`python -m echorl_verl.report`: summary, paper table, plots, and its errors on bad input.

The metrics files are written the way a real run writes them (tests/metrics_testlib.py: verl's own
`_val_metrics_update` and `FileLogger`). A change of verl's metric naming breaks these tests.
"""

import os
import subprocess
import sys

import pandas as pd
import pytest

from echorl_verl import atomic
from echorl_verl.report import ReportError, format_summary, load_run, summarize
from echorl_verl.report.__main__ import main as report_main
from echorl_verl.report.plot import plot_runs
from echorl_verl.report.table import build_table, to_csv, to_markdown
from echorl_verl.report.validation import accuracy, val_scores
from metrics_testlib import log_lines, verl_val_metrics

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def as_rows(accs: dict[str, list[int]]) -> dict[str, list[list[float]]]:
    """One sample per prompt row (the suite's n=1 setting)."""
    return {s: [[a] for a in v] for s, v in accs.items()}


def train_metrics(step: int, echo: bool) -> dict[str, float]:
    out = {"critic/score/mean": 0.1 * step, "actor/entropy": 1.0 - 0.1 * step,
           "response_length/mean": 100.0 + step, "timing_s/step": 2.0}
    if echo:
        out.update({"echo/all_success_group_share": 0.1 * step, "echo/all_fail_group_share": 0.05,
                    "echo/clip_rollouts": 4.0 * step, "echo/clip_token_share": 0.02 * step,
                    "echo/clip_len_mean": 30.0, "echo/peak_rel_pos_mean": 0.5, "echo/peak_entropy_mean": 1.5,
                    "actor/echo_loss": 2.0 / step})
    return out


def write_run(path, echo: bool, vals: dict[int, dict], steps: int = 4):
    """A metrics JSONL via verl's FileLogger: step-0 validation line, then one line per training step
    (with the validation metrics on the steps in `vals`), as PPOTrainer.fit logs them."""
    records = [(0, verl_val_metrics(vals[0]))] if 0 in vals else []
    for step in range(1, steps + 1):
        records.append((step, {**train_metrics(step, echo), **(verl_val_metrics(vals[step]) if step in vals else {})}))
    return log_lines(path, records)


# Final accuracies, chosen so the table can be checked by hand (percent).
BASE = {"aime": [1, 0, 0, 0], "aime25": [0, 0, 0, 0], "amc": [1, 1, 0, 0], "math": [1, 1, 1, 0],
        "minerva": [1, 0], "olympiad_bench": [0, 1, 0, 0], "arc_c": [1, 1, 1, 1], "gpqa": [0, 1, 0, 0]}
# 25, 0, 50, 75, 50, 25 -> ID avg 37.5; ARC 100, GPQA 25, MMLU-Pro missing -> OOD avg 62.5 (over 2)
ECHO = {"aime": [1, 1, 0, 0], "aime25": [1, 0, 0, 0], "amc": [1, 1, 1, 0], "math": [1, 1, 1, 1],
        "minerva": [1, 1], "olympiad_bench": [0, 1, 1, 0], "arc_c": [1, 1, 1, 0], "gpqa": [1, 1, 0, 0]}
# 50, 25, 75, 100, 100, 50 -> ID avg 66.67; ARC 75, GPQA 50 -> OOD avg 62.5
LOW = {s: [0] * len(v) for s, v in BASE.items()}


@pytest.fixture
def runs(tmp_path):
    """grpo echo/baseline pair (validation at steps 0, 2, 4) in run folders like the recipes write."""
    root = tmp_path / "runs"
    mid = dict(ECHO, math=[1, 1, 1, 1], aime=[1, 1, 1, 1])  # step 2 of the echo run: its best step
    echo = write_run(root / "grpo_echo_qwen" / "metrics.jsonl", True,
                     {0: as_rows(LOW), 2: as_rows(mid), 4: as_rows(ECHO)})
    base = write_run(root / "grpo_baseline_qwen" / "metrics.jsonl", False,
                     {0: as_rows(LOW), 2: as_rows(LOW), 4: as_rows(BASE)})
    return {"echo": echo, "base": base, "root": root}


def test_metric_names_are_verls(runs):
    """What the report parses is what verl writes (n=1: mean@1 under val-core, acc as the core variable)."""
    run = load_run(runs["echo"])
    assert run.name == "grpo_echo_qwen"
    assert run.metrics.loc[4, "val-core/aime/acc/mean@1"] == 0.5
    assert pd.notna(run.metrics.loc[4, "val-aux/aime/acc_success_only/mean@1"])  # verl's aux copy: not used
    assert accuracy(run).index.tolist() == [0, 2, 4]
    scores = val_scores(run).set_index(["step", "source"])
    assert scores.loc[(4, "amc"), "metric"] == "val-core/amc/acc/mean@1"


def test_table_values_averages_and_delta(runs):
    table = build_table([load_run(runs["echo"]), load_run(runs["base"])], "last")
    names = table.rows
    assert names == ["grpo_baseline_qwen", "grpo_echo_qwen", "Δ grpo_qwen (echo − baseline)"]
    base, echo, delta = (table.values.loc[n] for n in names)
    assert table.steps[names[0]] == table.steps[names[1]] == 4 and pd.isna(table.steps[names[2]])
    assert table.deltas == [names[2]]
    assert base["math"] == 0.75 and pd.isna(base["mmlu_pro"])
    assert base["avg:ID"] == pytest.approx(225 / 600) and base["avg:OOD"] == pytest.approx(0.625)
    assert echo["avg:ID"] == pytest.approx(400 / 600) and echo["avg:OOD"] == pytest.approx(0.625)
    assert delta["aime"] == pytest.approx(0.25) and delta["minerva"] == pytest.approx(0.5)
    assert delta["avg:ID"] == pytest.approx(175 / 600) and delta["avg:OOD"] == pytest.approx(0.0)
    assert pd.isna(delta["mmlu_pro"])

    md = to_markdown(table)
    lines = md.splitlines()
    assert lines[0].startswith("| run | step | AIME24 | AIME25 | AMC23 | MATH-500 | Minerva | Olympiad | ID avg |")
    assert lines[2] == "| grpo_baseline_qwen | 4 | 25.0 | 0.0 | 50.0 | 75.0 | 50.0 | 25.0 | 37.5 | 100.0 | 25.0 | - | 62.5 |"
    assert lines[3] == "| grpo_echo_qwen | 4 | 50.0 | 25.0 | 75.0 | 100.0 | 100.0 | 50.0 | 66.7 | 75.0 | 50.0 | - | 62.5 |"
    assert lines[4] == ("| **Δ grpo_qwen (echo − baseline)** |  | +25.0 | +25.0 | +25.0 | +25.0 | +50.0 | +25.0 "
                        "| +29.2 | -25.0 | +25.0 | - | +0.0 |")
    assert "not validated: grpo_baseline_qwen, grpo_echo_qwen have no MMLU-Pro; ID avg over 6/6, OOD avg over 2/3" in md
    assert "`val-core/<data_source>/acc/mean@1`" in md

    csv_lines = to_csv(table).splitlines()
    assert csv_lines[0].split(",")[:3] == ["run", "step", "AIME24"]
    assert csv_lines[1] == "grpo_baseline_qwen,4,25.0000,0.0000,50.0000,75.0000,50.0000,25.0000,37.5000,100.0000,25.0000,,62.5000"


def test_step_best_and_number(runs):
    echo = load_run(runs["echo"])
    best = build_table([echo], "best")
    assert best.steps["grpo_echo_qwen"] == 2 and best.values.loc["grpo_echo_qwen", "aime"] == 1.0
    assert any("optimistic" in n for n in best.footnotes)
    assert build_table([echo], "2").values.loc["grpo_echo_qwen", "math"] == 1.0
    assert build_table([echo], "0").values.loc["grpo_echo_qwen", "avg:ID"] == 0.0  # a real 0, not a missing value
    with pytest.raises(ReportError, match=r"no validation at step 3; validated steps: \[0, 2, 4\]"):
        build_table([echo], "3")


def test_delta_average_needs_the_same_benchmarks(tmp_path):
    """dapo echo without GPQA: its OOD avg covers ARC only, so the OOD delta is `-`, not a mixed number."""
    echo = dict(ECHO)
    del echo["gpqa"]
    e = write_run(tmp_path / "dapo_echo_qwen.jsonl", True, {4: as_rows(echo)})
    b = write_run(tmp_path / "dapo_baseline_qwen.jsonl", False, {4: as_rows(BASE)})
    table = build_table([load_run(e), load_run(b)])
    delta = table.values.loc[table.rows[2]]
    assert pd.isna(delta["avg:OOD"]) and delta["avg:ID"] == pytest.approx(175 / 600)
    assert delta["arc_c"] == pytest.approx(-0.25) and pd.isna(delta["gpqa"])
    assert any("cover different benchmarks" in n for n in table.footnotes)


def test_n_samples_and_out_of_suite_sources(tmp_path):
    """val_kwargs.n=4 gives mean@4 (avg over samples and prompts); a toy data_source with a slash is an
    extra column outside both averages."""
    rows = {"aime": [[1, 0, 0, 0], [1, 1, 1, 1]], "echorl/addition": [[1, 0, 1, 0]]}
    path = write_run(tmp_path / "toy.jsonl", False, {1: rows}, steps=1)
    run = load_run(path)
    assert val_scores(run).set_index(["step", "source"]).loc[(1, "aime"), "metric"] == "val-core/aime/acc/mean@4"
    table = build_table([run])
    row = table.values.loc[table.rows[0]]
    assert row["aime"] == pytest.approx(0.625) and row["echorl/addition"] == 0.5
    assert row["avg:ID"] == pytest.approx(0.625) and pd.isna(row["avg:OOD"])
    assert table.extras == ["echorl/addition"]
    assert to_markdown(table).splitlines()[0].endswith("| OOD avg | echorl/addition |")


def test_summary(runs):
    s = summarize(runs["echo"])
    assert s["name"] == "grpo_echo_qwen" and s["train_steps"] == 4 and s["steps"] == [0, 1, 2, 3, 4]
    assert s["echo"]["all_success_group_share"]["last"] == pytest.approx(0.4)
    assert s["echo"]["all_success_group_share"]["mean"] == pytest.approx(0.25)
    assert s["echo"]["echo_loss"]["last"] == pytest.approx(0.5)
    assert s["validation"]["math"]["first"] == [0, 0.0] and s["validation"]["math"]["last"] == [4, 1.0]
    text = format_summary(s)
    assert 6 <= len(text.splitlines()) <= 15
    assert "all-success group share: last 0.400, mean 0.250" in text
    assert "math 0.0@0 -> 100.0@4" in text and runs["echo"] in text
    assert "no echo/* metrics" in format_summary(summarize(runs["base"]))
    assert "echo/RL gradient-norm ratio: not measured (echo.grad_telemetry_every=N" in text


def test_summary_prints_the_measured_gradient_ratio(tmp_path):
    """With echo.grad_telemetry_every, `report summary` tells a user what their echo.coef weighs: the median over
    the telemetry steps (one step with a vanishing policy gradient must not set it, as the mean would)."""
    records = []
    for step in range(1, 7):
        data = train_metrics(step, True)
        if step % 2 == 0:  # telemetry every 2 steps: ratios 0.002, 0.004 and an outlier 0.6
            data.update({"actor/echo_grad_ratio": 0.6 if step == 6 else 0.001 * step, "actor/echo_grad_cos": 0.5})
        records.append((step, data))
    s = summarize(log_lines(tmp_path / "metrics.jsonl", records))
    assert s["echo"]["grad_ratio"] == pytest.approx({"last": 0.6, "mean": 0.202, "median": 0.004, "n": 3})
    text = format_summary(s)
    assert ("echo/RL gradient-norm ratio: median 0.004 over 3 telemetry step(s) (last 0.6, mean 0.202); "
            "cosine mean 0.50") in text
    assert "set echo.coef = (this run's coef) * r / median" in text


def test_plot_writes_pngs(runs, tmp_path):
    out = tmp_path / "plots"
    paths = plot_runs([load_run(runs["echo"]), load_run(runs["base"])], str(out))
    names = sorted(os.path.basename(p) for p in paths)
    assert names == sorted(["val_accuracy.png", "all_success_share.png", "echo_loss.png", "clip_token_share.png",
                            "train_score.png", "entropy.png", "response_length.png", "overview.png"])
    for p in paths:
        data = open(p, "rb").read()
        assert data.startswith(PNG_MAGIC) and len(data) > 5000, p
    assert sorted(os.listdir(out)) == names  # no temporary file left behind


# ---- bad input -----------------------------------------------------------------------------------

def test_missing_empty_and_corrupt_files(tmp_path, runs, capsys):
    with pytest.raises(ReportError, match="no such file or folder"):
        load_run(str(tmp_path / "nope.jsonl"))
    (tmp_path / "empty_run").mkdir()
    with pytest.raises(ReportError, match="run folder has no metrics.jsonl"):
        load_run(str(tmp_path / "empty_run"))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(ReportError, match="empty.jsonl: empty"):
        load_run(str(empty))
    good = open(runs["echo"]).read().splitlines()
    cut = tmp_path / "cut.jsonl"
    cut.write_text("\n".join(good[:3]) + "\n" + good[3][:40])  # killed mid-write: no final newline
    assert load_run(str(cut)).steps == [0, 1, 2]  # the cut-off last line is left out...
    assert "cut.jsonl:4: last line is cut off" in capsys.readouterr().err  # ...with a warning naming it
    middle = tmp_path / "middle.jsonl"
    middle.write_text("\n".join(good[:2]) + "\n" + good[2][:40] + "\n" + good[3] + "\n")
    with pytest.raises(ReportError, match=r"middle.jsonl:3: not valid JSON.*Delete or repair"):
        load_run(str(middle))
    ended = tmp_path / "ended.jsonl"  # a whole (newline-terminated) bad last line is corruption, not a kill
    ended.write_text("\n".join(good[:3]) + "\n" + good[3][:40] + "\n")
    with pytest.raises(ReportError, match=r"ended.jsonl:4: not valid JSON"):
        load_run(str(ended))
    shape = tmp_path / "shape.jsonl"
    shape.write_text(good[0] + '\n{"step": "1", "data": {}}\n')
    with pytest.raises(ReportError, match=r"shape.jsonl:2: expected verl's file-logger record"):
        load_run(str(shape))


def test_no_validation_is_an_error_for_table_and_plot(tmp_path):
    path = write_run(tmp_path / "grpo_echo_noval.jsonl", True, {})
    run = load_run(path)
    with pytest.raises(ReportError, match="has no validation metrics"):
        build_table([run])
    with pytest.raises(ReportError, match="has no validation metrics"):
        plot_runs([run], str(tmp_path / "plots"))
    assert not (tmp_path / "plots").exists()
    assert "validation: none logged" in format_summary(summarize(path))


def test_duplicate_names_and_labels(runs):
    with pytest.raises(ReportError, match="two runs are named"):
        build_table([load_run(runs["echo"]), load_run(runs["echo"])])
    table = build_table([load_run(runs["echo"]), load_run(f"other={runs['echo']}")])
    assert table.rows == ["grpo_echo_qwen", "other"]


def test_cli_writes_atomically_and_reports_errors(runs, tmp_path, capsys):
    out, csv_path = tmp_path / "t" / "table.md", tmp_path / "t" / "table.csv"
    bad = tmp_path / "grpo_echo_bad.jsonl"
    bad.write_text('{"step": 0, "data": {}}\n{oops\n')
    rc = report_main(["table", runs["echo"], str(bad), "--out", str(out), "--csv", str(csv_path)])
    assert rc == 2 and "grpo_echo_bad.jsonl:2: not valid JSON" in capsys.readouterr().err
    assert not out.exists() and not csv_path.exists()

    assert report_main(["table", runs["echo"], runs["base"], "--out", str(out), "--csv", str(csv_path)]) == 0
    assert "| grpo_echo_qwen | 4 |" in out.read_text() and csv_path.read_text().startswith("run,step,")
    before = out.read_text()
    assert report_main(["table", runs["echo"], "--step", "3", "--out", str(out)]) == 2
    assert out.read_text() == before  # an older table survives a failed run
    assert sorted(os.listdir(out.parent)) == ["table.csv", "table.md"]


def test_atomic_write_all_is_all_or_nothing(tmp_path):
    def boom(tmp):
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic.write_all({str(tmp_path / "a.md"): lambda t: open(t, "w").write("a"), str(tmp_path / "b.md"): boom})
    assert os.listdir(tmp_path) == []


def test_python_dash_m_entry_point(runs):
    out = subprocess.run([sys.executable, "-m", "echorl_verl.report", "summary", str(runs["root"] / "grpo_echo_qwen")],
                         capture_output=True, text=True, cwd=REPO, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("run grpo_echo_qwen: 4 training step(s)")
    out = subprocess.run([sys.executable, "-m", "echorl_verl.report", "table", "/nonexistent/run"],
                         capture_output=True, text=True, cwd=REPO, timeout=60)
    assert out.returncode == 2 and "error: /nonexistent/run: no such file or folder" in out.stderr


# ---- recipes/eval_qwen.sh ------------------------------------------------------------------------

def eval_recipe(tmp_path, *extra, make_data=True, **env):
    """Run the recipe with PYTHON pointing at a probe that records argv and the metrics path."""
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    if make_data:
        for s in ("aime", "aime25", "amc", "math", "minerva", "olympiad_bench", "arc_c", "gpqa", "mmlu_pro"):
            (data / f"{s}.parquet").write_bytes(b"")  # the recipe checks existence only
    record = tmp_path / "argv"
    probe = tmp_path / "python"  # records the trainer's command; the recipe's helper calls run for real
    probe.write_text(f'#!/bin/sh\n[ "$2" = echorl_verl.main_ppo ] || exec {sys.executable} "$@"\n'
                     f'echo "$VERL_FILE_LOGGER_PATH" > {record}\nprintf "%s\\n" "$@" >> {record}\n')
    probe.chmod(0o755)
    environ = dict(os.environ, PYTHON=str(probe), RUN_ROOT=str(tmp_path / "runs"), DATA_DIR=str(data), **env)
    for key in ("VERL_FILE_LOGGER_PATH", "RUN_DIR", "DRY_RUN", "SEED"):
        environ.pop(key, None)
    proc = subprocess.run(["bash", os.path.join(REPO, "recipes", "eval_qwen.sh"), *extra], capture_output=True,
                          text=True, env=environ, timeout=60)
    return proc, (record.read_text().splitlines() if record.exists() else None)


def test_eval_recipe_composes_a_val_only_config(tmp_path):
    from omegaconf import OmegaConf

    from echo_testlib import compose_config
    from echorl_verl.main_ppo import prepare_config
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config

    proc, lines = eval_recipe(tmp_path, MODEL_PATH="/ckpt/grpo_echo_qwen_hf", NAME="grpo_echo_qwen")
    assert proc.returncode == 0, proc.stderr
    assert lines[0] == str(tmp_path / "runs" / "eval_grpo_echo_qwen" / "metrics.jsonl")
    assert lines[1:3] == ["-m", "echorl_verl.main_ppo"]
    config = compose_config(lines[3:])
    assert prepare_config(config).enable is False
    validate_config(config=config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config))
    assert not need_critic(config)
    cfg = OmegaConf.to_container(config, resolve=False)
    t, r = cfg["trainer"], cfg["actor_rollout_ref"]["rollout"]
    assert t["val_only"] is True and t["val_before_train"] is True and "file" in t["logger"]
    assert t["experiment_name"] == "eval_grpo_echo_qwen"
    assert r["name"] == "vllm" and r["val_kwargs"]["temperature"] == 0.6 and r["val_kwargs"]["n"] == 1
    assert cfg["data"]["max_response_length"] == 8192
    assert cfg["actor_rollout_ref"]["model"]["path"] == "/ckpt/grpo_echo_qwen_hf"
    val_files = cfg["data"]["val_files"]
    assert [os.path.basename(f) for f in val_files] == [
        "aime.parquet", "aime25.parquet", "amc.parquet", "math.parquet", "minerva.parquet",
        "olympiad_bench.parquet", "arc_c.parquet", "gpqa.parquet", "mmlu_pro.parquet"]


def test_eval_recipe_refuses_missing_data(tmp_path):
    proc, lines = eval_recipe(tmp_path, make_data=False)
    assert proc.returncode == 2 and lines is None
    assert "missing data file(s)" in proc.stderr and "mmlu_pro.parquet" in proc.stderr
    assert "data_prep/all.sh" in proc.stderr
