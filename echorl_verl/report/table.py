"""`report table`: the paper-style accuracy table, one row per run, a delta row per algorithm pair.

Values are accuracies in percent. A benchmark a run did not validate is `-` and is left out of that
run's averages (a footnote says which); it is never counted as 0.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field

from echorl_verl.report.runlog import ReportError, RunLog, ValScore, require_validation
from echorl_verl.report.suite import BY_SOURCE, GROUPS, SUITE, group_sources

ALGO_ORDER = ("grpo", "drgrpo", "dapo", "gspo")
# <algo>_echo_<rest> vs <algo>_baseline_<rest>; eval_ prefix from recipes/eval_qwen.sh
PAIR_NAME = re.compile(r"^(?P<pre>(?:eval_)?)(?P<algo>[A-Za-z0-9.\-]+)_(?P<kind>echo|baseline)(?P<rest>(?:_.*)?)$")


@dataclass
class Row:
    """One table row. values: {data_source: accuracy in [0, 1] or None}; avgs: {"ID"|"OOD": mean or None};
    covers: {"ID"|"OOD": data_sources the average is over}; step None for a delta row."""

    name: str
    step: int | None
    values: dict[str, float | None]
    avgs: dict[str, float | None]
    covers: dict[str, tuple[str, ...]]
    metrics: dict[str, str] = field(default_factory=dict)  # data_source -> verl metric name used
    is_delta: bool = False


@dataclass
class Table:
    rows: list[Row]
    extras: list[str]  # data_sources outside the suite, shown after the suite columns
    footnotes: list[str]


def select_step(run: RunLog, val: dict[int, dict[str, ValScore]], how: str) -> int:
    """The validation step to report: "last", "best" (highest mean accuracy) or a step number."""
    if how == "last":
        return max(val)
    if how == "best":
        def score(step: int) -> float:
            scores = val[step]
            chosen = [s for s in scores if s in BY_SOURCE] or list(scores)
            return sum(scores[s].value for s in chosen) / len(chosen)
        return max(sorted(val), key=score)  # max keeps the first (earliest) of equal scores
    try:
        step = int(how)
    except ValueError:
        raise ReportError(f"--step {how!r}: use last, best or a step number") from None
    if step not in val:
        raise ReportError(f"{run.path}: run {run.name!r} has no validation at step {step}; "
                          f"validated steps: {sorted(val)}. Pick one of them with --step")
    return step


def _averages(values: dict[str, float | None]) -> tuple[dict, dict]:
    avgs, covers = {}, {}
    for group in GROUPS:
        present = tuple(s for s in group_sources(group) if values.get(s) is not None)
        covers[group] = present
        avgs[group] = sum(values[s] for s in present) / len(present) if present else None
    return avgs, covers


def run_row(run: RunLog, how: str) -> Row:
    val = require_validation(run)
    step = select_step(run, val, how)
    scores = val[step]
    values = {s: scores[s].value if s in scores else None for s in [b.source for b in SUITE]}
    values.update({s: v.value for s, v in scores.items() if s not in BY_SOURCE})
    avgs, covers = _averages(values)
    return Row(run.name, step, values, avgs, covers, metrics={s: v.metric for s, v in scores.items()})


def _sub(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def delta_row(label: str, echo: Row, base: Row) -> Row:
    """echo - baseline per column; an average only when both cover the same benchmarks."""
    sources = set(echo.values) | set(base.values)
    values = {s: _sub(echo.values.get(s), base.values.get(s)) for s in sources}
    avgs = {g: _sub(echo.avgs[g], base.avgs[g]) if echo.covers[g] == base.covers[g] else None for g in GROUPS}
    return Row(label, None, values, avgs, echo.covers, is_delta=True)


def _order(rows: list[Row]) -> list[Row]:
    """Paired runs grouped per algorithm (baseline, echo, delta), paper order first; others after."""
    keyed, others = {}, []
    for row in rows:
        m = PAIR_NAME.match(row.name)
        if m is None:
            others.append(row)
        else:
            keyed.setdefault((m["pre"], m["algo"], m["rest"]), {})[m["kind"]] = row
    out = []
    rank = {a: i for i, a in enumerate(ALGO_ORDER)}
    for pre, algo, rest in sorted(keyed, key=lambda k: (rank.get(k[1].lower(), len(rank)), k[1], k[0], k[2])):
        pair = keyed[(pre, algo, rest)]
        out += [pair[k] for k in ("baseline", "echo") if k in pair]
        if len(pair) == 2:
            out.append(delta_row(f"Δ {pre}{algo}{rest} (echo − baseline)", pair["echo"], pair["baseline"]))
    return out + others


def build_table(runs: list[RunLog], how: str = "last") -> Table:
    """Rows for `runs` (ReportError for a run without validation or a duplicate name) plus footnotes."""
    names = [r.name for r in runs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ReportError(f"two runs are named {dupes}: label them NAME=PATH on the command line")
    plain = [run_row(r, how) for r in runs]
    extras = sorted({s for r in plain for s in r.values if s not in BY_SOURCE})
    metrics = sorted({re.sub(r"^val-core/.+/([^/]+/mean@\d+)$", r"\1", m) for r in plain for m in r.metrics.values()})
    notes = [f"Accuracy in % from verl's `val-core/<data_source>/{' | '.join(metrics)}` (mean over prompts "
             "of the mean over samples); AIME24/AIME25/AMC23 rows are repeated 32x, so one sample per row is "
             f"avg@32. Step: the run's {'last' if how == 'last' else 'best' if how == 'best' else 'chosen'} "
             "validation step."]
    if how == "best":
        notes.append("--step best picks, per run, the validation step with the highest mean accuracy over its "
                     "suite benchmarks, chosen on the test sets themselves: optimistic, not a held-out result.")
    rows = _order(plain)
    by_missing: dict[tuple[str, ...], list[str]] = {}  # one footnote per set of missing benchmarks
    for row in (r for r in rows if not r.is_delta):
        missing = tuple(s for s in BY_SOURCE if row.values.get(s) is None)
        if missing:
            by_missing.setdefault(missing, []).append(row.name)
    for missing, names in by_missing.items():
        cover = ", ".join(f"{g} avg over {len([s for s in group_sources(g) if s not in missing])}/"
                          f"{len(group_sources(g))}" for g in GROUPS)
        notes.append(f"`-` = not validated: {', '.join(names)} {'has' if len(names) == 1 else 'have'} no "
                     f"{', '.join(BY_SOURCE[s].label for s in missing)}; {cover} "
                     "(missing ones are left out, not counted as 0).")
    for row in rows:
        if row.is_delta and any(row.avgs[g] is None for g in GROUPS):
            notes.append(f"{row.name}: an average delta is `-` where the two runs' averages cover different "
                         "benchmarks (or none).")
    if extras:
        notes.append(f"Columns {', '.join(extras)}: outside the paper's suite, in no average.")
    return Table(rows, extras, notes)


def _columns(table: Table) -> list[tuple[str, str]]:
    """[(header, key)] with key a data_source or 'avg:ID' / 'avg:OOD'."""
    cols = []
    for group in GROUPS:
        cols += [(BY_SOURCE[s].label, s) for s in group_sources(group)] + [(f"{group} avg", f"avg:{group}")]
    return cols + [(s, s) for s in table.extras]


def _cell(row: Row, key: str) -> float | None:
    return row.avgs[key[4:]] if key.startswith("avg:") else row.values.get(key)


def to_markdown(table: Table) -> str:
    cols = _columns(table)
    lines = ["| run | step | " + " | ".join(h for h, _ in cols) + " |",
             "| --- | ---: |" + " ---: |" * len(cols)]
    for row in table.rows:
        cells = []
        for _, key in cols:
            v = _cell(row, key)
            cells.append("-" if v is None else f"{v * 100:+.1f}" if row.is_delta else f"{v * 100:.1f}")
        name = f"**{row.name}**" if row.is_delta else row.name
        lines.append(f"| {name} | {'' if row.step is None else row.step} | " + " | ".join(cells) + " |")
    notes = [f"{i}. {n}" for i, n in enumerate(table.footnotes, start=1)]
    return "\n".join(lines + [""] + notes) + "\n"


def to_csv(table: Table) -> str:
    """Same columns; percent with 4 decimals; a missing value is an empty cell (never 0)."""
    cols = _columns(table)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["run", "step", *[h for h, _ in cols]])
    for row in table.rows:
        vals = [_cell(row, k) for _, k in cols]
        writer.writerow([row.name, "" if row.step is None else row.step,
                         *["" if v is None else f"{v * 100:.4f}" for v in vals]])
    return buf.getvalue()
