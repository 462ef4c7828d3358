"""`report table`: the paper-style accuracy table, one row per run, a delta row per algorithm pair.

Values are accuracies in percent. A benchmark a run did not validate is `-` and is left out of that
run's averages (a footnote says which); it is never counted as 0.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pandas as pd

from echorl_verl.report.markdown import markdown_table
from echorl_verl.report.runlog import ReportError, RunLog
from echorl_verl.report.suite import BY_SOURCE, GROUPS, SUITE, group_sources
from echorl_verl.report.validation import require_validation, suite_mean, wide

ALGO_ORDER = ("grpo", "drgrpo", "dapo", "gspo")
# <algo>_echo_<rest> vs <algo>_baseline_<rest>; eval_ prefix from recipes/eval_qwen.sh
PAIR_NAME = re.compile(r"^(?P<pre>(?:eval_)?)(?P<algo>[A-Za-z0-9.\-]+)_(?P<kind>echo|baseline)(?P<rest>(?:_.*)?)$")


@dataclass
class Table:
    """values: index row label x columns (data_sources in suite order, extras, then "avg:ID", "avg:OOD"),
    accuracies in [0, 1], NaN = not validated (or, for an average delta, not comparable);
    steps: row label -> reported step (Int64, NA on delta rows); deltas: labels of the delta rows."""

    values: pd.DataFrame
    steps: pd.Series
    deltas: list[str]
    extras: list[str]  # data_sources outside the suite, shown after the suite columns
    footnotes: list[str]

    @property
    def rows(self) -> list[str]:
        return self.values.index.tolist()


def select_step(run: RunLog, acc: pd.DataFrame, how: str) -> int:
    """The validation step to report: "last", "best" (highest mean accuracy, earliest on ties) or a number."""
    if how == "last":
        return int(acc.index.max())
    if how == "best":
        return int(suite_mean(acc).idxmax())
    try:
        step = int(how)
    except ValueError:
        raise ReportError(f"--step {how!r}: use last, best or a step number") from None
    if step not in acc.index:
        raise ReportError(f"{run.path}: run {run.name!r} has no validation at step {step}; "
                          f"validated steps: {acc.index.tolist()}. Pick one of them with --step")
    return step


def covers(row: pd.Series, group: str) -> tuple[str, ...]:
    """The group's benchmarks `row` has a value for."""
    return tuple(s for s in group_sources(group) if pd.notna(row.get(s)))


def with_averages(values: pd.DataFrame) -> pd.DataFrame:
    """Add "avg:<group>" columns: the mean over the group's benchmarks each row has (NaN if none)."""
    out = values.copy()
    for group in GROUPS:
        out[f"avg:{group}"] = values.reindex(columns=group_sources(group)).mean(axis=1, skipna=True)
    return out


def delta_row(echo: pd.Series, base: pd.Series) -> pd.Series:
    """echo - baseline per column; an average only when both cover the same benchmarks."""
    delta = echo - base
    for group in GROUPS:
        if covers(echo, group) != covers(base, group):
            delta[f"avg:{group}"] = float("nan")
    return delta


def _order(names: list[str]) -> list[tuple[str, tuple[str, str] | None]]:
    """[(label, None) for a run | (delta label, (echo run, baseline run))]: paired runs grouped per algorithm
    (baseline, echo, delta), paper order first; unpaired runs after."""
    keyed, others = {}, []
    for name in names:
        m = PAIR_NAME.match(name)
        if m is None:
            others.append(name)
        else:
            keyed.setdefault((m["pre"], m["algo"], m["rest"]), {})[m["kind"]] = name
    rank = {a: i for i, a in enumerate(ALGO_ORDER)}
    out = []
    for pre, algo, rest in sorted(keyed, key=lambda k: (rank.get(k[1].lower(), len(rank)), k[1], k[0], k[2])):
        pair = keyed[(pre, algo, rest)]
        out += [(pair[k], None) for k in ("baseline", "echo") if k in pair]
        if len(pair) == 2:
            out.append((f"Δ {pre}{algo}{rest} (echo − baseline)", (pair["echo"], pair["baseline"])))
    return out + [(n, None) for n in others]


def _footnotes(values: pd.DataFrame, deltas: list[str], metrics: set[str], how: str, extras: list[str]) -> list[str]:
    kinds = sorted({re.sub(r"^val-core/.+/([^/]+/mean@\d+)$", r"\1", m) for m in metrics})
    notes = [f"Accuracy in % from verl's `val-core/<data_source>/{' | '.join(kinds)}` (mean over prompts "
             "of the mean over samples); AIME24/AIME25/AMC23 rows are repeated 32x, so one sample per row is "
             f"avg@32. Step: the run's {'last' if how == 'last' else 'best' if how == 'best' else 'chosen'} "
             "validation step."]
    if how == "best":
        notes.append("--step best picks, per run, the validation step with the highest mean accuracy over its "
                     "suite benchmarks, chosen on the test sets themselves: optimistic, not a held-out result.")
    by_missing: dict[tuple[str, ...], list[str]] = {}  # one footnote per set of missing benchmarks
    for name, row in values.drop(index=deltas).iterrows():
        missing = tuple(s for s in BY_SOURCE if pd.isna(row.get(s)))
        if missing:
            by_missing.setdefault(missing, []).append(name)
    for missing, names in by_missing.items():
        cover = ", ".join(f"{g} avg over {len([s for s in group_sources(g) if s not in missing])}/"
                          f"{len(group_sources(g))}" for g in GROUPS)
        notes.append(f"`-` = not validated: {', '.join(names)} {'has' if len(names) == 1 else 'have'} no "
                     f"{', '.join(BY_SOURCE[s].label for s in missing)}; {cover} "
                     "(missing ones are left out, not counted as 0).")
    for name in deltas:
        if values.loc[name, [f"avg:{g}" for g in GROUPS]].isna().any():
            notes.append(f"{name}: an average delta is `-` where the two runs' averages cover different "
                         "benchmarks (or none).")
    if extras:
        notes.append(f"Columns {', '.join(extras)}: outside the paper's suite, in no average.")
    return notes


def build_table(runs: list[RunLog], how: str = "last") -> Table:
    """Rows for `runs` (ReportError for a run without validation or a duplicate name) plus footnotes."""
    names = [r.name for r in runs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ReportError(f"two runs are named {dupes}: label them NAME=PATH on the command line")
    plain, steps, metrics = {}, {}, set()
    for run in runs:
        scores = require_validation(run)
        steps[run.name] = select_step(run, wide(scores), how)
        at_step = scores[scores["step"] == steps[run.name]]
        plain[run.name] = at_step.set_index("source")["value"]
        metrics |= set(at_step["metric"])
    extras = sorted({s for v in plain.values() for s in v.index if s not in BY_SOURCE})
    columns = [b.source for b in SUITE] + extras
    table = with_averages(pd.DataFrame(plain).T.reindex(columns=columns))
    rows, deltas = {}, []
    for label, pair in _order(names):
        rows[label] = table.loc[label] if pair is None else delta_row(table.loc[pair[0]], table.loc[pair[1]])
        if pair is not None:
            deltas.append(label)
    values = pd.DataFrame(rows).T[table.columns].astype(float)
    step_col = pd.Series({label: steps.get(label) for label in values.index}, dtype="Int64")
    return Table(values, step_col, deltas, extras, _footnotes(values, deltas, metrics, how, extras))


def _columns(table: Table) -> list[tuple[str, str]]:
    """[(header, key)] with key a data_source or 'avg:ID' / 'avg:OOD', in the table's display order."""
    cols = []
    for group in GROUPS:
        cols += [(BY_SOURCE[s].label, s) for s in group_sources(group)] + [(f"{group} avg", f"avg:{group}")]
    return cols + [(s, s) for s in table.extras]


def to_markdown(table: Table) -> str:
    cols = _columns(table)
    pct = table.values[[k for _, k in cols]] * 100
    cells = pd.DataFrame({"run": [f"**{n}**" if n in table.deltas else n for n in pct.index],
                          "step": table.steps.astype("string").fillna("").to_numpy()})
    for header, key in cols:
        fmt = [("-" if pd.isna(v) else f"{v:+.1f}" if n in table.deltas else f"{v:.1f}")
               for n, v in pct[key].items()]
        cells[header] = fmt
    notes = [f"{i}. {n}" for i, n in enumerate(table.footnotes, start=1)]
    return "\n".join([markdown_table(cells), "", *notes]) + "\n"


def to_csv(table: Table) -> str:
    """Same columns; percent with 4 decimals; a missing value is an empty cell (never 0)."""
    cols = _columns(table)
    frame = (table.values[[k for _, k in cols]] * 100).set_axis([h for h, _ in cols], axis=1)
    frame.insert(0, "step", table.steps)
    return frame.rename_axis("run").to_csv(float_format="%.4f", lineterminator="\n")
