"""What building one set did, and the summary table of a whole suite build (data_prep/all.sh).

Why: one unusable record or one gated set must not silently stop, or silently shrink, the suite.
    - A training set skips the records it cannot use and counts them by reason; an evaluation set never
      loses a row: its first bad record is an error (`collect_rows`).
    - Each set's script can write a small JSON summary (``--summary FILE``): rows written, records
      skipped and why, values normalised and how, or the failure, its reason and the fix.
    - ``python -m echorl_verl.data.outcome table DIR SET...`` prints one line per set from those files
      and exits 1 if any set failed (or left no summary, e.g. killed), which all.sh passes on.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

from tqdm import tqdm

from echorl_verl.data.rows import RowError


class NoRows(ValueError):
    """Not one record of the source gave a row (the message counts the reasons)."""


class Skip(Exception):
    """A record the set deliberately leaves out (not an error): ``reason`` is what the summary counts."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class BuildLog:
    """Counts of one set's build. skipped/normalised: {reason: count}; examples: {reason: first message}."""

    name: str
    records: int = 0
    rows: int = 0
    skipped: Counter = field(default_factory=Counter)
    normalised: Counter = field(default_factory=Counter)
    examples: dict = field(default_factory=dict)

    def skip(self, reason: str, example: str) -> None:
        self.skipped[reason] += 1
        self.examples.setdefault(reason, example)

    def normalise(self, what: str) -> None:
        self.normalised[what] += 1

    def lines(self) -> list[str]:
        """Human-readable lines about skips and normalisations (empty when there were none)."""
        out = [f"[{self.name}] skipped {n} of {self.records} records: {reason} (first: {self.examples[reason]})"
               for reason, n in self.skipped.most_common()]
        out += [f"[{self.name}] normalised {n} records: {what}" for what, n in self.normalised.most_common()]
        return out


RowMaker = Callable[[dict, int, int], list]  # (record, source row, records kept so far) -> the rows it gives


def collect_rows(records: list, log: BuildLog, lenient: bool, make: RowMaker, src: str = "") -> list[dict]:
    """Rows of every record, in source order; progress on stderr.

    ``make`` raises `Skip` for a record the set leaves out (counted, always) and RowError for a bad one:
    with ``lenient`` (training sets) it is skipped and counted by field, otherwise it propagates (an
    evaluation set never loses a row silently). No usable record at all is `NoRows` naming why.
    """
    log.records = len(records)
    rows: list[dict] = []
    kept = 0
    for row, record in enumerate(tqdm(records, desc=f"{log.name}: building rows", unit="row")):
        try:
            made = make(record, row, kept)
        except Skip as skip:
            log.skip(skip.reason, f"row {row}")
            continue
        except RowError as err:
            if not lenient:
                raise
            log.skip(f"without a usable {err.field!r}", str(err))
            continue
        rows.extend(made)
        kept += 1
    if not rows:
        why = "; ".join(f"{n} x {r}" for r, n in log.skipped.most_common()) or "the source is empty"
        raise NoRows(f"{log.name}{' (' + src + ')' if src else ''}: no usable record of {len(records)} ({why})")
    log.rows = len(rows)
    return rows


# ------------------------------------------------------------------ the summary files and the table


def write_summary(path: str, summary: dict) -> None:
    """Write one set's summary as JSON, whole or not at all."""
    from echorl_verl.atomic import write_text

    write_text(path, json.dumps(summary, indent=1, sort_keys=True) + "\n")


def ok_summary(log: BuildLog, output: str, origin: str) -> dict:
    return {"set": log.name, "status": "ok", "records": log.records, "rows": log.rows, "output": output,
            "origin": origin, "skipped": dict(log.skipped), "normalised": dict(log.normalised)}


def failed_summary(name: str, reason: str, error: str) -> dict:
    return {"set": name, "status": "failed", "reason": reason, "error": error}


def read_summary(path: str) -> Optional[dict]:
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def _counts(counts: dict) -> str:
    return ", ".join(f"{n} {why}" for why, n in sorted(counts.items(), key=lambda kv: -kv[1])) or "-"


def table_lines(summaries: dict[str, Optional[dict]], output_dir: str) -> list[str]:
    """One line per set: name, rows written, records skipped (why), result. ``summaries``: {set: dict|None}."""
    lines = [f"{'set':<16} {'rows':>8}  {'skipped (why)':<40} result"]
    for name, s in summaries.items():
        if s is None:
            lines.append(f"{name:<16} {'-':>8}  {'-':<40} FAILED: no summary (the script was killed or crashed; "
                         "see its output above)")
        elif s["status"] == "ok":
            notes = f"; normalised: {_counts(s['normalised'])}" if s.get("normalised") else ""
            lines.append(f"{name:<16} {s['rows']:>8}  {_counts(s['skipped']):<40} ok{notes}")
        else:
            older = os.path.isfile(os.path.join(output_dir, f"{name}.parquet"))
            kept = f" (an older {name}.parquet is left as it was)" if older else ""
            lines.append(f"{name:<16} {'-':>8}  {'-':<40} FAILED {s['reason']}{kept}")
    return lines


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m echorl_verl.data.outcome")
    sub = parser.add_subparsers(dest="command", required=True)
    table = sub.add_parser("table", help="print the summary table of a suite build; exit 1 if any set failed")
    table.add_argument("summary_dir", help="folder of <set>.json summaries")
    table.add_argument("output_dir", help="folder of the <set>.parquet outputs")
    table.add_argument("sets", nargs="+", help="the sets that were built, in build order")
    args = parser.parse_args(argv)
    summaries = {s: read_summary(os.path.join(args.summary_dir, f"{s}.json")) for s in args.sets}
    print("\n".join(table_lines(summaries, args.output_dir)))
    failed = [s for s, v in summaries.items() if v is None or v["status"] != "ok"]
    for name in failed:
        if summaries[name] is not None:
            print(f"{name}: {summaries[name]['error']}", file=sys.stderr)
    print(f"{len(summaries) - len(failed)} of {len(summaries)} set(s) built in {args.output_dir}"
          + (f"; FAILED: {' '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
