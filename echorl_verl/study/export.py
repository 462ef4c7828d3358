"""`study export STUDY_DIR --out COMPACT_DIR`: the per-run results small enough to commit.

Per run, COMPACT_DIR/<arm>/seed<k>/ gets `metrics.jsonl` (verl's file-logger format, one line per step,
the attempts already merged, only every `val-core/*` metric and results.TRAIN_METRICS, plus the
all-success share computed from a rollout dump as `rollouts/all_success_group_share`), a copy of
`resolved_config.yaml` and of `study_run.json`; COMPACT_DIR/study.yaml is the study as run. Checkpoints,
rollout dumps and logs stay behind. `study report COMPACT_DIR` gives the same report as on STUDY_DIR.
Only runs the report can use are exported (the others are listed, as `study report` lists them).
"""

from __future__ import annotations

import json
import math
import os
import shutil

import yaml

from echorl_verl import atomic
from echorl_verl.study.results import CONFIG, DUMP_SHARE, TRAIN_METRICS, RunResult, load_results
from echorl_verl.study.run import STATUS
from echorl_verl.study.spec import Study, run_path


def compact_lines(result: RunResult) -> str:
    """The run's kept metrics as verl file-logger JSON lines (NaN written as null, as orjson does)."""
    rec = result.log.records
    keep = rec[rec["metric"].str.startswith("val-core/") | rec["metric"].isin(TRAIN_METRICS)]
    steps: dict[int, dict] = {}
    for step, metric, value in keep[["step", "metric", "value"]].itertuples(index=False):
        steps.setdefault(int(step), {})[metric] = None if math.isnan(value) else float(value)
    if result.share_source == "rollout dump" and result.log.series(DUMP_SHARE).empty:
        for step, value in result.share.items():
            steps.setdefault(int(step), {})[DUMP_SHARE] = float(value)
    return "".join(json.dumps({"step": s, "data": steps[s]}) + "\n" for s in sorted(steps))


def export_study(study: Study, out_dir: str, allow_incomplete: bool = False) -> list[str]:
    """Write the compact copy (all files at once); returns the problems of runs left out."""
    results, problems = load_results(study, allow_incomplete)
    writers = {os.path.join(out_dir, "study.yaml"): _text(yaml.safe_dump(study.to_dict(), sort_keys=False))}
    for r in results:
        folder = run_path(out_dir, r.arm, r.seed)
        writers[os.path.join(folder, "metrics.jsonl")] = _text(compact_lines(r))
        for name in (CONFIG, STATUS):
            writers[os.path.join(folder, name)] = lambda tmp, src=os.path.join(r.run_dir, name): shutil.copyfile(src, tmp)
    atomic.write_all(writers)
    return problems


def _text(text: str):
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
    return write
