"""Math sets: the training sets (OpenR1-46k, DAPO-17k, MATH-lighteval, DeepScaleR) and the evaluation suite.

Each set is a `MathSet`: where it lives on the hub and how one source record gives (problem, ground
truth); its ``data_source`` and default repeat count come from echorl_verl/data/catalog.py.
`build_math_rows` turns records into rows; row i of the source is problem i (after de-duplication) and
each problem is written ``repeat`` times in a row, all copies with the same ``extra_info.index``
(the convention of shared/data/benchmarks/math_eval_suite.parquet: one sample per row gives avg@K).
A training set skips (and counts) the records it cannot use, e.g. DeepScaleR's rows without an answer;
an evaluation set stops at its first bad record (see echorl_verl/data/outcome.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from echorl_verl.data import catalog
from echorl_verl.data.outcome import BuildLog, Skip, collect_rows
from echorl_verl.data.rows import RowError, as_text, field, list_field, make_row, text_field
from echorl_verl.data.sources import HubSource
from echorl_verl.data.templates import math_prompt

Extractor = Callable[[dict, int, str], "tuple[str, str]"]

# DAPO-Math-17k wraps every problem in this instruction (its own "Answer:" format); we keep the problem only
# and apply our template, so that every training set is prompted the same way.
DAPO_PREFIX = (
    "Solve the following math problem step by step. The last line of your response should be of the form "
    "Answer: $Answer (without quotes) where $Answer is the answer to the problem.\n\n"
)
DAPO_SUFFIX = '\n\nRemember to put your answer on its own line after "Answer:".'


def last_user_turn(record: dict, row: int, src: str) -> str:
    """The content of the last user turn of a chat-list ``prompt`` column (LUFFY / verl layout)."""
    turns = list_field(record, row, "prompt", src)
    users = [t for t in turns if isinstance(t, dict) and t.get("role") == "user"]
    if not users:
        raise RowError(row, "prompt", "no user turn in the chat list", src)
    return as_text(users[-1].get("content"), row, "prompt[-1].content", src)


def ground_truth_of(record: dict, row: int, src: str) -> str:
    """``reward_model.ground_truth`` of a record already in verl's layout."""
    reward = field(record, row, "reward_model", src)
    if not isinstance(reward, dict) or reward.get("ground_truth") is None:
        raise RowError(row, "reward_model.ground_truth", "missing; fix the input file", src)
    return as_text(reward["ground_truth"], row, "reward_model.ground_truth", src)


def extract_openr1(record: dict, row: int, src: str) -> tuple[str, str]:
    """Elliott/Openr1-Math-46k-8192 (LUFFY layout: prompt=[system, user], target, reward_model, ...)."""
    return last_user_turn(record, row, src), ground_truth_of(record, row, src)


def extract_dapo(record: dict, row: int, src: str) -> tuple[str, str]:
    """BytedTsinghua-SIA/DAPO-Math-17k: the user turn is DAPO_PREFIX + problem + DAPO_SUFFIX."""
    text = last_user_turn(record, row, src)
    if not (text.startswith(DAPO_PREFIX) and text.endswith(DAPO_SUFFIX)):
        raise RowError(row, "prompt", "not in DAPO-Math-17k's 'Solve the following math problem...' wrapper", src)
    problem = text[len(DAPO_PREFIX) : -len(DAPO_SUFFIX)]
    return as_text(problem, row, "prompt (problem inside the wrapper)", src), ground_truth_of(record, row, src)


def boxed_answer(solution: str, row: int, key: str, src: str) -> str:
    """The content of the last \\boxed{} (or \\fbox{}) of a written solution, found with verl's own helpers."""
    from verl.utils.reward_score.math_reward import last_boxed_only_string, remove_boxed

    boxed = last_boxed_only_string(solution)
    if boxed is None:
        raise RowError(row, key, "no \\boxed{...} answer in the solution", src)
    try:
        answer = remove_boxed(boxed)
    except AssertionError as err:
        raise RowError(row, key, f"unbalanced \\boxed in the solution: {boxed[:80]!r}", src) from err
    return as_text(answer, row, key + " (\\boxed content)", src)


def extract_lighteval(record: dict, row: int, src: str) -> tuple[str, str]:
    """DigitalLearningGmbH/MATH-lighteval (problem, level, solution, type): answer = last \\boxed{} of solution."""
    problem = text_field(record, row, "problem", src)
    return problem, boxed_answer(text_field(record, row, "solution", src), row, "solution", src)


def columns(problem_key: str, answer_key: str) -> Extractor:
    """Extractor for plain (problem, answer) columns; a list answer (OlympiadBench) is joined with ', '."""

    def extract(record: dict, row: int, src: str) -> tuple[str, str]:
        problem = text_field(record, row, problem_key, src)
        answer = field(record, row, answer_key, src)
        if hasattr(answer, "tolist") and not isinstance(answer, (str, bytes)):
            answer = answer.tolist()
        if isinstance(answer, (list, tuple)):
            parts = [as_text(a, row, answer_key, src) for a in answer]
            if not parts:
                raise RowError(row, answer_key, "empty list; every row needs an answer", src)
            answer = ", ".join(parts)
        return problem, as_text(answer, row, answer_key, src)

    extract.keys = (problem_key, answer_key)  # type: ignore[attr-defined]
    return extract


@dataclass(frozen=True)
class MathSet:
    key: str  # CLI name and output file stem
    data_source: str  # written to every row; the reward functions dispatch on it
    hub: HubSource
    extract: Extractor
    split: str  # extra_info.split
    repeat: int = 1
    dedup: bool = False  # drop repeated problems (first kept)
    note: str = ""


def math_set(name: str, hub: HubSource, extract: Extractor, split: str, **kw) -> MathSet:
    """The loader of catalog source ``name``: data_source and repeat are the catalog's."""
    declared = catalog.source(name)
    return MathSet(name, declared.data_source, hub, extract, split, declared.repeat, **kw)


_SETS = [
    math_set("openr1", HubSource("Elliott/Openr1-Math-46k-8192", "train"), extract_openr1, "train",
             note="the EchoRL authors' training set"),
    math_set("dapo", HubSource("BytedTsinghua-SIA/DAPO-Math-17k", "train"), extract_dapo, "train", dedup=True,
             note="the hub copy repeats each problem; de-duplicated"),
    math_set("math_lighteval", HubSource("DigitalLearningGmbH/MATH-lighteval", "train"), extract_lighteval, "train"),
    math_set("deepscaler", HubSource("agentica-org/DeepScaleR-Preview-Dataset", "train"), columns("problem", "answer"),
             "train", note="a few rows have no answer (hub discussion): skipped and counted"),
    # split "default" and the repeat counts follow shared/data/benchmarks/math_eval_suite.parquet.
    math_set("aime", HubSource("HuggingFaceH4/aime_2024", "train"), columns("problem", "answer"), "default"),
    math_set("aime25", HubSource("math-ai/aime25", "test"), columns("problem", "answer"), "default"),
    math_set("amc", HubSource("AI-MO/aimo-validation-amc", "train"), columns("problem", "answer"), "default",
             note="AMC 2022+2023, 83 problems, answers as floats ('142.0')"),
    math_set("math", HubSource("HuggingFaceH4/MATH-500", "test"), columns("problem", "answer"), "default"),
    math_set("minerva", HubSource("math-ai/minervamath", "test"), columns("question", "answer"), "default"),
    math_set("olympiad_bench", HubSource("Hothan/OlympiadBench", "train", "OE_TO_maths_en_COMP"),
             columns("question", "final_answer"), "default", note="675 English open-ended competition maths"),
]
TRAIN_SETS = {s.key: s for s in _SETS if catalog.source(s.key).role == catalog.TRAIN}
EVAL_SETS = {s.key: s for s in _SETS if catalog.source(s.key).role != catalog.TRAIN}


def with_columns(spec: MathSet, problem_key: Optional[str], answer_key: Optional[str]) -> MathSet:
    """``spec`` reading other column names (for a local file whose columns differ from the hub's)."""
    if not (problem_key or answer_key):
        return spec
    if not hasattr(spec.extract, "keys"):
        raise ValueError(f"{spec.key}: --problem_key/--answer_key apply only to plain-column sets")
    p, a = spec.extract.keys  # type: ignore[attr-defined]
    return MathSet(spec.key, spec.data_source, spec.hub, columns(problem_key or p, answer_key or a),
                   spec.split, spec.repeat, spec.dedup, spec.note)


def build_math_rows(
    records: list[dict], spec: MathSet, template: str = "echo", repeat: Optional[int] = None, src: str = ""
) -> tuple[list[dict], BuildLog]:
    """Rows for ``records`` (source order) and what was skipped.

    Training sets skip unusable records (counted by field); evaluation sets raise RowError at the first
    bad record (row index, field). Duplicates of a ``dedup`` set are skipped and counted.
    """
    repeat = spec.repeat if repeat is None else repeat
    if repeat < 1:
        raise ValueError(f"--repeat must be >= 1, got {repeat}")
    seen: set[str] = set()

    def make(record: dict, row: int, kept: int) -> list[dict]:
        problem, truth = spec.extract(record, row, src)
        if spec.dedup:
            if problem in seen:
                raise Skip("duplicate problem (first copy kept)")
            seen.add(problem)
        prompt = math_prompt(problem, template)
        return [make_row(spec.data_source, prompt, "math", truth, kept, spec.split) for _ in range(repeat)]

    log = BuildLog(spec.key)
    lenient = catalog.source(spec.key).role == catalog.TRAIN
    return collect_rows(records, log, lenient, make, src), log
