"""Reading one run's metrics: the JSON lines verl's `file` logger writes.

verl 0.9.1 `verl/utils/tracking.py::FileLogger` writes one line per `Tracking.log` call:
`{"step": int, "data": {metric_name: number}}` (orjson; NaN becomes `null`). The v1 trainer logs the
validation before training as its own line (step 0, or the resumed step), then one line per training
step that also carries the validation metrics on test steps.

Validation metric names come from `verl/trainer/ppo/v1/trainer_base.py::_val_metrics_update`:
`val-core/<data_source>/<var>/mean@<n>` where <var> is `acc` when the reward returns one, else `reward`,
and <n> is the number of samples per prompt. A data_source may itself hold slashes (`echorl/addition`),
so the name is parsed from the right.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field

VAL_CORE = re.compile(r"^val-core/(?P<source>.+)/(?P<var>[^/]+)/mean@(?P<n>\d+)$")


class ReportError(ValueError):
    """Bad input for the report: the message names the file (and line or metric) and the fix."""


@dataclass(frozen=True)
class ValScore:
    """One benchmark's validation accuracy at one step: value in [0, 1], verl's metric name, samples/prompt."""

    value: float
    metric: str
    n: int


@dataclass
class RunLog:
    """All metrics of one run.

    name:  the run's label (file stem, or the folder name for `<dir>/metrics.jsonl`)
    path:  the JSONL file read
    steps: {step: {metric: float}}; lines with the same step are merged (a later line wins per metric)
    lines: {step: last line number (1-based) that logged it}, for error messages
    """

    name: str
    path: str
    steps: dict[int, dict[str, float]] = field(default_factory=dict)
    lines: dict[int, int] = field(default_factory=dict)

    def series(self, metric: str) -> tuple[list[int], list[float]]:
        """(steps, values) of one metric, step-sorted; steps that did not log it are left out."""
        xs, ys = [], []
        for step in sorted(self.steps):
            if metric in self.steps[step]:
                xs.append(step)
                ys.append(self.steps[step][metric])
        return xs, ys

    def validation(self) -> dict[int, dict[str, ValScore]]:
        """{step: {data_source: ValScore}} for every step that logged `val-core/.../mean@n` metrics.

        When one data_source has several `mean@n` under val-core (not produced by verl 0.9.1), the largest
        n wins, as verl's own choice of the core metric does.
        """
        out: dict[int, dict[str, ValScore]] = {}
        for step in sorted(self.steps):
            for metric, value in self.steps[step].items():
                m = VAL_CORE.match(metric)
                if m is None:
                    continue
                if not math.isfinite(value):
                    raise ReportError(
                        f"{self.path}:{self.lines[step]}: {metric} at step {step} is {value!r} (NaN or null "
                        "logged): the validation produced no score for that benchmark; rerun its evaluation"
                    )
                score = ValScore(float(value), metric, int(m["n"]))
                old = out.setdefault(step, {}).get(m["source"])
                if old is None or score.n > old.n:
                    out[step][m["source"]] = score
        return out


def _number(value) -> float | None:
    """A logged value as float (None for null); anything else is kept out (strings, lists: not curves)."""
    if value is None:
        return math.nan
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    return None


def run_name(path: str) -> str:
    """Label of a run: `runs/grpo_echo_qwen/metrics.jsonl` -> grpo_echo_qwen, `x/foo.jsonl` -> foo."""
    stem = os.path.splitext(os.path.basename(path))[0]
    if stem == "metrics":
        parent = os.path.basename(os.path.dirname(os.path.abspath(path)))
        return parent or stem
    return stem


def resolve(arg: str) -> tuple[str, str]:
    """A command-line run argument -> (name, jsonl path).

    Accepts a JSONL file, a run folder holding `metrics.jsonl` (what the recipes write), or
    `NAME=PATH` to set the label. Raises ReportError when nothing readable is there.
    """
    name = None
    head, sep, tail = arg.partition("=")
    if sep and head and "/" not in head and not os.path.exists(arg):
        name, arg = head, tail
    path = arg
    if os.path.isdir(path):
        path = os.path.join(path, "metrics.jsonl")
        if not os.path.isfile(path):
            found = sorted(f for f in os.listdir(arg) if f.endswith(".jsonl"))
            hint = f" It holds {found}: pass the file itself." if found else (
                " Did the run set trainer.logger to include 'file' (and VERL_FILE_LOGGER_PATH)?")
            raise ReportError(f"{arg}: run folder has no metrics.jsonl.{hint}")
    elif not os.path.exists(path):
        raise ReportError(f"{path}: no such file or folder. Pass a run folder (runs/<name>/) or its metrics.jsonl")
    return (name or run_name(path)), path


def load_run(arg: str) -> RunLog:
    """Read one run (file, folder or NAME=PATH, see `resolve`). Raises ReportError on any bad line."""
    name, path = resolve(arg)
    run = RunLog(name=name, path=path)
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                last = " (the last line: the run was probably killed while writing it)" if not raw.endswith(b"\n") else ""
                raise ReportError(
                    f"{path}:{lineno}: not valid JSON{last}: {exc}. Delete or repair that line "
                    f"(e.g. `sed -i '{lineno}d' {path}` after a backup) and run again"
                ) from None
            if not isinstance(rec, dict) or not isinstance(rec.get("data"), dict) or type(rec.get("step")) is not int:
                got = sorted(rec) if isinstance(rec, dict) else type(rec).__name__
                raise ReportError(
                    f"{path}:{lineno}: expected verl's file-logger record {{\"step\": int, \"data\": {{...}}}}, "
                    f"got {got}. Is this a verl metrics JSONL (trainer.logger=[...,file])?"
                )
            step = rec["step"]
            merged = run.steps.setdefault(step, {})
            for key, value in rec["data"].items():
                num = _number(value)
                if num is not None:
                    merged[key] = num
            run.lines[step] = lineno
    if not run.steps:
        raise ReportError(
            f"{path}: empty (no metric lines). The run logged nothing yet: check that it reached its first "
            "validation/step and that trainer.logger includes 'file'"
        )
    return run


def require_validation(run: RunLog) -> dict[int, dict[str, ValScore]]:
    """`run.validation()`, or ReportError when the run logged no validation metric at all."""
    val = run.validation()
    if not val:
        raise ReportError(
            f"{run.path}: run {run.name!r} has no validation metrics (no 'val-core/<data_source>/<var>/mean@<n>' "
            f"in {len(run.steps)} logged step(s)). Run with trainer.test_freq>0 or trainer.val_before_train=True, "
            "or evaluate a checkpoint with recipes/eval_qwen.sh"
        )
    return val
