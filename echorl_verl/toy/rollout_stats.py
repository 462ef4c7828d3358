"""Group shares per step from verl's rollout dumps (`trainer.rollout_data_dir`).

    python -m echorl_verl.toy.rollout_stats RUN_DIR/rollouts

verl writes one `{step}.jsonl` per step, a line per rollout with "input" and "score". Rollouts of one
prompt share the input; a group is all-correct (score > 0 for all), all-wrong (none) or mixed.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
from collections import defaultdict


def group_shares_of_dump(path: str) -> dict:
    """{"groups", "rollouts_per_group", "all", "mixed", "none"} for one `{step}.jsonl` file."""
    groups: dict[str, list[float]] = defaultdict(list)
    with open(path, encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            groups[row["input"]].append(float(row["score"]))
    if not groups:
        raise ValueError(f"{path}: no rollouts")
    kinds = {"all": 0, "mixed": 0, "none": 0}
    for scores in groups.values():
        kinds["all" if min(scores) > 0 else "none" if max(scores) <= 0 else "mixed"] += 1
    n = len(groups)
    return {"groups": n, "rollouts_per_group": sum(map(len, groups.values())) / n,
            **{k: v / n for k, v in kinds.items()}}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("rollout_dir", help="the folder given as trainer.rollout_data_dir")
    args = ap.parse_args(argv)
    files = sorted(glob.glob(os.path.join(args.rollout_dir, "*.jsonl")),
                   key=lambda p: int(os.path.basename(p).split(".")[0]))
    if not files:
        raise SystemExit(f"no <step>.jsonl files in {args.rollout_dir}")
    for path in files:
        print(json.dumps({"step": int(os.path.basename(path).split(".")[0]), **group_shares_of_dump(path)}))


if __name__ == "__main__":
    main()
