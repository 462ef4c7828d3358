"""`study run`: the study file's errors, and the harness driving a recipe that keeps the recipe contract.

The recipe here is a stand-in for recipes/<algo>_*.sh (the real ones start verl's trainer): a bash script
that takes Hydra overrides as arguments and RUN_DIR / SEED / NAME from the environment, asks
`python -m echorl_verl.report next-metrics-path` for its metrics file as recipes/common.sh does, writes
RUN_DIR/resolved_config.yaml, and metric lines in verl's file-logger format (tests/test_report.py checks
that format against verl's FileLogger). FAKE_FAIL_TIMES=n makes its first n tries of a run fail,
FAKE_SLEEP=s makes it sleep (in a child process) first, FAKE_NO_METRICS=1 makes it exit 0 having written nothing.
"""

import json
import os
import shutil
import subprocess
import sys
import time

import pytest
import yaml

from echorl_verl.report import load_run
from echorl_verl.study.__main__ import main as study_main
from echorl_verl.study.results import load_results, load_study_dir
from echorl_verl.study.run import plan, run_study
from echorl_verl.study.spec import REPO, StudyError, load_study, parse_study

FAKE_TRAINER = r'''
import json, sys, yaml
metrics, config_path, *overrides = sys.argv[1:]
import os
seed, steps = int(os.environ["SEED"]), int(os.environ.get("STEPS", "2"))
config = {"trainer": {"total_training_steps": steps, "experiment_name": os.environ["NAME"],
                      "default_local_dir": os.environ["RUN_DIR"] + "/checkpoints"}, "data": {"seed": seed},
          "echo": {"coef": 0.001}}
for o in overrides:
    key, value = o.lstrip("+").split("=", 1)
    node = config
    *parents, last = key.split(".")
    for p in parents:
        node = node.setdefault(p, {})
    node[last] = yaml.safe_load(value)
yaml.safe_dump(config, open(config_path, "w"))
acc = 0.25 + 0.1 * seed + config["echo"]["coef"]
with open(metrics, "w") as fh:
    for step in range(steps + 1):
        data = {"val-core/toy/acc/mean@1": acc + 0.01 * step} if step in (0, steps) else {}
        if step:
            data.update({"timing_s/step": 1.0, "actor/entropy": 1.0, "response_length/mean": 10.0,
                         "critic/score/mean": acc, "echo/all_success_group_share": 0.5})
        fh.write(json.dumps({"step": step, "data": data}) + "\n")
'''

FAKE_RECIPE = r'''#!/usr/bin/env bash
set -euo pipefail
: "${RUN_DIR:?}" "${SEED:?}" "${NAME:?}"
mkdir -p "$RUN_DIR"
echo "fake recipe $NAME seed $SEED: $*"
if [ -n "${FAKE_FAIL_TIMES:-}" ]; then
    n=$(cat "$RUN_DIR/.fails" 2>/dev/null || echo 0)
    if [ "$n" -lt "$FAKE_FAIL_TIMES" ]; then echo $((n + 1)) > "$RUN_DIR/.fails"; echo "boom" >&2; exit 3; fi
fi
if [ -n "${FAKE_SLEEP:-}" ]; then sleep "$FAKE_SLEEP" & echo $! > "$RUN_DIR/.sleeper"; wait; fi
[ "${FAKE_NO_METRICS:-0}" = 1 ] && exit 0
metrics="$("$PYTHON" -m echorl_verl.report next-metrics-path "$RUN_DIR")"
"$PYTHON" "$FAKE_TRAINER" "$metrics" "$RUN_DIR/resolved_config.yaml" "$@"
'''


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """Paths of the fake recipe; PYTHON / FAKE_TRAINER in the environment the runs inherit."""
    trainer = tmp_path / "fake_trainer.py"
    trainer.write_text(FAKE_TRAINER)
    recipe = tmp_path / "fake_recipe.sh"
    recipe.write_text(FAKE_RECIPE)
    monkeypatch.setenv("PYTHON", sys.executable)
    monkeypatch.setenv("FAKE_TRAINER", str(trainer))
    for key in ("RUN_DIR", "SEED", "NAME", "FAKE_FAIL_TIMES", "FAKE_SLEEP", "FAKE_NO_METRICS"):
        monkeypatch.delenv(key, raising=False)
    return recipe


def study_file(tmp_path, recipe, **top) -> str:
    raw = {"study_dir": str(tmp_path / "study"), "seeds": [0, 1], "baseline": "base", "env": {"STEPS": 2},
           "overrides": ["trainer.test_freq=2"],
           "arms": {"base": {"recipe": str(recipe), "overrides": ["echo.enable=false"]},
                    "echo": {"recipe": str(recipe), "overrides": ["echo.coef=0.01"]}}}
    raw.update(top)
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return str(path)


def assert_ended(pid: int, what: str) -> None:
    """The recipe's child `pid` ends within 5 s (else it is killed and the test fails, naming `what`)."""
    for _ in range(50):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(pid, 9)
    pytest.fail(f"the recipe's child {pid} outlived {what}")


def status(study, arm, seed) -> dict:
    return json.load(open(os.path.join(study.run_dir(arm, seed), "study_run.json")))


# ---- the study file ------------------------------------------------------------------------------

def good(recipe) -> dict:
    return {"study_dir": "runs/s", "seeds": [0], "baseline": "a", "arms": {"a": {"recipe": str(recipe)}}}


@pytest.mark.parametrize("change, message", [
    ({"colour": 1}, r"unknown key\(s\) \['colour'\]"),
    ({"study_dir": None}, r"study_dir: missing"),
    ({"seeds": [0, 0]}, r"seeds: a non-empty list of distinct integers"),
    ({"seeds": []}, r"seeds: a non-empty list"),
    ({"baseline": "b"}, r"baseline: 'b' is not one of the arms \['a'\]"),
    ({"arms": {}}, r"arms: missing or empty"),
    ({"arms": {"a b": {"recipe": "x"}}}, r"'a b' is not a usable arm name"),
    ({"arms": {"a": {}}}, r"arms.a.recipe: missing"),
    ({"arms": {"a": {"recipe": "recipes/nope.sh"}}}, r"arms.a.recipe: .*recipes/nope.sh does not exist"),
    ({"arms": {"a": {"recipe": "RECIPE", "overrides": "echo.coef=1"}}}, r"arms.a.overrides: a list of Hydra overrides"),
    ({"arms": {"a": {"recipe": "RECIPE", "overrides": ["echo.coef"]}}}, r"'echo.coef' is not a Hydra override"),
    ({"arms": {"a": {"recipe": "RECIPE", "env": {"SEED": 3}}}}, r"arms.a.env.SEED: the harness sets RUN_DIR, SEED, NAME"),
    ({"arms": {"a": {"recipe": "RECIPE", "lr": 1}}}, r"arms.a: unknown key\(s\) \['lr'\]"),
    ({"overrides": ["echo.coef=1"], "arms": {"a": {"recipe": "RECIPE", "overrides": ["+echo.coef=2"]}}},
     r"arms.a.overrides: \['echo.coef'\] also in the shared overrides"),
    ({"env": {"X": [1]}}, r"env.X: a string or number"),
    ({"run_timeout_s": 0}, r"run_timeout_s: a positive number"),
])
def test_study_file_errors_name_the_key(tmp_path, change, message):
    recipe = tmp_path / "r.sh"
    recipe.write_text("")
    raw = good(recipe)
    raw.update(json.loads(json.dumps(change).replace("RECIPE", str(recipe))))
    with pytest.raises(StudyError, match=message):
        parse_study(raw, "s.yaml")


def test_yaml_errors_name_the_line_and_paths_are_the_repos(tmp_path, fake):
    bad = tmp_path / "bad.yaml"
    bad.write_text("seeds: [0, 1]\narms: {a: [\n")
    with pytest.raises(StudyError, match=r"bad.yaml:3: not valid YAML"):
        load_study(str(bad))
    study = parse_study({"study_dir": "runs/x", "seeds": [1], "baseline": "a",
                         "arms": {"a": {"recipe": "recipes/grpo_echo_qwen.sh", "env": {"ON": True}}}}, "s.yaml")
    assert study.study_dir == os.path.join(REPO, "runs", "x") and study.name == "s"
    assert study.arms["a"].recipe_path() == os.path.join(REPO, "recipes", "grpo_echo_qwen.sh")
    assert study.arms["a"].env == {"ON": "true"}
    p = plan(study, "a", 1)
    assert p.env["RUN_DIR"] == os.path.join(REPO, "runs", "x", "a", "seed1") and p.env["SEED"] == "1"
    assert p.env["NAME"] == "a_seed1" and p.command[:2] == ["bash", study.arms["a"].recipe_path()]


# ---- running -------------------------------------------------------------------------------------

def test_runs_every_arm_and_seed_then_skips_finished_runs(tmp_path, fake, capsys):
    study = load_study(study_file(tmp_path, fake))
    assert run_study(study) == []
    err = capsys.readouterr().err
    assert "4 runs (2 arms x 2 seeds), 0 finished before, 4 to run" in err
    assert "[study] 1/4 base seed 0: done in" in err and "ETA" in err and "[study] 4/4 echo seed 1: done in" in err
    for arm, seed in study.runs():
        s = status(study, arm, seed)
        assert s["finished"] and s["exit_code"] == 0 and s["error"] is None and len(s["tries"]) == 1
        assert s["arm"] == arm and s["seed"] == seed and s["wall_s"] >= 0
        assert s["command"] == ["bash", str(fake), "trainer.test_freq=2", study.arms[arm].overrides[0]]
        assert s["env"] == {"STEPS": "2", "RUN_DIR": study.run_dir(arm, seed), "SEED": str(seed),
                            "NAME": f"{arm}_seed{seed}"}
        log = open(os.path.join(study.run_dir(arm, seed), "run.log")).read()
        assert f"fake recipe {arm}_seed{seed} seed {seed}: trainer.test_freq=2" in log
        config = yaml.safe_load(open(os.path.join(study.run_dir(arm, seed), "resolved_config.yaml")))
        assert config["data"]["seed"] == seed and config["trainer"]["test_freq"] == 2
    assert load_run(study.run_dir("echo", 1)).series("val-core/toy/acc/mean@1").tolist() == pytest.approx(
        [0.36, 0.38])  # 0.25 + 0.1 * seed + coef 0.01, + 0.01 per step
    before = {p: os.path.getmtime(os.path.join(study.run_dir(*p), "run.log")) for p in study.runs()}
    assert run_study(study) == []
    assert "4 finished before, 0 to run" in capsys.readouterr().err
    assert before == {p: os.path.getmtime(os.path.join(study.run_dir(*p), "run.log")) for p in study.runs()}
    assert yaml.safe_load(open(os.path.join(study.study_dir, "study.yaml")))["baseline"] == "base"
    assert len(load_results(load_study_dir(study.study_dir))[0]) == 4


def test_a_failed_run_is_retried_once_then_reported(tmp_path, fake, capsys):
    path = study_file(tmp_path, fake, seeds=[0])
    raw = yaml.safe_load(open(path))
    raw["arms"]["base"]["env"] = {"FAKE_FAIL_TIMES": 1}  # fails once, then works
    raw["arms"]["echo"]["env"] = {"FAKE_FAIL_TIMES": 5}  # fails every time
    open(path, "w").write(yaml.safe_dump(raw))
    study = load_study(path)
    failed = run_study(study)
    assert [(s["arm"], s["seed"]) for s in failed] == [("echo", 0)]
    base = status(study, "base", 0)
    assert base["finished"] and [t["exit_code"] for t in base["tries"]] == [3, 0]
    echo = status(study, "echo", 0)
    assert not echo["finished"] and echo["error"] == "exit code 3" and len(echo["tries"]) == 2
    err = capsys.readouterr().err
    assert "echo seed 0: FAILED twice (exit code 3)" in err and "| boom" in err  # the log's tail is shown
    assert study_main(["run", path]) == 1  # a rerun tries the unfinished run again (twice more)
    assert len(status(study, "echo", 0)["tries"]) == 4 and len(status(study, "base", 0)["tries"]) == 2
    assert "1 run(s) failed twice: echo/seed0 (exit code 3)" in capsys.readouterr().err


def test_exit_0_without_metrics_is_a_failure(tmp_path, fake, monkeypatch):
    monkeypatch.setenv("FAKE_NO_METRICS", "1")
    study = load_study(study_file(tmp_path, fake, seeds=[0]))
    failed = run_study(study)
    assert len(failed) == 2
    assert failed[0]["error"] == "the recipe exited 0 but wrote no metrics file (metrics.jsonl) in RUN_DIR"


def test_a_finished_run_of_another_command_stops_the_study(tmp_path, fake):
    path = study_file(tmp_path, fake, seeds=[0])
    assert run_study(load_study(path)) == []
    raw = yaml.safe_load(open(path))
    raw["arms"]["echo"]["overrides"] = ["echo.coef=0.1"]
    open(path, "w").write(yaml.safe_dump(raw))
    with pytest.raises(StudyError, match=r"(?s)echo/seed0: finished with another command.*delete that folder"):
        run_study(load_study(path))


def test_a_run_over_its_time_limit_is_stopped(tmp_path, fake, monkeypatch):
    monkeypatch.setenv("FAKE_SLEEP", "60")
    study = load_study(study_file(tmp_path, fake, seeds=[0], run_timeout_s=1,
                                  arms={"base": {"recipe": str(fake)}}))
    start = time.monotonic()
    failed = run_study(study)
    assert time.monotonic() - start < 30  # both tries stopped, the sleeping child with them
    assert failed[0]["error"] == "timed out after 1 s (run_timeout_s)" and failed[0]["exit_code"] is None
    sleeper = int(open(os.path.join(study.run_dir("base", 0), ".sleeper")).read())
    # the recipe's child (Ray, workers in a real run) is stopped too, not only bash
    assert_ended(sleeper, "the time limit")


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGHUP"])
def test_a_stopped_harness_stops_its_run_too(tmp_path, fake, monkeypatch, sig):
    """`kill` of the harness (or a closed terminal): the recipe runs in its own session, so without the harness
    passing the stop on it would train on as an orphan. The run's status says why it stopped."""
    import signal

    monkeypatch.setenv("FAKE_SLEEP", "120")
    path = study_file(tmp_path, fake, seeds=[0], arms={"base": {"recipe": str(fake)}})
    study = load_study(path)
    harness = subprocess.Popen([sys.executable, "-m", "echorl_verl.study", "run", path], cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    marker = os.path.join(study.run_dir("base", 0), ".sleeper")
    for _ in range(300):
        if os.path.exists(marker) and open(marker).read().strip():
            break
        time.sleep(0.1)
    sleeper = int(open(marker).read())
    start = time.monotonic()
    harness.send_signal(getattr(signal, sig))
    _, err = harness.communicate(timeout=60)
    assert harness.returncode == 130 and f"interrupted ({sig})" in err, err
    assert time.monotonic() - start < 30
    assert_ended(sleeper, "the stopped harness")  # the recipe and its child are gone with the harness
    s = status(study, "base", 0)
    assert s["finished"] is False and s["error"] == f"interrupted ({sig})"


def test_an_unfinished_run_continues_as_a_new_attempt(tmp_path, fake):
    """A run stopped mid-way (status unfinished) runs again in its folder: a second metrics file, and
    the report reads both attempts."""
    path = study_file(tmp_path, fake, seeds=[0], arms={"base": {"recipe": str(fake)}})
    study = load_study(path)
    assert run_study(study) == []
    s = status(study, "base", 0)
    s["finished"], s["error"] = False, "interrupted (Ctrl-C)"
    open(os.path.join(study.run_dir("base", 0), "study_run.json"), "w").write(json.dumps(s))
    assert run_study(study) == []
    run = load_run(study.run_dir("base", 0))
    assert [os.path.basename(f) for f in run.files] == ["metrics.jsonl", "metrics.1.jsonl"]
    assert len(status(study, "base", 0)["tries"]) == 2


def test_a_study_goes_on_in_another_checkout_from_its_compact_copy(tmp_path, fake, capsys):
    """--finished-in: the runs finished in a committed compact copy are copied into a fresh study folder and not
    run again; the export of the whole folder rewrites the copy's runs byte for byte and adds the new ones; a copy
    that disagrees with the study, or meets an unfinished run, stops it before anything runs or is copied."""
    path = study_file(tmp_path, fake, seeds=[0])
    first = load_study(path)
    assert run_study(first) == []
    compact = tmp_path / "compact"
    assert study_main(["export", first.study_dir, "--out", str(compact)]) == 0
    before = {f: f.read_bytes() for f in compact.rglob("*") if f.is_file() and "seed0" in str(f)}
    shutil.rmtree(first.study_dir)  # a fresh checkout: the first machine's runs are gone, the compact copy is left
    raw = yaml.safe_load(open(path))
    raw["seeds"] = [0, 1]
    open(path, "w").write(yaml.safe_dump(raw))
    later = load_study(path)
    capsys.readouterr()
    assert run_study(later, finished_in=str(compact)) == []
    err = capsys.readouterr().err
    assert "2 finished run(s) taken from" in err and "[study] 1/4" not in err and "[study] 4/4 echo seed 1" in err
    assert "run.log" not in os.listdir(later.run_dir("base", 0))  # copied, not run
    assert study_main(["export", later.study_dir, "--out", str(compact)]) == 0
    assert {f: f.read_bytes() for f in before} == before
    results, problems = load_results(load_study_dir(str(compact)))
    assert problems == [] and sorted((r.arm, r.seed) for r in results) == [
        ("base", 0), ("base", 1), ("echo", 0), ("echo", 1)]
    assert study_main(["report", str(compact), "--out", str(tmp_path / "r")]) == 0
    assert "| echo | 2 |" in (tmp_path / "r" / "report.md").read_text()
    assert run_study(later, finished_in=str(compact)) == []  # nothing to take or run any more
    assert "0 finished run(s) taken" in capsys.readouterr().err
    # an unfinished run here and the finished one in the copy: the user chooses
    shutil.rmtree(later.run_dir("echo", 0))
    os.makedirs(later.run_dir("echo", 0))
    with pytest.raises(StudyError, match=r"echo/seed0: an unfinished run here, and the same run finished in"):
        run_study(later, finished_in=str(compact))
    assert os.listdir(later.run_dir("echo", 0)) == []
    # a copy of other settings
    shutil.rmtree(later.study_dir)
    raw["arms"]["echo"]["overrides"] = ["echo.coef=0.1"]
    open(path, "w").write(yaml.safe_dump(raw))
    with pytest.raises(StudyError, match=r"(?s)compact/echo/seed0: finished with another command"):
        run_study(load_study(path), finished_in=str(compact))
    assert not os.path.exists(os.path.join(later.study_dir, "base"))  # nothing copied
    with pytest.raises(StudyError, match=r"--finished-in .*nowhere: no such folder"):
        run_study(later, finished_in=str(tmp_path / "nowhere"))


def test_python_dash_m_run_report_export(tmp_path, fake):
    """The three commands as a user types them; the report of the export equals the study's."""
    path = study_file(tmp_path, fake, seeds=[0, 1])
    cmd = [sys.executable, "-m", "echorl_verl.study"]
    out = subprocess.run(cmd + ["run", path], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "every run finished" in out.stderr
    study_dir = str(tmp_path / "study")
    for args in (["report", study_dir, "--out", str(tmp_path / "r1")], ["export", study_dir, "--out", str(tmp_path / "c")],
                 ["report", str(tmp_path / "c"), "--out", str(tmp_path / "r2")]):
        out = subprocess.run(cmd + args, capture_output=True, text=True, cwd=REPO, timeout=300)
        assert out.returncode == 0, out.stderr
    report = (tmp_path / "r1" / "report.md").read_text()
    assert report == (tmp_path / "r2" / "report.md").read_text()
    assert "| echo | 2 |" in report and "| base | 2 |" in report
    out = subprocess.run(cmd + ["report", str(tmp_path / "nothing"), "--out", str(tmp_path / "r3")],
                         capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 2 and "no study.yaml; is this a study folder" in out.stderr


def test_the_example_studies_parse():
    folder = os.path.join(REPO, "echorl_verl", "study", "examples")
    names = sorted(f for f in os.listdir(folder) if f.endswith(".yaml"))
    assert "smoke.yaml" in names
    for name in names:
        study = load_study(os.path.join(folder, name))
        assert study.baseline in study.arms and len(study.runs()) == len(study.arms) * len(study.seeds)
