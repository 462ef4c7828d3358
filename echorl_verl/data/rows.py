"""The verl RL row: schema, construction and field validation.

A row is a dict with exactly the columns and types of shared/data/benchmarks/*.parquet:
    data_source  str
    prompt       list of {content: str, role: str}
    ability      str
    reward_model {ground_truth: str, style: "rule"}
    extra_info   {index: int64, split: str}
(`ROW_SCHEMA` is that arrow schema, field order included.) Source records are plain dicts in the
source's own schema; `field` and friends read them and raise `RowError` naming the row and the field.
"""

from __future__ import annotations

import math
from typing import Any

import pyarrow as pa

ROW_SCHEMA = pa.schema(
    [
        ("data_source", pa.string()),
        ("prompt", pa.list_(pa.struct([("content", pa.string()), ("role", pa.string())]))),
        ("ability", pa.string()),
        ("reward_model", pa.struct([("ground_truth", pa.string()), ("style", pa.string())])),
        ("extra_info", pa.struct([("index", pa.int64()), ("split", pa.string())])),
    ]
)


class RowError(ValueError):
    """A source record that cannot become a row. The message names the row index, the field and the fix."""

    def __init__(self, row: int, field: str, problem: str, source: str = ""):
        where = f"{source}: " if source else ""
        super().__init__(f"{where}row {row}, field {field!r}: {problem}")
        self.row, self.field = row, field


def field(record: dict, row: int, key: str, source: str = "") -> Any:
    """``record[key]``; RowError when the key is missing or None (the source lacks that column)."""
    if not isinstance(record, dict):
        raise RowError(row, key, f"the record is a {type(record).__name__}, not an object/dict", source)
    if key not in record or record[key] is None:
        have = ", ".join(sorted(map(str, record))) or "none"
        raise RowError(row, key, f"missing (columns present: {have}); fix the input file", source)
    return record[key]


def text_field(record: dict, row: int, key: str, source: str = "") -> str:
    """A non-empty string field. Numbers are accepted and written with ``str`` (AMC's 142.0 -> "142.0")."""
    value = field(record, row, key, source)
    return as_text(value, row, key, source)


def as_text(value: Any, row: int, key: str, source: str = "") -> str:
    """``value`` as a non-empty, non-blank string; RowError otherwise (names row and field)."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise RowError(row, key, f"expected text, got {type(value).__name__} {value!r:.80}", source)
    if isinstance(value, float) and not math.isfinite(value):
        raise RowError(row, key, f"expected a finite number, got {value!r}", source)
    text = value if isinstance(value, str) else str(value)
    if not text.strip():
        raise RowError(row, key, "empty; every row needs one (drop the row or fill it in)", source)
    return text


def list_field(record: dict, row: int, key: str, source: str = "", min_len: int = 1) -> list:
    """A list field (a JSON array, a parquet list or a numpy array) with at least ``min_len`` items."""
    value = field(record, row, key, source)
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        value = value.tolist()  # parquet lists arrive as numpy arrays through pandas
    if not isinstance(value, (list, tuple)):
        raise RowError(row, key, f"expected a list, got {type(value).__name__}", source)
    if len(value) < min_len:
        raise RowError(row, key, f"expected at least {min_len} item(s), got {len(value)}", source)
    return list(value)


def make_row(
    data_source: str, prompt: list[dict], ability: str, ground_truth: str, index: int, split: str
) -> dict:
    """One row in ``ROW_SCHEMA``'s layout (keys and nested keys in the schema's order)."""
    return {
        "data_source": data_source,
        "prompt": [{"content": m["content"], "role": m["role"]} for m in prompt],
        "ability": ability,
        "reward_model": {"ground_truth": ground_truth, "style": "rule"},
        "extra_info": {"index": int(index), "split": split},
    }


def check_row(row: dict, position: int) -> None:
    """Validate a built row against the schema's rules; RowError names the output position and field."""
    for key in ("data_source", "ability"):
        if not isinstance(row.get(key), str) or not row[key]:
            raise RowError(position, key, "must be a non-empty string")
    prompt = row.get("prompt")
    if not isinstance(prompt, list) or not prompt:
        raise RowError(position, "prompt", "must be a non-empty chat list")
    for turn in prompt:
        if turn.get("role") not in ("system", "user", "assistant") or not str(turn.get("content", "")).strip():
            raise RowError(position, "prompt", f"bad chat turn {turn!r:.120}")
    if prompt[-1]["role"] != "user":
        raise RowError(position, "prompt", "the last turn must be the user's question")
    gt = row.get("reward_model", {}).get("ground_truth")
    if not isinstance(gt, str) or not gt.strip():
        raise RowError(position, "reward_model.ground_truth", "must be a non-empty string")
