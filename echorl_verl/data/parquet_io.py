"""Atomic, deterministic parquet writing.

The table goes to a temporary file in the destination's folder and replaces the destination with one
``os.replace`` only after every row was built, validated and written. A failure or Ctrl-C at any point
leaves no partial file and an older output untouched. Same rows in -> same bytes out (no timestamps, no
pandas index; row order is the caller's).
"""

from __future__ import annotations

import os
from typing import Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from echorl_verl.atomic import write_all
from echorl_verl.data.rows import ROW_SCHEMA, check_row


def rows_to_table(rows: list[dict]) -> pa.Table:
    """Validate every row (RowError names the first bad one) and build a table in ``ROW_SCHEMA``."""
    for position, row in enumerate(rows):
        check_row(row, position)
    return pa.Table.from_pylist(rows, schema=ROW_SCHEMA)


def write_parquet_atomic(rows: Iterable[dict], path: str) -> str:
    """Write ``rows`` to ``path`` atomically; returns the absolute path.

    Raises ValueError for zero rows (an empty benchmark is a bug upstream, not a result).
    """
    rows = list(rows)
    if not rows:
        raise ValueError(f"no rows to write to {path}: the source gave no usable record")
    table = rows_to_table(rows)
    path = os.path.abspath(path)
    write_all({path: lambda tmp: pq.write_table(table, tmp, compression="zstd")})
    return path
