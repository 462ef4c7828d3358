"""Validation accuracy out of verl's metric names: per step and benchmark, pass@1 and pass@k.

Names come from `verl/trainer/ppo/v1/trainer_base.py::_val_metrics_update` over
`verl/trainer/ppo/metric_utils.py::process_validation_metrics`: with n samples per prompt, val-core holds
`val-core/<data_source>/<var>/mean@<n>` (mean over prompts of the mean over samples: pass@1) and, for
n > 1, `val-core/<data_source>/<var>/best@<n>/mean` (mean over prompts of the best of n samples drawn with
replacement, 1000 bootstrap rounds: verl's pass@n estimate). <var> is `acc` when the reward returns one,
else `reward`. A data_source may itself hold slashes (`echorl/addition`), so names are parsed from the right.
"""

from __future__ import annotations

import pandas as pd

from echorl_verl.report.runlog import ReportError, RunLog
from echorl_verl.report.suite import BY_SOURCE

CORE = r"^val-core/(?P<source>.+)/(?P<var>[^/]+)/"
MEAN = CORE + r"mean@(?P<n>\d+)$"
BEST = CORE + r"best@(?P<n>\d+)/mean$"


def _scores(run: RunLog, pattern: str) -> pd.DataFrame:
    """Rows of `run.records` whose metric matches `pattern`: columns step, source, n, value, metric.

    Per (step, source) the largest n wins (verl's own choice of the core metric). A NaN (logged null)
    value is a ReportError naming the file, line and metric."""
    rec = run.records
    parts = rec["metric"].str.extract(pattern)[["source", "n"]]
    keep = parts["source"].notna()
    rows = rec[keep].join(parts[keep].astype({"n": float}))
    bad = rows[rows["value"].isna()]
    if not bad.empty:
        step, metric = int(bad["step"].iloc[0]), bad["metric"].iloc[0]
        raise ReportError(
            f"{run.where(step, metric)}: {metric} at step {step} is null (NaN logged): the validation produced "
            "no score for that benchmark; rerun its evaluation"
        )
    rows = rows.sort_values(["step", "source", "n"]).drop_duplicates(["step", "source"], keep="last")
    return rows.astype({"n": "int64"})[["step", "source", "n", "value", "metric"]].reset_index(drop=True)


def val_scores(run: RunLog) -> pd.DataFrame:
    """The core accuracy (`mean@n`, pass@1) per validated step and data_source: step, source, n, value, metric."""
    return _scores(run, MEAN)


def require_validation(run: RunLog) -> pd.DataFrame:
    """`val_scores(run)`, or ReportError when the run logged no validation metric at all."""
    scores = val_scores(run)
    if scores.empty:
        raise ReportError(
            f"{run.path}: run {run.name!r} has no validation metrics (no 'val-core/<data_source>/<var>/mean@<n>' "
            f"in {len(run.steps)} logged step(s)). Run with trainer.test_freq>0 or trainer.val_before_train=True, "
            "or evaluate a checkpoint with recipes/eval_qwen.sh"
        )
    return scores


def wide(scores: pd.DataFrame) -> pd.DataFrame:
    """Scores as index step x column data_source (values in [0, 1]; NaN = not validated at that step)."""
    out = scores.pivot(index="step", columns="source", values="value")
    out.columns.name = None
    return out


def accuracy(run: RunLog) -> pd.DataFrame:
    """pass@1 per validated step (index) and data_source (columns); ReportError without validation."""
    return wide(require_validation(run))


def pass_at_k(run: RunLog) -> tuple[pd.DataFrame, int]:
    """(verl's pass@k estimate per validated step and data_source, k).

    k = samples per prompt (the n of the core metric); for k = 1 pass@k is pass@1. ReportError when the
    data_sources were validated with different k or the run has no validation."""
    core = require_validation(run)
    ks = sorted(core["n"].unique().tolist())
    if len(ks) > 1:
        raise ReportError(f"{run.path}: run {run.name!r} validated with different samples per prompt {ks} "
                          "(mean@n): pass@k needs one k; set actor_rollout_ref.rollout.val_kwargs.n once")
    k = int(ks[0])
    if k == 1:
        return wide(core), k
    best = _scores(run, BEST)
    best = best[best["n"] == k]
    if best.empty:
        raise ReportError(f"{run.path}: run {run.name!r} has mean@{k} but no val-core/<source>/<var>/best@{k}/mean")
    return wide(best), k


def suite_mean(acc: pd.DataFrame) -> pd.Series:
    """Per step, the mean over the suite's benchmarks (report/suite.py) a run validated, or over all its
    data_sources when none of them is in the suite (a toy run). acc: index step x column source."""
    chosen = [s for s in acc.columns if s in BY_SOURCE] or list(acc.columns)
    return acc[chosen].mean(axis=1, skipna=True)
