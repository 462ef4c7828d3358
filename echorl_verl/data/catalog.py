"""Every data source of the project, declared once: the table the rest is derived from.

Why: the list of sets used to be written in six places (the data_prep loaders, the reward dispatch, the
report's suite, the recipes' validation and evaluation lists, data_prep/all.sh) and they drifted. Now
each source is one `Source` row below, and
    echorl_verl/data/{math,choice,code}_sets.py   take data_source and repeat from here (and refuse a set
                                                  that is not declared here),
    echorl_verl/rewards                           dispatch on family (math / choice / code),
    echorl_verl/report/suite.py                   builds the paper's table (label, ID/OOD group) from it,
    data_prep/all.sh and the recipes              read it through the command line below.
Importing this module is cheap (standard library only), so rewards and shell scripts can use it.
The CPU tasks built by code (the toy's echorl/addition, SmolLM2's echorl/arithmetic) have no data_prep loader
and are not rows here: echorl_verl/rewards declares them with their own scorers (TASK_REWARDS).

Adding a benchmark: one row here; if its file format is new, also its loader in the family module
(tests/test_catalog.py names what is missing).

Command line (names are space-separated, in table order)::

    python -m echorl_verl.data.catalog sets --role val        # in-training validation sets
    python -m echorl_verl.data.catalog sets --role train      # training sets (--role may repeat)
    python -m echorl_verl.data.catalog sets --suite           # the paper's table: ID + OOD sets
    python -m echorl_verl.data.catalog plan                   # script:set pairs for data_prep/all.sh
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Optional, Sequence

TRAIN, VAL, EVAL = "train", "val", "eval"
ROLES = (TRAIN, VAL, EVAL)  # val: validated during training and reported; eval: evaluation only
FAMILIES = ("math", "choice", "code")  # each has its data_prep script and its scorer in echorl_verl.rewards
GROUPS = ("ID", "OOD")  # the report's column groups (in-distribution math, out-of-distribution)


@dataclass(frozen=True)
class Source:
    """One data source.

    name         set name: data_prep's --dataset, the output file stem (<name>.parquet)
    data_source  the value written to every row's data_source; the reward function dispatches on it
    family       "math" (math-verify), "choice" (answer letter) or "code" (sandboxed tests)
    role         "train", "val" (in-training validation) or "eval" (evaluation only)
    label        the report's column for it ("" for training sets)
    group        "ID" / "OOD" for the paper's table; "" for sets outside it
    repeat       rows per problem in the written file (avg@K from one sample per row)
    """

    name: str
    data_source: str
    family: str
    role: str
    label: str = ""
    group: str = ""
    repeat: int = 1

    @property
    def script(self) -> str:
        """The data_prep/ script that builds it (without .py)."""
        if self.family == "math":
            return "math_train" if self.role == TRAIN else "math_eval"
        return {"choice": "choice", "code": "code_bench"}[self.family]


SOURCES: tuple[Source, ...] = (
    # math training sets
    Source("openr1", "Elliott/Openr1-Math-46k-8192", "math", TRAIN),  # the EchoRL authors' set
    Source("dapo", "BytedTsinghua-SIA/DAPO-Math-17k", "math", TRAIN),
    Source("math_lighteval", "DigitalLearningGmbH/MATH-lighteval", "math", TRAIN),
    Source("deepscaler", "agentica-org/DeepScaleR-Preview-Dataset", "math", TRAIN),
    # the paper's suite (LUFFY's files): in-distribution math, then out-of-distribution multiple choice
    Source("aime", "aime", "math", VAL, "AIME24", "ID", repeat=32),
    Source("aime25", "aime25", "math", VAL, "AIME25", "ID", repeat=32),
    Source("amc", "amc", "math", VAL, "AMC23", "ID", repeat=32),
    Source("math", "math", "math", VAL, "MATH-500", "ID"),
    Source("minerva", "minerva", "math", VAL, "Minerva", "ID"),
    Source("olympiad_bench", "olympiad_bench", "math", VAL, "Olympiad", "ID"),
    Source("arc_c", "arc_c", "choice", VAL, "ARC-C", "OOD"),
    Source("gpqa", "gpqa", "choice", VAL, "GPQA-D", "OOD"),
    Source("mmlu_pro", "mmlu_pro", "choice", EVAL, "MMLU-Pro", "OOD"),  # 12k rows: too large to validate in training
    # code
    Source("humaneval", "humaneval", "code", EVAL, "HumanEval"),
    Source("humanevalplus", "humanevalplus", "code", EVAL, "HumanEval+"),
    Source("mbpp", "mbpp", "code", EVAL, "MBPP"),
    Source("mbppplus", "mbppplus", "code", EVAL, "MBPP+"),
    Source("livecodebench", "livecodebench", "code", EVAL, "LiveCodeBench"),
    Source("deepcoder", "deepcoder", "code", TRAIN),
)


class CatalogError(ValueError):
    """The table above breaks one of its rules (the message names the row and the rule)."""


def check(sources: Sequence[Source]) -> None:
    """The rules every row keeps; run at import, so a bad edit fails at once, wherever it is imported."""
    for field in ("name", "data_source"):
        values = [getattr(s, field) for s in sources]
        dupes = sorted({v for v in values if values.count(v) > 1})
        if dupes:
            raise CatalogError(f"{field} must be unique; repeated: {dupes}")
    for s in sources:
        where = f"catalog source {s.name!r}"
        if s.family not in FAMILIES:
            raise CatalogError(f"{where}: family {s.family!r} is not one of {FAMILIES}")
        if s.role not in ROLES:
            raise CatalogError(f"{where}: role {s.role!r} is not one of {ROLES}")
        if s.group not in GROUPS + ("",):
            raise CatalogError(f"{where}: group {s.group!r} is not one of {GROUPS} (or '' for none)")
        if s.role == TRAIN and (s.label or s.group):
            raise CatalogError(f"{where}: a training set has no report label or group")
        if s.role != TRAIN and not s.label:
            raise CatalogError(f"{where}: an evaluation set needs a label (its report column)")
        if s.repeat < 1:
            raise CatalogError(f"{where}: repeat must be >= 1, got {s.repeat}")


check(SOURCES)
BY_NAME = {s.name: s for s in SOURCES}


def source(name: str) -> Source:
    """The source called ``name``; KeyError naming the known ones (and where to add a new one)."""
    if name not in BY_NAME:
        raise KeyError(f"{name!r} is not in echorl_verl/data/catalog.py (known: {', '.join(BY_NAME)}); declare it there")
    return BY_NAME[name]


def select(roles: Sequence[str] = (), families: Sequence[str] = (), suite: bool = False) -> list[Source]:
    """Sources in table order, filtered by role(s), family(ies) and, with ``suite``, the paper's table."""
    return [s for s in SOURCES
            if (not roles or s.role in roles) and (not families or s.family in families) and (s.group or not suite)]


def data_sources(family: str) -> frozenset[str]:
    """data_source values of one family (what its scorer in echorl_verl.rewards receives)."""
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}: one of {FAMILIES}")
    return frozenset(s.data_source for s in SOURCES if s.family == family)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m echorl_verl.data.catalog", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sets = sub.add_parser("sets", help="set names, space-separated, in table order")
    sets.add_argument("--role", action="append", choices=ROLES, default=[], help="keep this role (repeatable)")
    sets.add_argument("--family", action="append", choices=FAMILIES, default=[], help="keep this family (repeatable)")
    sets.add_argument("--suite", action="store_true", help="only the paper's table (sets with an ID/OOD group)")
    sub.add_parser("plan", help="script:set pairs for data_prep/all.sh, space-separated, in build order")
    args = parser.parse_args(argv)
    if args.command == "plan":
        print(" ".join(f"{s.script}:{s.name}" for s in SOURCES))
        return 0
    chosen = select(args.role, args.family, args.suite)
    if not chosen:
        print("error: no set matches the filters", file=sys.stderr)
        return 1
    print(" ".join(s.name for s in chosen))
    return 0


if __name__ == "__main__":
    sys.exit(main())
