"""verl-format parquet files of the arithmetic task, built offline by code (seeded).

    python -m echorl_verl.smollm2.data [--output_dir DIR] [--train_size 2048] [--val_size 64] [--seed 0]
                                       [--operations 1] [--shots 2]

Why: the real-model CPU profile needs train/val data that verl's RLHFDataset reads with SmolLM2's own chat
template; nothing may be downloaded. Writes DIR/data/train.parquet and DIR/data/val.parquet together
(all-or-nothing, echorl_verl.atomic); the same arguments always give the same files.

Columns (what verl's RLHFDataset and reward loop read):
    data_source   str            "echorl/arithmetic" (selects echorl_verl.smollm2.reward in echorl_verl.rewards)
    prompt        list[dict]     the chat (task.messages): `shots` worked examples (2: 4 turns), then the question
    ability       str            "math"
    reward_model  {style, ground_truth}   {"style": "rule", "ground_truth": "56"}
    extra_info    {index, split, kind, operations, question, solution}   solution: the worked answer (for SFT)
No validation question occurs in the training set; training questions may repeat (few one-digit questions).
"""

from __future__ import annotations

import argparse
import collections
import json
import sys

import pandas as pd

from echorl_verl.atomic import write_all
from echorl_verl.smollm2 import DATA_SOURCE, default_dir, paths
from echorl_verl.smollm2.task import SHOTS, Problem, messages, sample_problems, worked_solution

#: data.max_prompt_length for this data: the longest prompt is 224 tokens of SmolLM2's tokenizer with one
#: operation, 231 with two, 239 with three (tests/test_smollm2.py checks built files against it)
MAX_PROMPT_TOKENS = 256


def problem_row(problem: Problem, index: int, split: str, shots: int = 2) -> dict:
    return {
        "data_source": DATA_SOURCE,
        "prompt": messages(problem.question, shots),
        "ability": "math",
        "reward_model": {"style": "rule", "ground_truth": str(problem.answer)},
        "extra_info": {"index": index, "split": split, "kind": problem.kind, "operations": problem.operations,
                       "question": problem.question, "solution": worked_solution(problem)},
    }


def make_splits(train_size: int, val_size: int, seed: int = 0, operations: int = 1,
                shots: int = 2) -> dict[str, pd.DataFrame]:
    """{"train": DataFrame, "val": DataFrame}; deterministic in all arguments (the questions do not depend on
    `shots`, the worked examples in each prompt)."""
    val = sample_problems(seed + 1000, val_size, operations)
    train = sample_problems(seed + 2000, train_size, operations, exclude=frozenset(p.question for p in val))
    return {split: pd.DataFrame([problem_row(p, i, split, shots) for i, p in enumerate(problems)])
            for split, problems in (("train", train), ("val", val))}


def write_splits(output_dir: str, splits: dict[str, pd.DataFrame]) -> dict[str, str]:
    """Write both files all-or-nothing; returns {split: path}."""
    p = paths(output_dir)
    targets = {split: p[split] for split in splits}
    write_all({targets[split]: (lambda tmp, df=df: df.to_parquet(tmp, index=False)) for split, df in splits.items()})
    return targets


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m echorl_verl.smollm2.data", description=__doc__.split("\n\n")[0])
    ap.add_argument("--output_dir", default=None, help=f"build folder (default {default_dir()}); data/ goes inside")
    ap.add_argument("--train_size", type=int, default=2048)
    ap.add_argument("--val_size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--operations", type=int, default=1, help="worked steps per problem (1: the profile's mix)")
    ap.add_argument("--shots", type=int, default=2, help="worked examples before the question (0 after a warm-up)")
    args = ap.parse_args(argv)
    if min(args.train_size, args.val_size, args.operations) < 1:
        print("error: --train_size, --val_size and --operations must be >= 1", file=sys.stderr)
        return 2
    if not 0 <= args.shots <= len(SHOTS):
        print(f"error: --shots must be from 0 to {len(SHOTS)}, got {args.shots}", file=sys.stderr)
        return 2
    splits = make_splits(args.train_size, args.val_size, args.seed, args.operations, args.shots)
    files = write_splits(args.output_dir or default_dir(), splits)
    kinds = {s: dict(collections.Counter(r["kind"] for r in df["extra_info"])) for s, df in splits.items()}
    print(json.dumps({"files": files, "rows": {s: len(df) for s, df in splits.items()}, "kinds": kinds}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
