"""Which metrics file each attempt of a run writes, and in what order a report reads them.

verl's `FileLogger` opens its file with "wb" (`verl/utils/tracking.py`), so a resumed run that wrote to the
same path would erase the first attempt's metrics. Each attempt of a run therefore gets its own file in
the run folder: the first `RUN_DIR/metrics.jsonl`, later ones `RUN_DIR/metrics.1.jsonl`,
`RUN_DIR/metrics.2.jsonl`, ... The recipes ask for the next name with

    python -m echorl_verl.report next-metrics-path RUN_DIR

and `report summary|table|plot RUN_DIR` read every attempt in that order (see runlog.merge_attempts).
The next name is one past the highest attempt present (not the first gap), so a newer attempt never
sorts before an older one even if a file in between was deleted.
"""

from __future__ import annotations

import os
import re

ATTEMPT_FILE = re.compile(r"^metrics(?:\.(?P<index>[1-9][0-9]*))?\.jsonl$")


def attempt_files(run_dir: str) -> list[str]:
    """Paths of the run's attempt files, oldest first ([] when there is none or no such folder)."""
    if not os.path.isdir(run_dir):
        return []
    found = []
    for name in os.listdir(run_dir):
        m = ATTEMPT_FILE.match(name)
        if m and os.path.isfile(os.path.join(run_dir, name)):
            found.append((int(m["index"] or 0), name))
    return [os.path.join(run_dir, name) for _, name in sorted(found)]


def next_metrics_path(run_dir: str) -> str:
    """The metrics file the next attempt of the run in `run_dir` should write (the folder may not exist)."""
    taken = [int(ATTEMPT_FILE.match(os.path.basename(p))["index"] or 0) for p in attempt_files(run_dir)]
    if not taken:
        return os.path.join(run_dir, "metrics.jsonl")
    return os.path.join(run_dir, f"metrics.{max(taken) + 1}.jsonl")
