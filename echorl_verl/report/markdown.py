"""Markdown pipe tables from a DataFrame of already formatted cells (the report table and the study report).

pandas' own `to_markdown` needs `tabulate` (not installed) and pads every column; the reports keep the
compact form `| a | b |` with the first column left-aligned and the others right-aligned.
"""

from __future__ import annotations

import pandas as pd


def markdown_table(cells: pd.DataFrame) -> str:
    """cells: string DataFrame; its column names are the header. Returns the table without a final newline."""
    header = "| " + " | ".join(map(str, cells.columns)) + " |"
    rule = "| --- |" + " ---: |" * (len(cells.columns) - 1)
    body = ["| " + " | ".join(row) + " |" for row in cells.astype(str).itertuples(index=False, name=None)]
    return "\n".join([header, rule, *body])
