"""Every attempt of a resumed run: one metrics file per attempt, read in order, the later attempt winning.

The attempts are written the way verl's v1 trainer logs a run that is stopped and resumed with
`trainer.resume_mode=auto` (tests/metrics_testlib.py: verl's FileLogger and `_val_metrics_update`):
attempt 1 validates at step 0, trains steps 1-3 (checkpoint at step 2) and is killed while writing step 3's
line; attempt 2 loads the step-2 checkpoint, logs its own validation line at step 2 (validation only),
then trains steps 3 and 4.
"""

import os
import subprocess
import sys

import pandas as pd
import pytest

from echorl_verl.report import ReportError, load_run, summarize
from echorl_verl.report.__main__ import main as report_main
from echorl_verl.report.attempts import attempt_files, next_metrics_path
from echorl_verl.report.validation import accuracy
from metrics_testlib import log_lines, verl_val_metrics

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
LOW, MID, HIGH = ({"math": [[1], [0], [0], [0]]}, {"math": [[1], [1], [0], [0]]}, {"math": [[1], [1], [1], [0]]})


def train(step: int, attempt: int, **extra) -> dict:
    """Training metrics that say which attempt logged them (score = 10 * attempt + step)."""
    return {"critic/score/mean": 10.0 * attempt + step, "timing_s/step": 1.0, **extra}


@pytest.fixture
def resumed(tmp_path, capsys):
    """A run folder with two attempts as above; returns the folder."""
    run = tmp_path / "grpo_echo_toy"
    first = log_lines(run / "metrics.jsonl", [
        (0, verl_val_metrics(LOW)), (1, train(1, 1)), (2, {**train(2, 1), **verl_val_metrics(LOW)}),
        (3, train(3, 1, **{"actor/echo_loss": 9.0}))])
    text = open(first, "rb").read()
    open(first, "wb").write(text[:-25])  # killed mid-write: step 3's line is cut, no final newline
    log_lines(run / "metrics.1.jsonl", [
        (2, verl_val_metrics(MID)), (3, train(3, 2)), (4, {**train(4, 2), **verl_val_metrics(HIGH)})])
    return run


def test_attempts_are_read_in_order_and_the_later_one_wins(resumed, capsys):
    run = load_run(str(resumed))
    assert "metrics.jsonl:4: last line is cut off" in capsys.readouterr().err
    assert run.name == "grpo_echo_toy" and [os.path.basename(f) for f in run.files] == ["metrics.jsonl",
                                                                                       "metrics.1.jsonl"]
    assert run.steps == [0, 1, 2, 3, 4]
    score = run.series("critic/score/mean")
    assert score.to_dict() == {1: 11.0, 2: 12.0, 3: 23.0, 4: 24.0}  # step 2's training: attempt 1 (not redone)
    assert accuracy(run)["math"].to_dict() == {0: 0.25, 2: 0.5, 4: 0.75}  # step 2's validation: attempt 2's
    where = run.records.set_index(["step", "metric"])["file"]
    assert os.path.basename(where[(2, "critic/score/mean")]) == "metrics.jsonl"
    assert os.path.basename(where[(2, "val-core/math/acc/mean@1")]) == "metrics.1.jsonl"


def test_a_redone_step_is_wholly_the_later_attempts(tmp_path):
    """Attempt 1 logged step 3 with actor/echo_loss, attempt 2 redid step 3 without it: nothing of
    attempt 1's step 3 survives (per step and kind the whole record is replaced, not merged per metric)."""
    run = tmp_path / "r"
    log_lines(run / "metrics.jsonl", [(3, train(3, 1, **{"actor/echo_loss": 9.0}))])
    log_lines(run / "metrics.1.jsonl", [(3, train(3, 2))])
    got = load_run(str(run))
    assert got.series("critic/score/mean").to_dict() == {3: 23.0}
    assert got.series("actor/echo_loss").empty


def test_a_single_file_is_read_alone(resumed):
    run = load_run(str(resumed / "metrics.1.jsonl"))
    assert run.steps == [2, 3, 4] and run.name == "metrics.1"
    assert load_run(f"first={resumed / 'metrics.jsonl'}").steps == [0, 1, 2]


def test_report_cli_on_the_folder_shows_every_step(resumed, capsys):
    s = summarize(str(resumed))
    assert s["steps"] == [0, 1, 2, 3, 4] and s["train_steps"] == 4
    assert s["validation"]["math"]["first"] == [0, 0.25] and s["validation"]["math"]["last"] == [4, 0.75]
    assert report_main(["table", str(resumed)]) == 0
    assert "| grpo_echo_toy | 4 |" in capsys.readouterr().out


def test_an_empty_attempt_is_skipped_but_an_empty_run_is_an_error(tmp_path):
    run = tmp_path / "r"
    log_lines(run / "metrics.jsonl", [(1, train(1, 1))])
    (run / "metrics.1.jsonl").write_bytes(b"")  # attempt 2 crashed before its first log line
    assert load_run(str(run)).steps == [1]
    empty = tmp_path / "e"
    empty.mkdir()
    (empty / "metrics.jsonl").write_bytes(b"")
    (empty / "metrics.1.jsonl").write_bytes(b"\n")
    with pytest.raises(ReportError, match=r"e: empty \(no metric lines in .*metrics.jsonl, .*metrics.1.jsonl\)"):
        load_run(str(empty))


def test_a_bad_line_in_an_earlier_attempt_names_its_file_and_line(tmp_path):
    run = tmp_path / "r"
    first = log_lines(run / "metrics.jsonl", [(1, train(1, 1)), (2, train(2, 1))])
    lines = open(first).read().splitlines()
    open(first, "w").write(lines[0][:20] + "\n" + lines[1] + "\n")
    log_lines(run / "metrics.1.jsonl", [(3, train(3, 2))])
    with pytest.raises(ReportError, match=r"r/metrics.jsonl:1: not valid JSON"):
        load_run(str(run))


def test_next_metrics_path(tmp_path):
    run = tmp_path / "run"
    assert next_metrics_path(str(run)) == str(run / "metrics.jsonl")  # the folder need not exist
    run.mkdir()
    (run / "metrics.0.jsonl").write_text("")  # not an attempt name: ignored
    (run / "metrics.x.jsonl").write_text("")
    assert next_metrics_path(str(run)) == str(run / "metrics.jsonl")
    (run / "metrics.jsonl").write_text("")
    assert next_metrics_path(str(run)) == str(run / "metrics.1.jsonl")
    (run / "metrics.2.jsonl").write_text("")  # a gap (metrics.1 deleted): the next one still sorts last
    assert next_metrics_path(str(run)) == str(run / "metrics.3.jsonl")
    (run / "metrics.10.jsonl").write_text("")
    assert [os.path.basename(p) for p in attempt_files(str(run))] == ["metrics.jsonl", "metrics.2.jsonl",
                                                                      "metrics.10.jsonl"]  # numeric order
    out = subprocess.run([sys.executable, "-m", "echorl_verl.report", "next-metrics-path", str(run)],
                         capture_output=True, text=True, cwd=REPO, timeout=60)
    assert out.returncode == 0 and out.stdout == f"{run / 'metrics.11.jsonl'}\n"


def test_the_recipe_rule_and_the_reader_agree(tmp_path):
    """Attempts named by next-metrics-path, one after another, are read back in the order they were made."""
    run = tmp_path / "run"
    for attempt in (1, 2, 3):
        log_lines(next_metrics_path(str(run)), [(attempt, train(attempt, attempt))])
    got = load_run(str(run))
    assert got.series("critic/score/mean").to_dict() == {1: 11.0, 2: 22.0, 3: 33.0}
    assert pd.Series(got.records["attempt"]).tolist() == [0, 0, 1, 1, 2, 2]
