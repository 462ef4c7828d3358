"""The command line shared by the data_prep/ scripts, and one ``main(argv)`` per data family.

Every script: ``python data_prep/NAME.py --dataset KEY --output_dir DIR [--input FILE] [--template echo|verl]``
writes ``DIR/KEY.parquet`` (or ``--output_name``) atomically. Without ``--input`` the source is loaded from
the hub with ``datasets.load_dataset``. Each main returns the written path. ``--summary FILE`` also writes
what happened (rows, skips and why, or the failure and its reason) as JSON, for data_prep/all.sh's table.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from typing import Callable, Optional, Sequence

from echorl_verl.data.outcome import BuildLog, NoRows, failed_summary, ok_summary, write_summary
from echorl_verl.data.parquet_io import write_parquet_atomic
from echorl_verl.data.rows import RowError
from echorl_verl.data.sources import HubSource, SourceError, load_records
from echorl_verl.data.templates import TEMPLATES


def base_parser(prog: str, description: str, keys: Sequence[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--dataset", required=True, choices=sorted(keys), help="which set to build")
    parser.add_argument("--output_dir", required=True, help="folder for the parquet file (created if missing)")
    parser.add_argument("--input", default=None,
                        help="local .json/.jsonl/.parquet in the source's own schema (default: load from the hub)")
    parser.add_argument("--output_name", default=None, help="file name (default: DATASET.parquet)")
    parser.add_argument("--template", default="echo", choices=TEMPLATES,
                        help="echo: the authors' system prompt (default); verl: verl's plain suffix")
    parser.add_argument("--hub_split", default=None, help="override the hub split (e.g. test)")
    parser.add_argument("--summary", default=None, help="also write what happened to this JSON file (all.sh's table)")
    return parser


def hub_of(hub, split: Optional[str]):
    """``hub`` (one HubSource or a tuple of them) with its split replaced when ``split`` is given."""
    if isinstance(hub, tuple):
        return tuple(hub_of(h, split) for h in hub)
    return HubSource(hub.repo, split, hub.name, hub.data_files) if split else hub


def failure_reason(err: BaseException) -> str:
    """The short reason a suite summary shows for a failed set (the full message goes with it)."""
    if isinstance(err, SourceError):
        return err.reason
    if isinstance(err, RowError):
        return f"bad record: row {err.row}, field {err.field!r} (an evaluation set keeps every row: fix the source)"
    if isinstance(err, NoRows):
        return "no usable record"
    if isinstance(err, KeyboardInterrupt):
        return "interrupted"
    return f"{type(err).__name__}"


def run(args: argparse.Namespace, hub, build: Callable[[list, str], "tuple[list, BuildLog]"]) -> str:
    """Load the source, build rows with ``build(records, origin)``, write atomically; returns the path.

    Errors (bad row, unreadable source) propagate: the scripts' ``entry`` prints them and exits 1. With
    ``--summary`` the outcome (or the failure and its reason) is written there either way.
    """
    try:
        records, origin = load_records(args.input, hub_of(hub, args.hub_split))
        print(f"[{args.dataset}] {len(records)} records from {origin}", flush=True)
        rows, log = build(records, origin)
        path = write_parquet_atomic(rows, os.path.join(args.output_dir, args.output_name or f"{args.dataset}.parquet"))
    except BaseException as err:
        if args.summary:
            write_summary(args.summary, failed_summary(args.dataset, failure_reason(err), f"{err}"))
        raise
    for line in log.lines():
        print(line, flush=True)
    print(f"[{args.dataset}] wrote {len(rows)} rows to {path}", flush=True)
    if args.summary:
        write_summary(args.summary, ok_summary(log, path, origin))
    return path


def entry(main: Callable[[Optional[Sequence[str]]], str]) -> None:
    """Run ``main`` as a script: known data errors print one clear line and exit 1 (no traceback)."""
    try:
        main(None)
    except (RowError, SourceError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted: nothing was written", file=sys.stderr)
        sys.exit(130)


def main_math_train(argv: Optional[Sequence[str]] = None) -> str:
    from echorl_verl.data.math_sets import TRAIN_SETS, build_math_rows

    parser = base_parser("math_train", "Math training sets in verl's parquet format.", TRAIN_SETS)
    args = parser.parse_args(argv)
    spec = TRAIN_SETS[args.dataset]
    if args.hub_split:  # e.g. MATH-lighteval's test split: say so in extra_info.split too
        spec = dataclasses.replace(spec, split=args.hub_split)
    return run(args, spec.hub, lambda recs, src: build_math_rows(recs, spec, args.template, None, src))


def main_math_eval(argv: Optional[Sequence[str]] = None) -> str:
    from echorl_verl.data.math_sets import EVAL_SETS, build_math_rows, with_columns

    parser = base_parser("math_eval", "Math evaluation sets (avg@K by repeated rows).", EVAL_SETS)
    parser.add_argument("--repeat", type=int, default=None,
                        help="write each problem K times (default: 32 for aime, aime25, amc; 1 otherwise)")
    parser.add_argument("--problem_key", default=None, help="problem column of --input, if not the hub's")
    parser.add_argument("--answer_key", default=None, help="answer column of --input, if not the hub's")
    args = parser.parse_args(argv)
    spec = with_columns(EVAL_SETS[args.dataset], args.problem_key, args.answer_key)
    return run(args, spec.hub, lambda recs, src: build_math_rows(recs, spec, args.template, args.repeat, src))


def main_choice(argv: Optional[Sequence[str]] = None) -> str:
    from echorl_verl.data.choice_sets import CHOICE_SETS, build_choice_rows

    parser = base_parser("choice", "Multiple-choice (out-of-distribution) sets; the answer is a letter.",
                         CHOICE_SETS)
    parser.add_argument("--shuffle_seed", type=int, default=None,
                        help="shuffle the options with this seed (default: 0 for gpqa, off for the others)")
    parser.add_argument("--no_shuffle", action="store_true", help="keep the source's option order")
    args = parser.parse_args(argv)
    spec = CHOICE_SETS[args.dataset]
    seed = None if args.no_shuffle else (args.shuffle_seed if args.shuffle_seed is not None else spec.shuffle_seed)
    return run(args, spec.hub, lambda recs, src: build_choice_rows(recs, spec, args.template, seed, src))


def main_code(argv: Optional[Sequence[str]] = None) -> str:
    from echorl_verl.data.code_sets import CODE_SETS, build_code_rows

    parser = base_parser("code", "Code sets; ground truth is a JSON test spec (functional or stdio).", CODE_SETS)
    args = parser.parse_args(argv)
    spec = CODE_SETS[args.dataset]
    return run(args, spec.hub, lambda recs, src: build_code_rows(recs, spec, args.template, src))
