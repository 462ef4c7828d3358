"""Loading a source: a local file in the source's own schema, or the hub through ``datasets.load_dataset``.

Both give a list of plain dicts (one per record, the source's columns as keys), in file/hub order.
Local formats: ``.json`` (an array of objects, or one object of columns as pandas writes it),
``.jsonl`` (one object per line) and ``.parquet``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Optional

import pyarrow.parquet as pq


@dataclass(frozen=True)
class HubSource:
    """Where a benchmark lives on the Hugging Face hub: ``load_dataset(repo, name, split=split)``."""

    repo: str
    split: str
    name: Optional[str] = None
    data_files: Optional[tuple] = None  # for repos read file by file (LiveCodeBench's jsonl releases)

    def describe(self) -> str:
        files = f" files={','.join(self.data_files)}" if self.data_files else ""
        return f"{self.repo}" + (f" ({self.name})" if self.name else "") + files + f" split={self.split}"


class SourceError(RuntimeError):
    """The source could not be read; the message says which and how to fix it.

    ``reason`` is the short form a suite summary shows (e.g. "gated: accept the terms on the Hub and
    `huggingface-cli login`").
    """

    def __init__(self, message: str, reason: str = "unreadable source"):
        super().__init__(message)
        self.reason = reason


GATED = "gated: accept the terms on the Hub and `huggingface-cli login`"
UNREACHABLE = "hub unreachable: check the network (and HF_HUB_OFFLINE), or give a local file (--input / INPUT_DIR)"
NOT_FOUND = "not on the hub: check the repo, config and split names"


def hub_failure_reason(err: BaseException) -> str:
    """Why ``datasets.load_dataset`` failed, from the exception and its causes (see datasets/load.py:
    a GatedRepoError becomes DatasetNotFoundError "... is a gated dataset on the Hub", an offline or
    unreachable hub a ConnectionError "Couldn't reach ...")."""
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    chain, seen = [], err
    while seen is not None and seen not in chain:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    text = " ".join(str(e) for e in chain)
    if any(isinstance(e, GatedRepoError) for e in chain) or "is a gated dataset" in text:
        return GATED
    if any(isinstance(e, ConnectionError) for e in chain) or "Couldn't reach" in text:
        return UNREACHABLE
    if any(isinstance(e, RepositoryNotFoundError) for e in chain) or "doesn't exist on the Hub" in text:
        return NOT_FOUND
    return f"hub error: {type(err).__name__}"


def load_local(path: str) -> list[dict]:
    """Records of a local json / jsonl / parquet file, in file order."""
    if not os.path.isfile(path):
        raise SourceError(f"--input {path}: no such file", "no such input file")
    lower = path.lower()
    if lower.endswith(".parquet"):
        return pq.read_table(path).to_pylist()
    if lower.endswith(".jsonl"):
        records = []
        with open(path, encoding="utf-8") as handle:
            for line_no, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise SourceError(f"{path}: line {line_no} is not valid JSON ({err.msg})") from err
        return records
    if lower.endswith(".json"):
        with open(path, encoding="utf-8") as handle:
            try:
                data = json.load(handle)
            except json.JSONDecodeError as err:
                raise SourceError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from err
        if isinstance(data, list):
            return data
        if isinstance(data, dict) and data and all(isinstance(v, list) for v in data.values()):
            columns = list(data)  # column-oriented json: {"problem": [...], "answer": [...]}
            lengths = {len(data[c]) for c in columns}
            if len(lengths) != 1:
                raise SourceError(f"{path}: columns have different lengths {sorted(lengths)}")
            return [{c: data[c][i] for c in columns} for i in range(lengths.pop())]
        raise SourceError(f"{path}: expected a JSON array of records (or an object of equal-length columns)")
    raise SourceError(f"--input {path}: unknown format; use .json, .jsonl or .parquet")


def load_hub(source: HubSource) -> list[dict]:
    """Records from the hub via ``datasets.load_dataset`` (needs network access, or a warm HF cache)."""
    import datasets  # imported here: a local --input run never needs it

    try:
        kwargs = {"data_files": list(source.data_files)} if source.data_files else {}
        dataset = datasets.load_dataset(source.repo, source.name, split=source.split, **kwargs)
    except Exception as err:  # network, auth (gated sets such as GPQA), unknown config/split
        raise SourceError(
            f"could not load {source.describe()} from the hub: {type(err).__name__}: {err}. "
            "Without hub access pass --input with a local json/jsonl/parquet copy in the source's schema; "
            "for gated datasets log in (huggingface-cli login) after accepting the terms on the hub.",
            hub_failure_reason(err),
        ) from err
    return [dict(record) for record in dataset]


def load_records(input_path: Optional[str], hub: "HubSource | tuple") -> tuple[list[dict], str]:
    """Records from ``input_path`` when given, else from the hub (several sources are concatenated in
    order); also returns a description of the origin."""
    if input_path:
        return load_local(input_path), input_path
    hubs = hub if isinstance(hub, tuple) else (hub,)
    records: list[dict] = []
    for source in hubs:
        records.extend(load_hub(source))
    return records, " + ".join(h.describe() for h in hubs)
