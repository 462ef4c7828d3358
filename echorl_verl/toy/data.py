"""verl-format parquet files for the addition task.

Columns (what verl's RLHFDataset and reward loop read):
    data_source   str            "echorl/addition" (selects the reward)
    prompt        list[dict]     chat messages [{"role": "user", "content": "47+85"}]
    ability       str            "math"
    reward_model  {style, ground_truth}   {"style": "rule", "ground_truth": "132"}
    extra_info    {index, split, digits}
Train and validation problems come from different seeds and never overlap.
"""

from __future__ import annotations

import os

import pandas as pd

from . import DATA_SOURCE
from .task import MAX_DIGITS, MIN_DIGITS, Problem, sample_problems

REQUIRED_COLUMNS = ("data_source", "prompt", "ability", "reward_model", "extra_info")


def problem_row(problem: Problem, index: int, split: str) -> dict:
    return {
        "data_source": DATA_SOURCE,
        "prompt": [{"role": "user", "content": problem.prompt}],
        "ability": "math",
        "reward_model": {"style": "rule", "ground_truth": problem.answer},
        "extra_info": {"index": index, "split": split, "digits": len(str(problem.a))},
    }


def make_splits(train_size: int, val_size: int, seed: int = 0, min_digits: int = MIN_DIGITS,
                max_digits: int = MAX_DIGITS) -> dict[str, pd.DataFrame]:
    """{"train": DataFrame, "val": DataFrame}; deterministic in all arguments."""
    val = sample_problems(seed + 1000, val_size, min_digits, max_digits)
    seen = set(val)
    train, k = [], 0
    while len(train) < train_size:  # draw in blocks until enough unseen problems
        for p in sample_problems(seed + 2000 + k, train_size, min_digits, max_digits):
            if p not in seen and len(train) < train_size:
                seen.add(p)
                train.append(p)
        k += 1
    return {
        split: pd.DataFrame([problem_row(p, i, split) for i, p in enumerate(problems)])
        for split, problems in (("train", train), ("val", val))
    }


def write_parquet(df: pd.DataFrame, path: str) -> None:
    """Write atomically: a temporary file renamed into place, so readers never see half a file."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        df.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
