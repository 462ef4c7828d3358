"""`study report STUDY_DIR --out DIR`: report.md and PNG curves, per arm mean and 95% t-interval over seeds.

The report holds no absolute path and no time stamp, so the same runs give the same bytes: `study report`
on the compact copy (`study export`) reproduces the report made from the full study folder.
"""

from __future__ import annotations

import itertools
import os

import numpy as np
import pandas as pd

from echorl_verl import atomic
from echorl_verl.report.markdown import markdown_table
from echorl_verl.report.validation import accuracy, pass_at_k, suite_mean
from echorl_verl.study.configs import config_problems
from echorl_verl.study.results import SHARE, RunResult, load_results, trained_steps
from echorl_verl.study.spec import Study, StudyError
from echorl_verl.study.stats import (OUTCOMES, POWER, SIGNAL, band, detectable, differences, outcome_table, paired,
                                     signal_table, t_interval)
from echorl_verl.study.weight import draw_weight, weight_md, weight_rows

# (file stem, y label, y scale, curve of one run in display units)
CURVES = (
    ("val_accuracy", "validation pass@1 %", "linear", lambda r: 100 * suite_mean(accuracy(r.log))),
    ("pass_at_k", "validation pass@k %", "linear", lambda r: 100 * suite_mean(pass_at_k(r.log)[0])),
    ("all_success_share", "all-success group share %", "linear", lambda r: 100 * r.share),
    ("entropy", "policy entropy (actor/entropy)", "linear", lambda r: r.log.series("actor/entropy")),
    ("response_length", "response length (response_length/mean)", "linear",
     lambda r: r.log.series("response_length/mean")),
    ("step_seconds", "seconds per step (timing_s/step)", "linear", lambda r: r.log.series("timing_s/step")),
    # the echo term's weight over training, on the telemetry steps (echo arms only)
    ("echo_grad_ratio", "echo / RL gradient norm (actor/echo_grad_ratio)", "log",
     lambda r: r.log.series("actor/echo_grad_ratio").dropna()),
    ("echo_grad_cos", "cos(echo grad, RL grad) (actor/echo_grad_cos)", "linear",
     lambda r: r.log.series("actor/echo_grad_cos").dropna()),
)


def _cell(iv, scale: float, digits: int, signed: bool = False) -> str:
    if iv.n == 0:
        return "-"
    f = f"{{:{'+' if signed else ''}.{digits}f}}"
    text = f.format(iv.mean * scale)
    return text + (f" [{f.format(iv.lo * scale)}, {f.format(iv.hi * scale)}]" if iv.n > 1 else " (n=1)")


def intervals_md(table: pd.DataFrame, arms: list[str], columns) -> str:
    """One row per arm (an arm without runs: dashes), one mean [95% CI] cell per (key, label, scale, digits)."""
    rows = []
    for arm in arms:
        sub = table.xs(arm, level="arm") if arm in table.index.get_level_values("arm") else table.iloc[:0]
        rows.append([arm, str(len(sub))] + [_cell(t_interval(sub[k]), s, d) for k, _, s, d in columns])
    return markdown_table(pd.DataFrame(rows, columns=["arm", "seeds"] + [label for _, label, _, _ in columns]))


def paired_md(table: pd.DataFrame, arms: list[str], baseline: str) -> str:
    base = table.xs(baseline, level="arm")
    rows = []
    for arm in arms:
        if arm == baseline or arm not in table.index.get_level_values("arm"):
            continue
        sub = table.xs(arm, level="arm")
        cells = [paired(sub[k], base[k]) for k, _, _, _ in OUTCOMES]
        rows.append([arm, str(cells[0].n)] + [_cell(iv, s, d, signed=True)
                                              for iv, (_, _, s, d) in zip(cells, OUTCOMES, strict=True)])
    header = ["arm", "pairs"] + [f"Δ {label}" for _, label, _, _ in OUTCOMES]
    return markdown_table(pd.DataFrame(rows, columns=header))


# the outcomes whose paired Δ the design is read by, and first val: the A/A row (the evaluation's noise alone)
DETECT = ("first_pass1", "final_pass1", "final_passk", "auc_pass1")


def detectable_md(table: pd.DataFrame, arms: list[str], baseline: str, pairs: int) -> str | None:
    """Per outcome: the paired Δs' sd pooled over the non-baseline arms, and what `pairs` pairs resolve at it."""
    base = table.xs(baseline, level="arm")
    others = [a for a in arms if a != baseline and a in table.index.get_level_values("arm")]
    rows = []
    for key, label, scale, digits in OUTCOMES:
        if key not in DETECT:
            continue
        d = detectable([differences(table.xs(arm, level="arm")[key], base[key]) for arm in others], pairs)
        if d is None:
            continue
        f = f"{{:.{digits}f}}"
        rows.append([f"Δ {label}" + (" (A/A)" if key == "first_pass1" else ""), f.format(d.sd * scale), str(d.df),
                     f"±{f.format(d.half_width * scale)}", f.format(d.smallest * scale)])
    if not rows:
        return None
    header = ["outcome", "sd of paired Δ (pooled)", "df", f"95% CI half-width, {pairs} pairs",
              f"smallest effect found with {POWER:.0%} power"]
    return markdown_table(pd.DataFrame(rows, columns=header))


def identical_seeds(results: list[RunResult]) -> list[str]:
    """Warnings for two seeds of an arm that logged the very same training scores (is SEED mapped?)."""
    out = []
    by_arm = {}
    for r in results:
        by_arm.setdefault(r.arm, []).append(r)
    for arm, runs in by_arm.items():
        for a, b in itertools.combinations(runs, 2):
            sa, sb = a.log.series("critic/score/mean"), b.log.series("critic/score/mean")
            if len(sa) and sa.equals(sb):
                out.append(f"{arm}: seed{a.seed} and seed{b.seed} logged identical critic/score/mean at every step: "
                           "do the seeds reach the run (the recipe maps SEED to data, rollout and actor seeds)?")
    return out


def draw(results: list[RunResult], arms: list[str], baseline: str) -> dict:
    """{file stem: matplotlib figure} for each curve some run has (mean line, band = 95% CI over seeds)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    figures = {}
    for stem, ylabel, yscale, curve in CURVES:
        fig, ax = plt.subplots(figsize=(6.4, 4))
        drawn = False
        for i, arm in enumerate(arms):
            curves = {r.seed: curve(r) for r in results if r.arm == arm}
            curves = {s: c[np.isfinite(c)] for s, c in curves.items() if len(c)}
            if not curves:
                continue
            b = band(curves)
            style = {"color": palette[i % len(palette)], "linestyle": "--" if arm == baseline else "-"}
            ax.plot(b.index, b["mean"], marker="o" if len(b) < 30 else None, markersize=3,
                    label=f"{arm} (n={max(b['n'])})", **style)
            ok = b["lo"].notna()
            ax.fill_between(b.index[ok], b["lo"][ok], b["hi"][ok], color=style["color"], alpha=0.2, linewidth=0)
            drawn = True
        if not drawn:
            plt.close(fig)
            continue
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are integers
        ax.set_xlabel("step")
        ax.set_yscale(yscale)
        ax.set_ylabel(ylabel)
        ax.set_title(stem.replace("_", " "))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        figures[stem] = fig
    return figures


def _setup(study: Study, results: list[RunResult], explained: dict[str, list[str]]) -> list[str]:
    ks = sorted({pass_at_k(r.log)[1] for r in results})
    steps = sorted({max(trained_steps(r), default=0) for r in results})
    val_steps = sorted({tuple(accuracy(r.log).index) for r in results})
    env = ", ".join(f"`{k}={v}`" for k, v in study.env.items()) or "none"
    overrides = ", ".join(f"`{o}`" for o in study.overrides) or "none"
    lines = [f"- baseline arm: `{study.baseline}`; seeds: {', '.join(map(str, study.seeds))}; training steps: "
             f"{', '.join(map(str, steps))}; validation at steps {', '.join(str(list(v)) for v in val_steps)}; "
             f"k (validation samples per prompt): {', '.join(map(str, ks))}",
             f"- shared environment: {env}; shared overrides: {overrides}", ""]
    rows = []
    for arm in study.arms.values():
        runs = [r for r in results if r.arm == arm.name]
        sources = sorted({r.share_source for r in runs}) or ["-"]
        diff = "(the baseline)" if arm.name == study.baseline else ", ".join(
            f"`{k}`" for k in explained.get(arm.name, [])) or "none"
        rows.append([arm.name, f"`{os.path.basename(arm.recipe)}`", " ".join(f"`{o}`" for o in arm.overrides) or "-",
                     " ".join(f"`{k}={v}`" for k, v in arm.env.items()) or "-", str(len(runs)), diff,
                     ", ".join(f"`{s}`" if s == SHARE else s for s in sources)])
    header = ["arm", "recipe", "overrides", "env", "runs", "config differs from baseline at", "all-success share from"]
    return lines + [markdown_table(pd.DataFrame(rows, columns=header))]


DEFINITIONS = """\
- Cells: mean over seeds [95% Student-t interval]; `(n=1)`: one seed, no interval. Δ: arm minus baseline
  seed by seed (paired), over the seeds both have.
- pass@1: verl's `val-core/<source>/<var>/mean@k` (mean over prompts of the mean over k samples); pass@k:
  verl's `val-core/<source>/<var>/best@k/mean`, a bootstrap estimate (best of k draws with replacement from
  the k samples, 1000 rounds; `verl/trainer/ppo/metric_utils.py`), which lies below the unbiased pass@k.
  With several data sources, the mean over the report suite's (all sources for a toy run).
- first val acc: the first validation (step 0 with `trainer.val_before_train=True`). Where every run starts
  from the same model, its spread over runs is the evaluation's own sampling noise, and its paired Δ is an A/A
  check: a Δ elsewhere no larger than this one is not an effect. gain: final minus first pass@1 of each run (an
  interval above 0: the arm learned measurably over the run).
- best val acc picks the step on the validation set itself: optimistic. Curve area: trapezoid area under the
  pass@1 curve divided by its step span (the curve's mean height).
- all-success share: groups whose every rollout succeeded, mean over training steps; `echo/all_success_group_share`
  where the run logged it, else from verl's rollout dump (score >= echo.success_threshold).
- entropy, response length, s/step: means over all training steps (s/step includes the first step's warm-up).
- update_actor s: the median of `timing_s/update_actor` over the steps that did not measure the echo gradients
  (a telemetry step pays two extra backward passes): what a step's update costs. Compare it within one session.
- echo signal: `actor/echo_loss` (the clip tokens' mean NLL, before the coefficient), `echo/clip_token_share`,
  and with `echo.grad_telemetry_every` the norm of the echo term's gradient (coef x its NLL's) over the
  policy-gradient term's, and their cosine (`actor/echo_grad_ratio`, `actor/echo_grad_cos`)."""


def build_report(study: Study, allow_incomplete: bool = False) -> tuple[str, dict]:
    """(report.md text, {stem: figure}) for the study's runs (StudyError on incomplete runs unless allowed)."""
    results, problems = load_results(study, allow_incomplete)
    if not results:
        raise StudyError(f"{study.study_dir}: no complete run to report on:\n  " + "\n  ".join(problems))
    config_issues, explained = config_problems(study, results)
    arms = list(study.arms)
    table = outcome_table(results)
    warnings = ([f"incomplete run left out: {p}" for p in problems] + [f"config: {p}" for p in config_issues]
                + identical_seeds(results))
    lines = [f"# Study `{study.name}`: {len(arms)} arms x {len(study.seeds)} seeds", ""]
    if warnings:
        lines += ["> **WARNING: read these before the numbers.**", ">"] + [f"> - {w}" for w in warnings] + [""]
    lines += ["## Setup", "", *_setup(study, results, explained), "",
              "## Outcomes: mean [95% CI] over seeds", "", intervals_md(table, arms, OUTCOMES), ""]
    if study.baseline in table.index.get_level_values("arm"):
        lines += [f"## Paired difference to `{study.baseline}` (same seed): mean [95% CI]", "",
                  paired_md(table, arms, study.baseline), ""]
        detect = detectable_md(table, arms, study.baseline, len(study.seeds))
        if detect is not None:
            lines += ["## What this design can detect", "", detect, "",
                      f"The sd of the paired differences, pooled over the arms other than `{study.baseline}` (each "
                      f"arm's variance weighted by its pairs - 1 = df), and what {len(study.seeds)} pairs per arm (the "
                      "seeds) resolve if that sd is the true one: the half-width of an arm's 95% interval, and the "
                      "smallest true effect a two-sided paired t-test at 5% finds with "
                      f"{POWER:.0%} power (noncentral t). A smaller effect can pass unseen. The pooled sd is itself an "
                      "estimate from few pairs, and the arms share the baseline's runs.", ""]
    else:
        lines += [f"## Paired difference: no complete run of the baseline `{study.baseline}`", ""]
    signals = signal_table(results)
    if len(signals):
        echo_arms = [a for a in arms if a in signals.index.get_level_values("arm")]  # the baseline has no echo term
        lines += ["## The echo signal: mean [95% CI] over seeds", "", intervals_md(signals, echo_arms, SIGNAL), "",
                  "Per run, the mean over its steps (the gradient columns over the steps that measured them: "
                  "`echo.grad_telemetry_every`); the update_actor columns are medians, on steps that measured the "
                  "gradients and on the others (the telemetry's cost).", ""]
    rows = weight_rows(results, table, signals, arms, study.baseline)
    if rows:
        lines += ["## The effect against what the echo term weighs", "", weight_md(rows, study.baseline), "",
                  "Per echo arm: the measured echo / RL gradient-norm ratio and cosine (mean [95% CI] over seeds of "
                  "each run's mean over its telemetry steps; and the median of all the arm's telemetry steps, which "
                  "one step with a near-zero policy gradient cannot drive) beside the paired Δ to the baseline. "
                  "A Δ no larger than the A/A column's is not an effect. In the plot the horizontal bar spans the "
                  "runs' lowest and highest ratio, the vertical bar is the paired Δ's 95% CI.", ""]
    figures = draw(results, arms, study.baseline)
    weight_figure = draw_weight(rows, study.baseline, arms)
    if weight_figure is not None:
        lines += ["![effect against the echo term's weight](effect_vs_ratio.png)", ""]
    lines += ["## Curves (mean over seeds; band: 95% CI)", ""] + [f"![{s}]({s}.png)" for s in figures]
    if weight_figure is not None:
        figures["effect_vs_ratio"] = weight_figure
    lines += ["", "## Definitions", "", DEFINITIONS, "", "## Per run", "",
              markdown_table(_per_run(table)), ""]
    return "\n".join(lines), figures


def _per_run(table: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (arm, seed), row in table.iterrows():
        rows.append([arm, str(seed)] + ["-" if not np.isfinite(row[k]) else f"{row[k] * s:.{d}f}"
                                        for k, _, s, d in OUTCOMES])
    return pd.DataFrame(rows, columns=["arm", "seed"] + [label for _, label, _, _ in OUTCOMES])


def _write_text(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)


def write_report(study: Study, out_dir: str, allow_incomplete: bool = False) -> list[str]:
    """Write out_dir/report.md and the PNGs all-or-nothing; returns their paths."""
    import matplotlib.pyplot as plt

    text, figures = build_report(study, allow_incomplete)
    try:
        writers = {os.path.join(out_dir, "report.md"): lambda tmp: _write_text(tmp, text)}
        for stem, fig in figures.items():
            writers[os.path.join(out_dir, f"{stem}.png")] = lambda tmp, f=fig: f.savefig(
                tmp, format="png", dpi=110, metadata={"Software": None})
        atomic.write_all(writers)
        return list(writers)
    finally:
        for fig in figures.values():
            plt.close(fig)
