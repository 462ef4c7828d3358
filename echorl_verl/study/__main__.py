"""`python -m echorl_verl.study {run,report,export}`: see echorl_verl/study/__init__.py."""

from __future__ import annotations

import argparse
import os
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m echorl_verl.study", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="run every unfinished (arm, seed) of a study, one after another")
    p.add_argument("study", help="the study file (STUDY.yaml)")
    p.add_argument("--study-dir", help="put the runs here instead of the file's study_dir")
    p.add_argument("--finished-in", metavar="COMPACT_DIR",
                   help="first copy in the runs finished in this compact copy (`study export`, e.g. committed "
                        "by an earlier session in another checkout) and do not run them again")
    for name, text in (("report", "report.md and PNGs"), ("export", "the compact per-run results to commit")):
        p = sub.add_parser(name, help=text)
        p.add_argument("study_dir", help="the study folder (or a compact copy of it)")
        p.add_argument("--out", required=True, help="output folder (created if missing)")
        p.add_argument("--allow-incomplete", action="store_true",
                       help="leave out missing, unfinished or truncated runs (listed) instead of refusing")
    return parser


def main(argv: list[str] | None = None) -> int:
    from echorl_verl.study.spec import StudyError

    args = build_parser().parse_args(argv)
    try:
        if args.command == "run":
            from echorl_verl.study.run import run_study
            from echorl_verl.study.spec import load_study

            study = load_study(args.study, os.path.abspath(args.study_dir) if args.study_dir else None)
            failed = run_study(study, args.finished_in)
            if failed:
                print(f"[study] {len(failed)} run(s) failed twice: "
                      + ", ".join(f"{s['arm']}/seed{s['seed']} ({s['error']})" for s in failed), file=sys.stderr)
                return 1
            print(f"[study] every run finished; next: python -m echorl_verl.study report {study.study_dir} --out DIR",
                  file=sys.stderr)
        elif args.command == "report":
            from echorl_verl.study.report import write_report
            from echorl_verl.study.results import load_study_dir

            for path in write_report(load_study_dir(args.study_dir), args.out, args.allow_incomplete):
                print(f"wrote {path}")
        else:
            from echorl_verl.study.export import export_study
            from echorl_verl.study.results import load_study_dir

            left_out = export_study(load_study_dir(args.study_dir), args.out, args.allow_incomplete)
            for line in left_out:
                print(f"[study] left out: {line}", file=sys.stderr)
            print(f"wrote {args.out}")
    except StudyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM / SIGHUP while a study runs (study.run.Interrupted)
        print(f"[study] interrupted ({getattr(exc, 'signal_name', 'Ctrl-C')}); `study run` again continues where "
              "it stopped", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
