"""Multiple-choice sets (out-of-distribution): ARC-Challenge, GPQA-Diamond, MMLU-Pro. The answer is a letter.

Each source record gives (question, options, index of the right option). Options are lettered A, B, C, ...
by position (ARC's numeric labels "1".."4" become A..D), optionally shuffled first with a seeded RNG that
depends only on (seed, set, row), so the output is reproducible and the right answer is spread over the
letters (GPQA's source always lists the correct answer first). The user turn follows LUFFY's files:
arc_c.parquet lists the options after the question; gpqa_diamond.parquet puts the "ANSWER: $LETTER"
instruction first (used for MMLU-Pro too, with its up to 10 letters A-J).
MMLU-Pro pads questions with fewer than 10 options with "N/A" options; they are dropped as the official
preprocessing does (TIGER-AI-Lab/MMLU-Pro evaluate_from_api.py, `preprocess`), and the answer moves to
the right option's new letter (the official script keeps the old letter, which is only right when the
padding comes after the answer). data_source values come from echorl_verl/data/catalog.py.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass
from typing import Callable, Optional

from echorl_verl.data import catalog
from echorl_verl.data.outcome import BuildLog, collect_rows
from echorl_verl.data.rows import RowError, as_text, field, list_field, make_row, text_field
from echorl_verl.data.sources import HubSource
from echorl_verl.data.templates import choice_user_text, math_prompt

MAX_OPTIONS = 10  # A-J (MMLU-Pro)
MMLU_PRO_PAD = "N/A"  # the padding option of MMLU-Pro questions with fewer than 10 options


def extract_arc(record: dict, row: int, src: str) -> tuple[str, list[str], int]:
    """allenai/ai2_arc: question, choices {text: [...], label: [...]}, answerKey (a label)."""
    question = text_field(record, row, "question", src)
    choices = field(record, row, "choices", src)
    if not isinstance(choices, dict):
        raise RowError(row, "choices", "expected {text: [...], label: [...]}", src)
    texts = [as_text(t, row, "choices.text", src) for t in list_field(choices, row, "text", src, min_len=2)]
    labels = [as_text(x, row, "choices.label", src) for x in list_field(choices, row, "label", src, min_len=2)]
    if len(texts) != len(labels):
        raise RowError(row, "choices", f"{len(texts)} texts but {len(labels)} labels", src)
    key = text_field(record, row, "answerKey", src)
    if key not in labels:
        raise RowError(row, "answerKey", f"{key!r} is not one of the labels {labels}", src)
    return question, texts, labels.index(key)


def extract_gpqa(record: dict, row: int, src: str) -> tuple[str, list[str], int]:
    """Idavidrein/gpqa: Question, Correct Answer, Incorrect Answer 1..3 (correct listed first: shuffle!)."""
    keys = ["Correct Answer", "Incorrect Answer 1", "Incorrect Answer 2", "Incorrect Answer 3"]
    question = text_field(record, row, "Question", src)
    return question, [text_field(record, row, k, src) for k in keys], 0


def extract_mmlu_pro(record: dict, row: int, src: str) -> tuple[str, list[str], int]:
    """TIGER-Lab/MMLU-Pro: question, options (up to 10, "N/A"-padded), answer (a letter), answer_index."""
    question = text_field(record, row, "question", src)
    options = [as_text(o, row, "options", src) for o in list_field(record, row, "options", src, min_len=2)]
    answer = text_field(record, row, "answer", src).strip()
    if len(answer) != 1 or answer not in string.ascii_uppercase[: len(options)]:
        raise RowError(row, "answer", f"{answer!r} is not a letter among the {len(options)} options", src)
    index = string.ascii_uppercase.index(answer)
    if "answer_index" in record and record["answer_index"] is not None and int(record["answer_index"]) != index:
        raise RowError(row, "answer_index", f"{record['answer_index']} disagrees with answer {answer!r}", src)
    return question, options, index


def drop_padding(options: list[str], correct: int, pad: str, row: int, src: str) -> tuple[list[str], int]:
    """``options`` without those equal to ``pad`` and the right option's new position.

    RowError when the right option is itself padding or fewer than 2 options remain.
    """
    if options[correct].strip() == pad:
        raise RowError(row, "answer", f"points at a {pad!r} padding option", src)
    kept = [i for i, option in enumerate(options) if option.strip() != pad]
    if len(kept) < 2:
        raise RowError(row, "options", f"fewer than 2 options once the {pad!r} padding is dropped", src)
    return [options[i] for i in kept], kept.index(correct)


@dataclass(frozen=True)
class ChoiceSet:
    key: str
    data_source: str
    hub: HubSource
    extract: Callable[[dict, int, str], tuple]
    instructed: bool  # put the "ANSWER: $LETTER" instruction first (gpqa layout) or not (arc_c layout)
    shuffle_seed: Optional[int] = None  # default seed; None = keep the source's order
    pad: Optional[str] = None  # an option text that is padding, not an option (MMLU-Pro's "N/A"): dropped


def choice_set(name: str, hub: HubSource, extract: Callable, instructed: bool, **kw) -> ChoiceSet:
    """The loader of catalog source ``name`` (its data_source is the catalog's)."""
    return ChoiceSet(name, catalog.source(name).data_source, hub, extract, instructed, **kw)


CHOICE_SETS = {
    s.key: s
    for s in [
        choice_set("arc_c", HubSource("allenai/ai2_arc", "test", "ARC-Challenge"), extract_arc, False),
        choice_set("gpqa", HubSource("Idavidrein/gpqa", "train", "gpqa_diamond"), extract_gpqa, True, shuffle_seed=0),
        choice_set("mmlu_pro", HubSource("TIGER-Lab/MMLU-Pro", "test"), extract_mmlu_pro, True, pad=MMLU_PRO_PAD),
    ]
}


def shuffled(options: list[str], correct: int, seed: Optional[int], salt: str) -> tuple[list[str], int]:
    """Options in a seeded random order and the new position of the correct one (identity when seed is None)."""
    if seed is None:
        return options, correct
    order = list(range(len(options)))
    random.Random(f"{seed}:{salt}").shuffle(order)  # str seeds hash with sha512: stable across runs
    return [options[i] for i in order], order.index(correct)


def build_choice_rows(
    records: list[dict], spec: ChoiceSet, template: str = "echo", seed: Optional[int] = None, src: str = ""
) -> tuple[list[dict], BuildLog]:
    """Rows for ``records`` in source order (ground truth: the right option's letter) and the build's log."""
    log = BuildLog(spec.key)

    def make(record: dict, row: int, kept: int) -> list[dict]:
        question, options, correct = spec.extract(record, row, src)
        if spec.pad is not None and any(option.strip() == spec.pad for option in options):
            options, correct = drop_padding(options, correct, spec.pad, row, src)
            log.normalise(f"{spec.pad!r} padding options dropped")
        if len(options) > MAX_OPTIONS:
            raise RowError(row, "options", f"{len(options)} options; at most {MAX_OPTIONS} (A-J) supported", src)
        options, correct = shuffled(options, correct, seed, f"{spec.key}:{row}")
        letters = list(string.ascii_uppercase[: len(options)])
        text = choice_user_text(question, letters, options, spec.instructed)
        return [make_row(spec.data_source, math_prompt(text, template), "choice", letters[correct], kept, "default")]

    lenient = catalog.source(spec.key).role == catalog.TRAIN
    return collect_rows(records, log, lenient, make, src), log
