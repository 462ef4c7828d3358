"""`report plot`: PNG training curves, echo and baseline runs of an algorithm on the same axes.

Colour = algorithm (name prefix), solid = echo, dashed = baseline. Headless: the Agg backend.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pandas as pd

from echorl_verl import atomic
from echorl_verl.report.runlog import RunLog
from echorl_verl.report.table import PAIR_NAME
from echorl_verl.report.validation import accuracy, require_validation, suite_mean

# (file stem, metric or None for validation accuracy, y label)
CURVES = (
    ("val_accuracy", None, "validation accuracy % (mean over benchmarks)"),
    ("all_success_share", "echo/all_success_group_share", "all-success group share"),
    ("echo_loss", "actor/echo_loss", "echo loss (actor/echo_loss)"),
    ("clip_token_share", "echo/clip_token_share", "EchoClip token share"),
    ("train_score", "critic/score/mean", "train score (critic/score/mean)"),
    ("entropy", "actor/entropy", "policy entropy (actor/entropy)"),
    ("response_length", "response_length/mean", "response length (tokens)"),
)
OVERVIEW = ("val_accuracy", "all_success_share", "echo_loss", "clip_token_share")


def _curve(run: RunLog, metric: str | None) -> pd.Series:
    """Finite values of one metric over the steps; metric None: validation accuracy in % (suite mean)."""
    series = 100 * suite_mean(accuracy(run)) if metric is None else run.series(metric)
    return series[np.isfinite(series)]


def _style(runs: list[RunLog]) -> dict[str, dict]:
    """Per run name: matplotlib kwargs (same colour per algorithm, dashed baseline)."""
    import matplotlib.pyplot as plt

    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    families: dict[str, int] = {}
    styles = {}
    for run in runs:
        m = PAIR_NAME.match(run.name)
        family = f"{m['pre']}{m['algo']}{m['rest']}" if m else run.name
        colour = palette[families.setdefault(family, len(families)) % len(palette)]
        styles[run.name] = {"color": colour, "linestyle": "--" if m and m["kind"] == "baseline" else "-",
                            "label": run.name}
    return styles


def _draw(ax, runs, styles, metric, ylabel) -> bool:
    """Plot one metric for every run on `ax`; False when no run logged it."""
    drawn = False
    for run in runs:
        curve = _curve(run, metric)
        if len(curve):
            ax.plot(curve.index, curve.to_numpy(), marker="o" if len(curve) < 30 else None, markersize=3,
                    **styles[run.name])
            drawn = True
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are integers
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if drawn:
        ax.legend(fontsize=7)
    return drawn


def plot_runs(runs: list[RunLog], out_dir: str) -> list[str]:
    """Write <out_dir>/<curve>.png for each curve some run logged, plus overview.png (2x2); return paths.

    Raises ReportError (before writing anything) when a run has no validation metrics. Curves no run
    logged (e.g. echo/* with only baselines) are skipped with a note on stderr. All PNGs are rendered
    to temporary files first and renamed into place together.
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    for run in runs:
        require_validation(run)
    styles = _style(runs)
    figures = {}
    try:
        for stem, metric, ylabel in CURVES:
            fig, ax = plt.subplots(figsize=(6, 4))
            if _draw(ax, runs, styles, metric, ylabel):
                ax.set_title(stem.replace("_", " "))
                figures[stem] = fig
            else:
                plt.close(fig)
                print(f"[report plot] skipped {stem}.png: no run logs {metric}", file=sys.stderr)
        fig, axes = plt.subplots(2, 2, figsize=(11, 8))
        for ax, stem in zip(axes.flat, OVERVIEW, strict=True):
            _, metric, ylabel = next(c for c in CURVES if c[0] == stem)
            if not _draw(ax, runs, styles, metric, ylabel):
                ax.text(0.5, 0.5, f"no run logs\n{metric}", ha="center", va="center", transform=ax.transAxes)
        fig.tight_layout()
        figures["overview"] = fig
        paths = {os.path.join(out_dir, f"{stem}.png"): fig for stem, fig in figures.items()}
        atomic.write_all({p: (lambda tmp, f=f: f.savefig(tmp, format="png", dpi=120)) for p, f in paths.items()})
        return list(paths)
    finally:
        for fig in figures.values():
            plt.close(fig)
