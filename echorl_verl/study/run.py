"""`study run`: every (arm, seed) of a study as one real training run, one after another.

Each run is `bash <recipe> <shared overrides> <arm overrides>` from the repository root, with the study's
environment plus RUN_DIR=STUDY_DIR/<arm>/seed<k>, SEED=<k> and NAME=<arm>_seed<k> (the recipe contract in
recipes/common.sh). Its stdout and stderr go to RUN_DIR/run.log (appended, one header per try) and its
outcome to RUN_DIR/study_run.json:

    {"arm", "seed", "run_dir", "command": [...], "env": {the variables the study sets},
     "finished": bool, "exit_code": int | null, "wall_s": float (the last try), "error": str | null,
     "tries": [{"exit_code", "wall_s", "error"}, ...] (every try, over every `study run`)}

A run is finished when the recipe exited 0 and left a metrics file in RUN_DIR. A finished run is skipped
on a rerun (if its command and environment are still the study's; otherwise the harness stops and says
so). An unfinished one runs again in the same folder: the recipe gives the new attempt its own metrics
file and `trainer.resume_mode=auto` continues from its last checkpoint. A failed try is retried once; a run
that fails twice is reported and the study goes on with the next run. Ctrl-C, SIGTERM or SIGHUP to the
harness stops the running recipe with it (the run's status: "interrupted (SIGTERM)"), so a study stopped from
outside leaves no run training on. `--finished-in COMPACT_DIR` first copies into the study folder the runs finished in a
compact copy (`study export`) that it lacks, so a study goes on in a fresh checkout from its committed results;
`study report` and `study export` then see the whole study.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

import yaml
from tqdm import tqdm

from echorl_verl import atomic
from echorl_verl.report.attempts import attempt_files
from echorl_verl.study.spec import REPO, Study, StudyError, run_path

STATUS = "study_run.json"
LOG = "run.log"
TRIES = 2  # a failed run is retried once


@dataclass(frozen=True)
class Plan:
    """What one run executes."""

    arm: str
    seed: int
    run_dir: str
    command: list[str]
    env: dict[str, str]  # only what the study sets; the run inherits the rest of os.environ


def plan(study: Study, arm: str, seed: int) -> Plan:
    a = study.arms[arm]
    run_dir = study.run_dir(arm, seed)
    env = {**study.env, **a.env, "RUN_DIR": run_dir, "SEED": str(seed), "NAME": f"{arm}_seed{seed}"}
    return Plan(arm, seed, run_dir, ["bash", a.recipe_path(), *study.overrides, *a.overrides], env)


def read_status(run_dir: str) -> dict | None:
    path = os.path.join(run_dir, STATUS)
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except json.JSONDecodeError as exc:
        raise StudyError(f"{path}: not valid JSON ({exc}); delete it to run that run again") from None


def is_done(p: Plan, run_dir: str | None = None) -> bool:
    """True for a finished run of this very command in `run_dir` (default: the plan's own); StudyError for a
    finished run of another one."""
    run_dir = run_dir or p.run_dir
    status = read_status(run_dir)
    if not status or not status.get("finished"):
        return False
    if status.get("command") != p.command or status.get("env") != p.env:
        raise StudyError(
            f"{run_dir}: finished with another command or environment than the study now asks for\n"
            f"  then: {status.get('command')} env {status.get('env')}\n  now:  {p.command} env {p.env}\n"
            "  delete that folder to run it again, or restore the arm's settings in the study file")
    return True


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, or SIGTERM / SIGHUP to the harness (`kill`, a closed terminal, a batch system's stop): the running
    recipe is stopped with it, its status says so, and `study run` again continues the run."""

    def __init__(self, signal_name: str = "Ctrl-C"):
        super().__init__(signal_name)
        self.signal_name = signal_name


def _interrupt(signum, _frame) -> None:
    signal.signal(signum, signal.SIG_IGN)  # a second one must not cut short the stopping of the recipe
    raise Interrupted(signal.Signals(signum).name)


@contextlib.contextmanager
def _stopped_by_signals():
    """SIGTERM and SIGHUP raise Interrupted (as Ctrl-C raises KeyboardInterrupt) while the study runs, so the recipe,
    in its own session, is stopped too instead of training on as an orphan."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _stop(proc: subprocess.Popen) -> None:
    """Stop the recipe and everything it started (its own process group: Ray, workers)."""
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def try_once(p: Plan, timeout_s: float | None) -> dict:
    """One try of a run: {"exit_code", "wall_s", "error"}; KeyboardInterrupt stops the run and propagates."""
    os.makedirs(p.run_dir, exist_ok=True)
    start = time.monotonic()
    with open(os.path.join(p.run_dir, LOG), "ab") as log:
        log.write(f"\n=== study try at {time.strftime('%Y-%m-%d %H:%M:%S')}: {' '.join(p.command)}\n"
                  f"=== env {json.dumps(p.env, sort_keys=True)}\n".encode())
        log.flush()
        proc = subprocess.Popen(p.command, cwd=REPO, env={**os.environ, **p.env}, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            code, error = proc.wait(timeout=timeout_s), None
        except subprocess.TimeoutExpired:
            _stop(proc)
            code, error = None, f"timed out after {timeout_s:g} s (run_timeout_s)"
        except BaseException:
            _stop(proc)
            raise
    if code == 0 and not attempt_files(p.run_dir):
        error = "the recipe exited 0 but wrote no metrics file (metrics.jsonl) in RUN_DIR"
    elif code not in (0, None):
        error = f"exit code {code}"
    return {"exit_code": code, "wall_s": round(time.monotonic() - start, 1), "error": error}


def write_status(p: Plan, tries: list[dict]) -> dict:
    last = tries[-1]
    status = {"arm": p.arm, "seed": p.seed, "run_dir": p.run_dir, "command": p.command, "env": p.env,
              "finished": last["error"] is None, "exit_code": last["exit_code"], "wall_s": last["wall_s"],
              "error": last["error"], "tries": tries}
    atomic.write_text(os.path.join(p.run_dir, STATUS), json.dumps(status, indent=1) + "\n")
    return status


def execute(p: Plan, timeout_s: float | None) -> dict:
    """Run `p` (retrying a failed try once) and write its status; returns the status."""
    tries = (read_status(p.run_dir) or {}).get("tries", [])
    for _ in range(TRIES):
        try:
            tries.append(try_once(p, timeout_s))
        except KeyboardInterrupt as exc:
            name = getattr(exc, "signal_name", "Ctrl-C")
            write_status(p, tries + [{"exit_code": None, "wall_s": None, "error": f"interrupted ({name})"}])
            raise
        status = write_status(p, tries)
        if status["finished"]:
            break
    return status


def _tail(run_dir: str, lines: int = 15) -> str:
    with open(os.path.join(run_dir, LOG), "rb") as fh:
        text = fh.read()[-20000:].decode("utf-8", "replace")
    return "\n".join("    | " + line for line in text.splitlines()[-lines:])


def adopt_finished(todo: list[Plan], compact_dir: str) -> list[Plan]:
    """Copy into the study folder the runs of `todo` (not finished here) that are finished in `compact_dir` (a
    `study export` copy, e.g. committed by an earlier session in another checkout); returns those plans.
    Everything is checked before anything is copied: a compact run of another command, or an unfinished run here
    that the copy has finished, is a StudyError."""
    if not os.path.isdir(compact_dir):
        raise StudyError(f"--finished-in {compact_dir}: no such folder (a compact copy made by `study export`)")
    adopt = []
    for p in todo:
        src = run_path(compact_dir, p.arm, p.seed)
        if not is_done(p, src):
            continue
        if os.path.exists(p.run_dir):
            raise StudyError(f"{p.run_dir}: an unfinished run here, and the same run finished in {src}; delete "
                             f"{p.run_dir} to take the finished one, or leave out --finished-in to continue it")
        adopt.append((p, src))
    for p, src in adopt:
        os.makedirs(os.path.dirname(p.run_dir), exist_ok=True)
        shutil.copytree(src, p.run_dir + ".adopting")
        os.replace(p.run_dir + ".adopting", p.run_dir)
    return [p for p, _ in adopt]


def run_study(study: Study, finished_in: str | None = None) -> list[dict]:
    """Run every unfinished (arm, seed) of the study; returns the failed runs' statuses (empty: all done).

    `finished_in`: a compact copy of the study (`study export`): its finished runs are copied into the study folder
    (adopt_finished) and not run again."""
    plans = [plan(study, arm, seed) for arm, seed in study.runs()]
    todo = [p for p in plans if not is_done(p)]  # raises before anything runs if a finished run disagrees
    if finished_in:
        adopted = adopt_finished(todo, finished_in)
        print(f"[study] {len(adopted)} finished run(s) taken from {finished_in}", file=sys.stderr)
        todo = [p for p in todo if p not in adopted]
    os.makedirs(study.study_dir, exist_ok=True)
    atomic.write_text(os.path.join(study.study_dir, "study.yaml"), yaml.safe_dump(study.to_dict(), sort_keys=False))
    done = len(plans) - len(todo)
    print(f"[study] {study.name}: {len(plans)} runs ({len(study.arms)} arms x {len(study.seeds)} seeds), "
          f"{done} finished before, {len(todo)} to run, in {study.study_dir}", file=sys.stderr)
    failed, walls = [], []
    with _stopped_by_signals(), tqdm(total=len(plans), initial=done, desc="study runs", unit="run",
                                     file=sys.stderr) as bar:
        for p in todo:
            bar.set_postfix_str(f"{p.arm} seed {p.seed}")
            start = time.monotonic()
            status = execute(p, study.run_timeout_s)
            walls.append(time.monotonic() - start)
            bar.update(1)
            left = len(plans) - bar.n
            eta = f"; ETA {left * sum(walls) / len(walls) / 60:.1f} min for {left} more" if left else ""
            if status["finished"]:
                tqdm.write(f"[study] {bar.n}/{len(plans)} {p.arm} seed {p.seed}: done in {status['wall_s']:.0f} s{eta}",
                           file=sys.stderr)
            else:
                failed.append(status)
                tqdm.write(f"[study] {bar.n}/{len(plans)} {p.arm} seed {p.seed}: FAILED twice ({status['error']}); "
                           f"log {os.path.join(p.run_dir, LOG)}:\n{_tail(p.run_dir)}{eta}", file=sys.stderr)
    return failed
