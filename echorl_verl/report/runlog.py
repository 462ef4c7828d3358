"""Reading one run's metrics: the JSON lines verl's `file` logger writes, every attempt of the run.

verl 0.9.1 `verl/utils/tracking.py::FileLogger` writes one line per `Tracking.log` call:
`{"step": int, "data": {metric_name: number}}` (orjson; NaN becomes `null`). The v1 trainer logs the
validation before training as its own line (step 0, or the resumed step), then one line per training
step that also carries the validation metrics on test steps.

A run folder may hold several attempts (attempts.py). They are merged per step and per kind of record:
for each step, the latest attempt that logged training metrics at that step supplies all of that step's
training metrics, and the latest attempt that logged validation metrics (`val-*`) supplies all of its
validation metrics. So a redone step is wholly the later attempt's, while a resume's own validation line
at the checkpoint step (validation only) replaces that step's validation and keeps the training metrics
the first attempt logged for it. Within one file, lines of the same step merge (a later line wins per metric).

Bad lines are errors naming the file and line, with one exception: the last line of a file that does not
end in a newline (a run killed while writing it) is left out with a warning on stderr, because that is
what a kill mid-write leaves and the step is redone by the next attempt anyway.
"""

from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass
from functools import cached_property

import pandas as pd

from echorl_verl.report.attempts import attempt_files

COLUMNS = ["attempt", "file", "line", "step", "metric", "value"]


class ReportError(ValueError):
    """Bad input for the report: the message names the file (and line or metric) and the fix."""


@dataclass
class RunLog:
    """All metrics of one run.

    name:    the run's label (file stem, or the folder name for a run folder)
    path:    what was read: a JSONL file, or the run folder
    files:   the attempt files read, oldest first
    records: long table, one row per (step, metric) after merging, sorted by step then metric; columns
             attempt (index into files), file, line (1-based), step (int), metric (str), value (float;
             NaN when logged as null)
    """

    name: str
    path: str
    files: list[str]
    records: pd.DataFrame

    @cached_property
    def metrics(self) -> pd.DataFrame:
        """Wide view: index step, one float column per metric, NaN where a step did not log it."""
        wide = self.records.pivot(index="step", columns="metric", values="value")
        wide.columns.name = None
        return wide

    @property
    def steps(self) -> list[int]:
        return self.metrics.index.tolist()

    def series(self, metric: str) -> pd.Series:
        """One metric over the steps that logged it (index step, sorted); logged nulls are NaN."""
        rows = self.records[self.records["metric"] == metric]
        return pd.Series(rows["value"].to_numpy(), index=rows["step"].to_numpy(), name=metric, dtype=float)

    def where(self, step: int, metric: str) -> str:
        """`file:line` that logged `metric` at `step`, for error messages."""
        row = self.records[(self.records["step"] == step) & (self.records["metric"] == metric)].iloc[0]
        return f"{row['file']}:{row['line']}"


def _number(value) -> float | None:
    """A logged value as float (NaN for null); None for anything else (strings, lists: not curves)."""
    if value is None:
        return math.nan
    if isinstance(value, (bool, int, float)):
        return float(value)
    return None


def _parse_line(path: str, lineno: int, raw: bytes, last: bool) -> dict | None:
    """One JSONL line -> {"step", "data"}; None for a cut-off last line (with a warning)."""
    try:
        rec = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        if last and not raw.endswith(b"\n"):
            print(f"[report] warning: {path}:{lineno}: last line is cut off (the run was killed while writing "
                  f"it): left out, the metrics read stop at the line before", file=sys.stderr)
            return None
        raise ReportError(
            f"{path}:{lineno}: not valid JSON: {exc}. Delete or repair that line "
            f"(e.g. `sed -i '{lineno}d' {path}` after a backup) and run again"
        ) from None
    if not isinstance(rec, dict) or not isinstance(rec.get("data"), dict) or type(rec.get("step")) is not int:
        got = sorted(rec) if isinstance(rec, dict) else type(rec).__name__
        raise ReportError(
            f"{path}:{lineno}: expected verl's file-logger record {{\"step\": int, \"data\": {{...}}}}, "
            f"got {got}. Is this a verl metrics JSONL (trainer.logger=[...,file])?"
        )
    return rec


def read_attempt(path: str, attempt: int = 0) -> pd.DataFrame:
    """One metrics file as a long table (COLUMNS); lines of one step merge, a later line wins per metric."""
    with open(path, "rb") as fh:
        lines = fh.readlines()
    rows = []
    for lineno, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        rec = _parse_line(path, lineno, raw, last=lineno == len(lines))
        if rec is None:
            continue
        for metric, value in rec["data"].items():
            num = _number(value)
            if num is not None:
                rows.append((attempt, path, lineno, rec["step"], metric, num))
    frame = pd.DataFrame(rows, columns=COLUMNS).astype({"line": "int64", "step": "int64", "value": "float64"})
    return frame.drop_duplicates(["step", "metric"], keep="last")


def merge_attempts(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Attempts (oldest first) -> one long table: per (step, kind), the latest attempt that logged it wins.

    kind is "val" for `val-*` metrics, "train" for the rest (see the module docstring)."""
    long = pd.concat(frames, ignore_index=True)
    kind = long["metric"].str.startswith("val-")
    latest = long.groupby([long["step"], kind])["attempt"].transform("max")
    return long[long["attempt"] == latest].sort_values(["step", "metric"], kind="stable").reset_index(drop=True)


def run_name(path: str) -> str:
    """Label of a run: `runs/grpo_echo_qwen/metrics.jsonl` (or the folder) -> grpo_echo_qwen, `x/foo.jsonl` -> foo."""
    if os.path.isdir(path):
        return os.path.basename(os.path.abspath(path))
    stem = os.path.splitext(os.path.basename(path))[0]
    if stem == "metrics":
        return os.path.basename(os.path.dirname(os.path.abspath(path))) or stem
    return stem


def resolve(arg: str) -> tuple[str, str, list[str]]:
    """A command-line run argument -> (name, path, attempt files).

    Accepts a JSONL file (read alone), a run folder (every attempt: metrics.jsonl, metrics.1.jsonl, ...),
    or `NAME=PATH` to set the label. Raises ReportError when nothing readable is there.
    """
    name = None
    head, sep, tail = arg.partition("=")
    if sep and head and "/" not in head and not os.path.exists(arg):
        name, arg = head, tail
    if os.path.isdir(arg):
        files = attempt_files(arg)
        if not files:
            found = sorted(f for f in os.listdir(arg) if f.endswith(".jsonl"))
            hint = f" It holds {found}: pass the file itself." if found else (
                " Did the run set trainer.logger to include 'file' (and VERL_FILE_LOGGER_PATH)?")
            raise ReportError(f"{arg}: run folder has no metrics.jsonl.{hint}")
    elif os.path.exists(arg):
        files = [arg]
    else:
        raise ReportError(f"{arg}: no such file or folder. Pass a run folder (runs/<name>/) or its metrics.jsonl")
    return (name or run_name(arg)), arg, files


def load_run(arg: str) -> RunLog:
    """Read one run (file, folder or NAME=PATH, see `resolve`). Raises ReportError on any bad line."""
    name, path, files = resolve(arg)
    frames = [read_attempt(f, i) for i, f in enumerate(files)]
    if all(f.empty for f in frames):
        raise ReportError(
            f"{path}: empty (no metric lines in {', '.join(files)}). The run logged nothing yet: check that it "
            "reached its first validation/step and that trainer.logger includes 'file'"
        )
    return RunLog(name=name, path=path, files=files, records=merge_attempts([f for f in frames if not f.empty]))
