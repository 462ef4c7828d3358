"""The paper's evaluation suite: which data_source is which table column, in-distribution or not.

Derived from echorl_verl/data/catalog.py (the sets declared with an ID/OOD group, in the catalog's
order), where each source is declared once; data_source values are those data_prep/ writes and
shared/data/benchmarks/ holds.
"""

from __future__ import annotations

from dataclasses import dataclass

from echorl_verl.data import catalog


@dataclass(frozen=True)
class Benchmark:
    source: str  # verl data_source
    label: str  # table column
    group: str  # "ID" (math, in-distribution) or "OOD"


SUITE: tuple[Benchmark, ...] = tuple(Benchmark(s.data_source, s.label, s.group) for s in catalog.select(suite=True))
BY_SOURCE = {b.source: b for b in SUITE}
GROUPS = catalog.GROUPS


def group_sources(group: str) -> list[str]:
    """data_sources of one group, in column order."""
    return [b.source for b in SUITE if b.group == group]
