"""`report summary`: a short human summary of one run (the CPU demo prints it at its end)."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from echorl_verl.report.runlog import load_run
from echorl_verl.report.validation import val_scores

# (key in the summary dict, logged metric). Echo ones exist only when echo.enable=true.
ECHO_METRICS = (
    ("all_success_group_share", "echo/all_success_group_share"),
    ("all_fail_group_share", "echo/all_fail_group_share"),
    ("clip_token_share", "echo/clip_token_share"),
    ("clip_rollouts", "echo/clip_rollouts"),
    ("echo_loss", "actor/echo_loss"),
    # echo.grad_telemetry_every=N: what the echo term weighs against the RL gradient (echorl_verl/workers.py)
    ("grad_ratio", "actor/echo_grad_ratio"),
    ("grad_cos", "actor/echo_grad_cos"),
)
TRAIN_METRICS = (
    ("score", "critic/score/mean"),
    ("entropy", "actor/entropy"),
    ("response_length", "response_length/mean"),
    ("step_seconds", "timing_s/step"),
)


def _last_mean(series: pd.Series) -> dict | None:
    finite = series[np.isfinite(series)]
    if finite.empty:
        return None
    return {"last": float(finite.iloc[-1]), "mean": float(finite.mean()), "median": float(finite.median()),
            "n": len(finite)}


def summarize(path: str) -> dict:
    """Numbers of one run's metrics JSONL (a file, or a run folder: every attempt).

    Returns {"name", "path" (absolute), "steps": [logged steps], "train_steps": int (steps with
    timing_s/step), "echo": {key: {"last","mean","median","n"}} (empty for a baseline), "train": {key: {...}},
    "validation": {data_source: {"first": [step, acc], "last": [step, acc], "metric": name}}}.
    Raises ReportError for a missing, empty or corrupt file; a run without validation gives {}.
    """
    run = load_run(path)
    echo = {k: s for k, m in ECHO_METRICS if (s := _last_mean(run.series(m))) is not None}
    train = {k: s for k, m in TRAIN_METRICS if (s := _last_mean(run.series(m))) is not None}
    ends = val_scores(run).groupby("source", sort=False).agg(["first", "last"])  # rows are step-sorted
    validation = {source: {"first": [int(e[("step", "first")]), float(e[("value", "first")])],
                           "last": [int(e[("step", "last")]), float(e[("value", "last")])],
                           "metric": e[("metric", "first")]}
                  for source, e in ends.iterrows()}
    return {
        "name": run.name,
        "path": os.path.abspath(run.path),
        "steps": run.steps,
        "train_steps": len(run.series("timing_s/step")),
        "echo": echo,
        "train": train,
        "validation": validation,
    }


def _fmt(stat: dict | None, scale: float = 1.0, digits: int = 3) -> str:
    if stat is None:
        return "n/a"
    return f"last {stat['last'] * scale:.{digits}f}, mean {stat['mean'] * scale:.{digits}f}"


def _telemetry_line(echo: dict) -> str:
    """What echo.coef weighs: |coef * grad L_clip| / |grad L_RL|, measured on the telemetry steps. The median
    places the coefficient (docs/study.md, "Rule of thumb"): one step can be off by orders of magnitude (a step
    of all-success groups has a near-zero policy gradient), and such a step drives the mean."""
    ratio = echo.get("grad_ratio")
    if ratio is None:
        return "  echo/RL gradient-norm ratio: not measured (echo.grad_telemetry_every=N measures it every N steps)"
    cos = echo.get("grad_cos")
    return (f"  echo/RL gradient-norm ratio: median {ratio['median']:.3g} over {ratio['n']} telemetry step(s)"
            f" (last {ratio['last']:.3g}, mean {ratio['mean']:.3g})"
            + (f"; cosine mean {cos['mean']:.2f}" if cos else "")
            + "\n    it is linear in echo.coef: for a ratio r, set echo.coef = (this run's coef) * r / median")


def format_summary(summary: dict) -> str:
    """About 10-15 lines of text from `summarize`'s dict."""
    steps, echo, train = summary["steps"], summary["echo"], summary["train"]
    lines = [
        f"run {summary['name']}: {summary['train_steps']} training step(s), steps {steps[0]}..{steps[-1]} logged",
        f"  train score (critic/score/mean): {_fmt(train.get('score'))}",
        f"  entropy: {_fmt(train.get('entropy'))}; response length: {_fmt(train.get('response_length'), digits=1)}"
        + (f"; {train['step_seconds']['mean']:.1f} s/step" if "step_seconds" in train else ""),
    ]
    if echo:
        lines += [
            f"  all-success group share: {_fmt(echo.get('all_success_group_share'))}"
            f" (all-fail: {_fmt(echo.get('all_fail_group_share'))})",
            f"  EchoClip token share: {_fmt(echo.get('clip_token_share'))};"
            f" clip rollouts/step: {_fmt(echo.get('clip_rollouts'), digits=1)}",
            f"  echo loss (actor/echo_loss): {_fmt(echo.get('echo_loss'), digits=4)}",
        ]
        lines.append(_telemetry_line(echo))
    else:
        lines.append("  echo: no echo/* metrics (a baseline run, or echo.enable=false)")
    val = summary["validation"]
    if val:
        lines.append("  validation accuracy % (first -> last, @step):")
        items = [f"{src} {v['first'][1] * 100:.1f}@{v['first'][0]} -> {v['last'][1] * 100:.1f}@{v['last'][0]}"
                 for src, v in val.items()]
        for i in range(0, len(items), 3):  # three per line keeps a 9-benchmark suite to 3 lines
            lines.append("    " + "   ".join(items[i:i + 3]))
    else:
        lines.append("  validation: none logged (no val-core/* metrics; trainer.test_freq / val_before_train?)")
    lines.append(f"  metrics file: {summary['path']}")
    return "\n".join(lines)
