"""The study's statistics: per-run outcomes, t-intervals over seeds, paired differences, bands, areas.

Intervals are two-sided 95% Student-t intervals over seeds: mean +- t(0.975, n-1) * sd / sqrt(n), sd with
n-1 in the denominator; with one seed there is no interval (NaN). A paired difference takes, seed by seed,
arm minus baseline over the seeds both have, and the same interval over those differences.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import integrate, optimize, stats

from echorl_verl.report.validation import accuracy, pass_at_k, suite_mean
from echorl_verl.study.results import RunResult

LEVEL = 0.95
# (key, label, unit scale, digits): the per-run outcomes, in table order
OUTCOMES = (
    ("first_pass1", "first val acc (pass@1) %", 100, 1),
    ("final_pass1", "final val acc (pass@1) %", 100, 1),
    ("gain_pass1", "gain final - first pass@1 %", 100, 1),  # did the run learn (issue 15: above 0 over seeds)
    ("best_pass1", "best val acc (pass@1) %", 100, 1),
    ("final_passk", "final pass@k %", 100, 1),
    ("auc_pass1", "val curve area (mean pass@1) %", 100, 1),
    ("all_success", "all-success share (mean over steps) %", 100, 1),
    ("entropy", "entropy (mean over steps)", 1, 3),
    ("response_length", "response length (mean over steps)", 1, 1),
    ("step_seconds", "s / step (mean over steps)", 1, 2),
    # the cost of a step without the telemetry's extra passes (which 1 step in echo.grad_telemetry_every pays)
    ("update_seconds", "update_actor s (median, steps without telemetry)", 1, 1),
)


@dataclass(frozen=True)
class Interval:
    mean: float
    lo: float
    hi: float
    n: int


def t_interval(values) -> Interval:
    """Mean and 95% t-interval of the finite values (NaN bounds for fewer than 2)."""
    x = np.asarray([v for v in values if np.isfinite(v)], dtype=float)
    if len(x) == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0)
    mean = float(x.mean())
    if len(x) < 2:
        return Interval(mean, float("nan"), float("nan"), 1)
    half = float(stats.t.ppf(0.5 + LEVEL / 2, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x)))
    return Interval(mean, mean - half, mean + half, len(x))


def differences(arm: pd.Series, base: pd.Series) -> pd.Series:
    """arm - base, seed by seed, over the seeds (index) both have a finite value for."""
    both = pd.concat([arm, base], axis=1, keys=["arm", "base"]).dropna()
    return both["arm"] - both["base"]


def paired(arm: pd.Series, base: pd.Series) -> Interval:
    """The interval of arm - base over the seeds both have (differences)."""
    return t_interval(differences(arm, base))


POWER = 0.80


@dataclass(frozen=True)
class Detectable:
    """What n pairs per arm can resolve, given the spread of the paired differences the study measured."""
    sd: float  # sd of the paired differences, pooled over arms (variances weighted by their df)
    df: int  # the pooled sd's degrees of freedom: sum over arms of (pairs - 1)
    half_width: float  # an arm's 95% interval half-width at that sd: t(0.975, n-1) * sd / sqrt(n)
    smallest: float  # the true effect a two-sided paired t-test (5%) on n pairs finds with 80% power at that sd


def detectable(diffs: list, pairs: int) -> Detectable | None:
    """diffs: per arm, its paired differences (NaN ignored); None without an arm of 2+ pairs or with pairs < 2.

    smallest solves P(|T| > t(0.975, n-1)) = POWER for T noncentral t with n-1 df and noncentrality
    effect * sqrt(n) / sd: the exact noncentral t, by integration over the chi-square (3.26 sd at 3 pairs, 1.00 sd
    at 10)."""
    arrays = [np.asarray([v for v in d if np.isfinite(v)], dtype=float) for d in diffs]
    arrays = [a for a in arrays if len(a) >= 2]
    if not arrays or pairs < 2:
        return None
    df = sum(len(a) - 1 for a in arrays)
    sd = float(np.sqrt(sum(a.var(ddof=1) * (len(a) - 1) for a in arrays) / df))
    crit = stats.t.ppf(0.5 + LEVEL / 2, pairs - 1)

    def power(nc: float) -> float:  # E over V ~ chi2(n-1) of P(|Z + nc| > crit * sqrt(V / (n-1))); scipy's nct: NaN
        def at(v: float) -> float:
            c = crit * np.sqrt(v / (pairs - 1))
            return (stats.norm.sf(c - nc) + stats.norm.cdf(-c - nc)) * stats.chi2.pdf(v, pairs - 1)

        return integrate.quad(at, 0, np.inf)[0] - POWER

    nc = optimize.brentq(power, 0.0, 1000.0, xtol=1e-10)
    return Detectable(sd, df, float(crit * sd / np.sqrt(pairs)), float(nc * sd / np.sqrt(pairs)))


def area(curve: pd.Series) -> float:
    """Trapezoid area under a curve (index = step) divided by its step span: the curve's mean height.
    One point: its value."""
    curve = curve.dropna().sort_index()
    if len(curve) == 1:
        return float(curve.iloc[0])
    if curve.empty:
        return float("nan")
    x = curve.index.to_numpy(dtype=float)
    return float(np.trapezoid(curve.to_numpy(dtype=float), x) / (x[-1] - x[0]))


def _train_mean(result: RunResult, metric: str) -> float:
    series = result.log.series(metric)
    series = series[np.isfinite(series)]
    return float(series.mean()) if len(series) else float("nan")


def _update_seconds(result: RunResult) -> float:
    """Median timing_s/update_actor over the steps that did not measure the gradients (no actor/echo_grad_ratio)."""
    update = result.log.series("timing_s/update_actor").dropna()
    update = update[~update.index.isin(result.log.series("actor/echo_grad_ratio").dropna().index)]
    return float(update.median()) if len(update) else float("nan")


def outcomes(result: RunResult) -> dict[str, float]:
    """One run's numbers (fractions for accuracies and shares), keyed as OUTCOMES."""
    pass1 = suite_mean(accuracy(result.log))
    passk, _ = pass_at_k(result.log)
    share = result.share[np.isfinite(result.share)]
    return {
        "first_pass1": float(pass1.iloc[0]),
        "final_pass1": float(pass1.iloc[-1]),
        "gain_pass1": float(pass1.iloc[-1] - pass1.iloc[0]),
        "best_pass1": float(pass1.max()),
        "final_passk": float(suite_mean(passk).iloc[-1]),
        "auc_pass1": area(pass1),
        "all_success": float(share.mean()) if len(share) else float("nan"),
        "entropy": _train_mean(result, "actor/entropy"),
        "response_length": _train_mean(result, "response_length/mean"),
        "step_seconds": _train_mean(result, "timing_s/step"),
        "update_seconds": _update_seconds(result),
    }


# (key, label, unit scale, digits): how strong the echo term was, for the runs that had one
SIGNAL = (
    ("echo_loss", "echo loss (nats / clip token)", 1, 4),
    ("clip_token_share", "clip tokens / response tokens %", 100, 1),
    ("grad_ratio", "echo / RL gradient norm", 1, 4),
    ("grad_cos", "cos(echo grad, RL grad)", 1, 3),
    ("update_s_telemetry", "update_actor s, telemetry steps", 1, 2),
    ("update_s_other", "update_actor s, other steps", 1, 2),
)


def signal(result: RunResult) -> dict[str, float] | None:
    """One run's echo-signal numbers (means over the steps that logged them; update_actor seconds as medians,
    split by whether the step measured the gradients, i.e. logged actor/echo_grad_ratio); None without an
    echo term (no actor/echo_loss)."""
    loss = result.log.series("actor/echo_loss").dropna()
    if loss.empty:
        return None
    ratio = result.log.series("actor/echo_grad_ratio").dropna()
    update = result.log.series("timing_s/update_actor").dropna()
    measured = update.index.isin(ratio.index)
    return {
        "echo_loss": float(loss.mean()),
        "clip_token_share": _train_mean(result, "echo/clip_token_share"),
        "grad_ratio": _train_mean(result, "actor/echo_grad_ratio"),
        "grad_cos": _train_mean(result, "actor/echo_grad_cos"),
        "update_s_telemetry": float(update[measured].median()) if measured.any() else float("nan"),
        "update_s_other": _update_seconds(result),
    }


def signal_table(results: list[RunResult]) -> pd.DataFrame:
    """Index (arm, seed) of the runs with an echo term, one column per SIGNAL key."""
    rows = {(r.arm, r.seed): s for r in results if (s := signal(r)) is not None}
    index = pd.MultiIndex.from_tuples(list(rows), names=["arm", "seed"])
    return pd.DataFrame(list(rows.values()), index=index, columns=[k for k, *_ in SIGNAL])


def outcome_table(results: list[RunResult]) -> pd.DataFrame:
    """Index (arm, seed), one column per outcome key."""
    rows = {(r.arm, r.seed): outcomes(r) for r in results}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis(["arm", "seed"])


def band(curves: dict[int, pd.Series]) -> pd.DataFrame:
    """Curves of one arm (seed -> series over steps) -> index step, columns mean, lo, hi, n (over seeds)."""
    frame = pd.DataFrame(curves)
    rows = {step: t_interval(row.to_numpy()) for step, row in frame.iterrows()}
    return pd.DataFrame({k: [getattr(v, k) for v in rows.values()] for k in ("mean", "lo", "hi", "n")},
                        index=list(rows)).rename_axis("step")
