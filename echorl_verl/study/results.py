"""Reading a study folder: per (arm, seed), the run's metrics (every attempt), resolved config and status.

What each run must have for the report, checked here, each failure one line naming the run:
the folder and a metrics file (else "missing"), study_run.json with finished=true (else "unfinished"),
RUN_DIR/resolved_config.yaml (the recipe writes it), validation metrics, every training step
(`trainer.total_training_steps` of its config, else as many as the longest run: else "truncated") and the
same validation steps as the other runs (the curves and their areas are compared step by step).

The all-success group share comes from `echo/all_success_group_share` when the run logged it (echo runs).
Baselines run verl's own trainer, which logs no group statistic (verl 0.9.1's `compute_data_metrics` has
none); for them the share is computed from verl's rollout dump (`trainer.rollout_data_dir`, which the
recipes' PROFILE=cpu and ROLLOUT_DUMP=1 put in RUN_DIR/rollouts): a group is the rollouts whose dump `uid`
(`{prompt uid}_{session}_{i}`, verl's `agent_loop_tq.py`) shares the prompt uid (the synthetic padding
rows verl adds to split a batch evenly, uid `pad<hex>`, are left out), a success is
`score >= echo.success_threshold` (the echo default rule). `study export` keeps that series as
`rollouts/all_success_group_share` so the compact copy needs no dump.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pandas as pd
import yaml
from omegaconf import OmegaConf

from echorl_verl.report.runlog import ReportError, RunLog, load_run
from echorl_verl.report.validation import accuracy, pass_at_k
from echorl_verl.study.run import STATUS, read_status
from echorl_verl.study.spec import Study, StudyError, parse_study

SHARE = "echo/all_success_group_share"
DUMP_SHARE = "rollouts/all_success_group_share"
# every training metric the report reads; `study export` keeps these and every val-core/* metric
TRAIN_METRICS = (SHARE, DUMP_SHARE, "actor/entropy", "response_length/mean", "timing_s/step",
                 "critic/score/mean", "actor/echo_loss", "echo/clip_token_share",
                 "actor/echo_grad_ratio", "actor/echo_grad_cos", "timing_s/update_actor")
CONFIG = "resolved_config.yaml"
PAD_UID = r"pad[0-9a-f]{32}"  # verl/trainer/ppo/padding_utils.py: f"pad{uuid.uuid4().hex}"


@dataclass
class RunResult:
    arm: str
    seed: int
    run_dir: str  # where it is read from now
    log: RunLog
    config: dict  # the resolved config, nested
    status: dict  # study_run.json
    share: pd.Series  # all-success group share per training step (empty when neither source exists)
    share_source: str  # SHARE, "rollout dump" or "none"

    @property
    def label(self) -> str:
        return f"{self.arm}/seed{self.seed}"


def _get(config: dict, key: str, default=None):
    return OmegaConf.select(OmegaConf.create(config), key, default=default)


def dump_share(dump_dir: str, threshold: float) -> pd.Series:
    """All-success group share per step from verl's rollout dump (`<step>.jsonl` files with uid and score)."""
    shares = {}
    for name in sorted(os.listdir(dump_dir)):
        stem, ext = os.path.splitext(name)
        if ext != ".jsonl" or not stem.isdigit():
            continue
        path = os.path.join(dump_dir, name)
        try:
            rows = pd.read_json(path, lines=True, dtype=False)
        except ValueError as exc:
            raise ReportError(f"{path}: not verl's rollout dump (JSON lines): {exc}. Delete the file if the run "
                              "was killed while writing it") from None
        if rows.empty:
            continue
        if not {"uid", "score"} <= set(rows.columns):
            raise ReportError(f"{path}: rollout dump lines lack 'uid' or 'score' (columns {sorted(rows.columns)})")
        group = rows["uid"].astype(str).str.rsplit("_", n=2).str[0]
        real = ~group.str.fullmatch(PAD_UID)  # verl's synthetic padding rows (padding_utils.py) are no prompt
        shares[int(stem)] = float((rows["score"][real] >= threshold).groupby(group[real]).all().mean())
    return pd.Series(shares, dtype=float).sort_index()


def _share(log: RunLog, config: dict, status: dict, run_dir: str) -> tuple[pd.Series, str]:
    for metric, source in ((SHARE, SHARE), (DUMP_SHARE, "rollout dump")):
        series = log.series(metric)
        if not series.empty:
            return series, source
    dump = _get(config, "trainer.rollout_data_dir")
    if isinstance(dump, str) and status.get("run_dir") and dump.startswith(status["run_dir"]):
        dump = run_dir + dump[len(status["run_dir"]):]  # the study folder may have moved since
    if (isinstance(dump, str) and os.path.isdir(dump) and _get(config, "echo.success_key", "score") == "score"):
        series = dump_share(dump, float(_get(config, "echo.success_threshold", 0.5)))
        if not series.empty:
            return series, "rollout dump"
    return pd.Series(dtype=float), "none"


def load_result(study: Study, arm: str, seed: int) -> RunResult:
    """One run of the study folder; StudyError naming the run and what is missing."""
    run_dir = study.run_dir(arm, seed)
    label = f"{arm}/seed{seed}"
    if not os.path.isdir(run_dir):
        raise StudyError(f"{label}: missing ({run_dir} does not exist): run `python -m echorl_verl.study run`")
    status = read_status(run_dir)
    if status is None:
        raise StudyError(f"{label}: no {STATUS} in {run_dir}: not run by the study harness")
    if not status.get("finished"):
        raise StudyError(f"{label}: unfinished ({status.get('error') or 'still running or stopped'}); "
                         "`study run` again continues it")
    try:
        log = load_run(run_dir)
        pass_at_k(log)  # validation there, one k
    except ReportError as exc:
        raise StudyError(f"{label}: {exc}") from None
    config_path = os.path.join(run_dir, CONFIG)
    if not os.path.isfile(config_path):
        raise StudyError(f"{label}: no {CONFIG} in {run_dir}; the recipe writes it (ECHORL_RESOLVED_CONFIG)")
    with open(config_path, encoding="utf-8") as fh:
        config = yaml.safe_load(fh) or {}
    try:
        share, source = _share(log, config, status, run_dir)
    except ReportError as exc:
        raise StudyError(f"{label}: {exc}") from None
    return RunResult(arm, seed, run_dir, log, config, status, share, source)


def trained_steps(result: RunResult) -> list[int]:
    return result.log.series("timing_s/step").index.tolist()


def _completeness(results: list[RunResult]) -> list[tuple[str, str]]:
    """(run label, problem) of runs that loaded: truncated, or validated at other steps than the rest."""
    problems = []
    longest = max((max(trained_steps(r), default=0) for r in results), default=0)
    for r in results:
        want = _get(r.config, "trainer.total_training_steps") or longest
        steps = trained_steps(r)
        if len(steps) < want:
            problems.append((r.label, f"{r.label}: truncated: {len(steps)} of {want} training steps logged "
                                      f"(last {max(steps, default=0)}); `study run` again continues it"))
    val_steps = {r.label: tuple(accuracy(r.log).index) for r in results}
    common = pd.Series(list(val_steps.values()), dtype=object).mode()
    for label, steps in val_steps.items():
        if len(common) and steps != common.iloc[0]:
            problems.append((label, f"{label}: validated at steps {list(steps)}, the other runs at "
                                    f"{list(common.iloc[0])}"))
    return problems


def load_results(study: Study, allow_incomplete: bool = False) -> tuple[list[RunResult], list[str]]:
    """Every run of the study, and the problems found (one line each).

    StudyError listing every problem unless allow_incomplete, which keeps the complete runs."""
    results, problems = [], []
    for arm, seed in study.runs():
        try:
            results.append(load_result(study, arm, seed))
        except StudyError as exc:
            problems.append((f"{arm}/seed{seed}", str(exc)))
    problems += _completeness(results)
    lines = [text for _, text in problems]
    if problems and not allow_incomplete:
        raise StudyError(f"{study.study_dir}: {len(problems)} run problem(s):\n  " + "\n  ".join(lines)
                         + "\n(--allow-incomplete reports on the complete runs and lists these at the top)")
    bad = {label for label, _ in problems}
    return [r for r in results if r.label not in bad], lines


def load_study_dir(study_dir: str) -> Study:
    """The study as the harness recorded it in STUDY_DIR/study.yaml (with study_dir = this folder)."""
    path = os.path.join(study_dir, "study.yaml")
    if not os.path.isfile(path):
        raise StudyError(f"{study_dir}: no study.yaml; is this a study folder (`python -m echorl_verl.study run`)?")
    with open(path, encoding="utf-8") as fh:
        raw = yaml.safe_load(fh)
    return parse_study(raw, path, study_dir=os.path.abspath(study_dir), check_recipes=False)
