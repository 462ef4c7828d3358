"""The paper's evaluation suite: which data_source is which table column, in-distribution or not.

data_source values are those data_prep/ writes (data_prep/README.md) and shared/data/benchmarks/ holds.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Benchmark:
    source: str  # verl data_source
    label: str  # table column
    group: str  # "ID" (math, in-distribution) or "OOD"


SUITE: tuple[Benchmark, ...] = (
    Benchmark("aime", "AIME24", "ID"),
    Benchmark("aime25", "AIME25", "ID"),
    Benchmark("amc", "AMC23", "ID"),
    Benchmark("math", "MATH-500", "ID"),
    Benchmark("minerva", "Minerva", "ID"),
    Benchmark("olympiad_bench", "Olympiad", "ID"),
    Benchmark("arc_c", "ARC-C", "OOD"),
    Benchmark("gpqa", "GPQA-D", "OOD"),
    Benchmark("mmlu_pro", "MMLU-Pro", "OOD"),
)
BY_SOURCE = {b.source: b for b in SUITE}
GROUPS = ("ID", "OOD")


def group_sources(group: str) -> list[str]:
    """data_sources of one group, in column order."""
    return [b.source for b in SUITE if b.group == group]
