"""The effect against what the echo term weighs: the table and plot a user choosing `echo.coef` wants.

`echo.coef` alone says little: the same coefficient weighs 1/10,000 of the policy gradient on a model sure of
its successes and far more on one that is not. What a run can measure is the weight itself, the echo term's
gradient norm over the policy gradient's (`actor/echo_grad_ratio`, logged every `echo.grad_telemetry_every`
steps). So each echo arm is one point: x its measured ratio, y its paired difference to the baseline (same
seed) in final pass@1 and final pass@k. A user reads off the ratio where the term starts to matter and sets
their coefficient so their own run's telemetry lands there.

x: mean over seeds of each run's mean ratio over its telemetry steps; the horizontal bar spans the lowest and
highest run (a t-interval of a ratio near 0 reaches below 0, which a log axis cannot draw). y: mean paired Δ
with its 95% t-interval. Arms without telemetry are in the table with dashes and not in the plot. The table
also gives the median over all the arm's telemetry steps (every seed): one step can be off by orders of
magnitude (a batch of degenerate groups has a near-zero policy gradient) and drive a mean; the median is what
the rule of thumb in docs/study.md, and `report summary` on one run, place a coefficient by.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from echorl_verl.report.markdown import markdown_table
from echorl_verl.study.results import RunResult
from echorl_verl.study.stats import Interval, paired, t_interval

# (outcome key, label): the paired differences plotted against the ratio
EFFECTS = (("final_pass1", "final pass@1"), ("final_passk", "final pass@k"))


def weight_rows(results: list[RunResult], outcomes: pd.DataFrame, signals: pd.DataFrame,
                arms: list[str], baseline: str) -> list[dict]:
    """Per echo arm (in study order, the baseline and arms without an echo term left out): its coefficient(s),
    the ratio's and cosine's intervals over seeds, the ratio's lowest and highest run, the median ratio over
    all its telemetry steps with their count ("ratio_median": (median, n) or None), and the paired Δ
    intervals (fractions) of EFFECTS and of the first validation (the A/A check)."""
    if baseline not in outcomes.index.get_level_values("arm"):
        return []
    base = outcomes.xs(baseline, level="arm")
    rows = []
    for arm in arms:
        if arm == baseline or arm not in signals.index.get_level_values("arm"):
            continue
        sig, out = signals.xs(arm, level="arm"), outcomes.xs(arm, level="arm")
        ratios = sig["grad_ratio"][np.isfinite(sig["grad_ratio"])]
        steps = [v for r in results if r.arm == arm for v in r.log.series("actor/echo_grad_ratio") if np.isfinite(v)]
        coefs = sorted({float(r.config["echo"]["coef"]) for r in results
                        if r.arm == arm and (r.config.get("echo") or {}).get("coef") is not None})
        rows.append({"arm": arm, "coef": coefs, "ratio": t_interval(sig["grad_ratio"]),
                     "ratio_range": (float(ratios.min()), float(ratios.max())) if len(ratios) else None,
                     "ratio_median": (float(np.median(steps)), len(steps)) if steps else None,
                     "cos": t_interval(sig["grad_cos"]), "aa": paired(out["first_pass1"], base["first_pass1"]),
                     **{key: paired(out[key], base[key]) for key, _ in EFFECTS}})
    return rows


def _iv(iv: Interval, scale: float, fmt: str) -> str:
    if iv.n == 0:
        return "-"
    text = format(iv.mean * scale, fmt)
    return text + (f" [{format(iv.lo * scale, fmt)}, {format(iv.hi * scale, fmt)}]" if iv.n > 1 else " (n=1)")


def weight_md(rows: list[dict], baseline: str) -> str:
    cells = [[r["arm"], ", ".join(f"{c:g}" for c in r["coef"]) or "-", _iv(r["ratio"], 1, ".2g"),
              f"{r['ratio_median'][0]:.2g} ({r['ratio_median'][1]})" if r["ratio_median"] else "-",
              _iv(r["cos"], 1, ".2f"), _iv(r["aa"], 100, "+.1f")] + [_iv(r[k], 100, "+.1f") for k, _ in EFFECTS]
             for r in rows]
    header = (["arm", "echo.coef", "echo / RL gradient norm", "median over steps (steps)", "cos(echo grad, RL grad)",
               "Δ first val (A/A) %"]
              + [f"Δ {label} % vs `{baseline}`" for _, label in EFFECTS])
    return markdown_table(pd.DataFrame(cells, columns=header))


def draw_weight(rows: list[dict], baseline: str, arms: list[str]):
    """The figure (one panel per EFFECTS entry, log x; each arm in its colour of the curves, by its place in
    `arms`) or None when no arm measured its ratio."""
    rows = [r for r in rows if r["ratio_range"] is not None and r["ratio"].mean > 0]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, axes = plt.subplots(1, len(EFFECTS), figsize=(9.6, 4), sharey=True)
    for ax, (key, label) in zip(axes, EFFECTS, strict=True):
        ax.axhline(0.0, color="gray", linewidth=1)
        for r in rows:
            x, (lo, hi), iv = r["ratio"].mean, r["ratio_range"], r[key]
            yerr = [[100 * (iv.mean - iv.lo)], [100 * (iv.hi - iv.mean)]] if iv.n > 1 else None
            ax.errorbar([x], [100 * iv.mean], yerr=yerr, xerr=[[x - lo], [hi - x]], fmt="o", capsize=3,
                        color=palette[arms.index(r["arm"]) % len(palette)], label=f"{r['arm']} (n={iv.n})")
        ax.set_xscale("log")
        ax.set_xlabel("echo / RL gradient-norm ratio (actor/echo_grad_ratio)")
        ax.set_title(f"Δ {label} vs {baseline}, same seed")
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("paired Δ, points (95% CI)")
    axes[-1].legend(fontsize=7)
    fig.tight_layout()
    return fig
