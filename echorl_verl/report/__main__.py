"""`python -m echorl_verl.report {summary,table,plot,clips,next-metrics-path}`: see echorl_verl/report/__init__.py."""

from __future__ import annotations

import argparse
import sys

from echorl_verl import atomic
from echorl_verl.report.attempts import next_metrics_path
from echorl_verl.report.runlog import ReportError, load_run
from echorl_verl.report.summary import format_summary, summarize


def _step(value: str) -> str:
    if value in ("last", "best") or value.isdigit():
        return value
    raise argparse.ArgumentTypeError(f"{value!r}: use last, best or a step number")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m echorl_verl.report", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("summary", help="short summary of one run")
    p.add_argument("run", help="metrics JSONL (read alone) or run folder (runs/<name>/: every attempt)")
    p = sub.add_parser("table", help="paper-style accuracy table (markdown on stdout)")
    p.add_argument("runs", nargs="+", help="metrics JSONL files, run folders, or NAME=PATH")
    p.add_argument("--out", help="also write the markdown table here")
    p.add_argument("--csv", help="also write the table as CSV here")
    p.add_argument("--step", type=_step, default="last", help="last (default), best, or a step number")
    p = sub.add_parser("plot", help="PNG training curves")
    p.add_argument("runs", nargs="+", help="metrics JSONL files, run folders, or NAME=PATH")
    p.add_argument("--out", required=True, help="folder for the PNGs (created if missing)")
    p = sub.add_parser("clips", help="EchoClip viewer: HTML page + PNG of sampled all-success rollouts")
    from echorl_verl.report.clips import parse_steps

    p.add_argument("run_dir", help="the run folder (RUN_DIR; its rollouts/ holds trainer.rollout_data_dir's dump)")
    p.add_argument("--out", required=True, help="the HTML page to write")
    p.add_argument("--png", help="the PNG to write (default: --out with .png)")
    p.add_argument("--steps", type=parse_steps, help="steps to sample, e.g. 1,5,10 (default: first, middle, last)")
    p.add_argument("--per-step", type=int, default=4, help="rollouts per step (default 4)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sample (default 0)")
    p = sub.add_parser("next-metrics-path", help="print the metrics file the next attempt of a run writes")
    p.add_argument("run_dir", help="the run folder (RUN_DIR); it need not exist yet")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "clips":
            from echorl_verl.report.clips import write_viewer

            for path in write_viewer(args.run_dir, args.out, args.png, args.steps, args.per_step, args.seed):
                print(f"wrote {path}")
        elif args.command == "next-metrics-path":
            print(next_metrics_path(args.run_dir))
        elif args.command == "summary":
            print(format_summary(summarize(args.run)))
        elif args.command == "table":
            from echorl_verl.report.table import build_table, to_csv, to_markdown

            table = build_table([load_run(r) for r in args.runs], args.step)
            text = to_markdown(table)
            outputs = {}
            if args.out:
                outputs[args.out] = text
            if args.csv:
                outputs[args.csv] = to_csv(table)
            atomic.write_all({p: (lambda tmp, s=s: _write(tmp, s)) for p, s in outputs.items()})
            print(text, end="")
            for path in outputs:
                print(f"wrote {path}", file=sys.stderr)
        else:
            from echorl_verl.report.plot import plot_runs

            for path in plot_runs([load_run(r) for r in args.runs], args.out):
                print(f"wrote {path}")
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _write(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)


if __name__ == "__main__":
    sys.exit(main())
