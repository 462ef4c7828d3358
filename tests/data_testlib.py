"""Helpers of the data_prep tests: source files in a source's own schema, and the rows data_prep must write."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from echorl_verl.data.templates import ECHO_SYSTEM_PROMPT

REPO = Path(__file__).resolve().parents[1]
GOOD_AIME = {"id": 0, "problem": "P", "answer": "1", "solution": "s", "url": "u", "year": "2024"}


def write_source(path: Path, records: list[dict]) -> str:
    """A local source file; the format follows the suffix (.json array, .jsonl lines, .parquet)."""
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    elif path.suffix == ".json":
        path.write_text(json.dumps(records), encoding="utf-8")
    else:
        pq.write_table(pa.Table.from_pylist(records), path)
    return str(path)


def read_rows(path: str) -> list[dict]:
    return pq.read_table(path).to_pylist()


def row(ds, prompt, truth, index, split, ability="math"):
    return {"data_source": ds, "prompt": prompt, "ability": ability,
            "reward_model": {"ground_truth": truth, "style": "rule"}, "extra_info": {"index": index, "split": split}}


def echo(user):
    return [{"content": ECHO_SYSTEM_PROMPT, "role": "system"}, {"content": user, "role": "user"}]
