"""Multiple-choice answers (ARC-Challenge, GPQA, MMLU-Pro): which option label did the model pick?

Labels are an uppercase letter A-Z or a digit 1-9 (ARC-Challenge has rows labelled 1-4).
Accepted final-answer forms, the LAST one in the response (after ``</think>``) wins:

* ``\\boxed{C}``, ``\\boxed{\\text{C}}``, ``\\boxed{(C)}``, ``\\boxed{C. Paris}`` (lower case accepted inside a box)
* ``Answer: C``, ``The answer is (C)``, ``the correct answer is option C``, ``**Answer:** C``
* ``**C**`` / ``**(C)**`` (a bold label alone)
* a last line that is only the label: ``C``, ``(C)``, ``C.``

Only uppercase letters count outside a box ("the answer is a bit ..." is not option A).
All regexes are anchored on a literal and have no nested quantifiers: linear on any input.
"""

from __future__ import annotations

import re

from echorl_verl.rewards.extract import last_boxed, strip_thinking

_LABEL = r"([A-Z]|[1-9])(?![A-Za-z0-9])"
_ANSWER_PHRASE = re.compile(
    r"(?:[Aa]nswer|ANSWER)(?:\s+is)?\s*(?::|\bis\b)?[\s*:]{0,6}(?:option\s+|choice\s+)?[(\[]?\s{0,3}(?:\\text\{|\\textbf\{)?" + _LABEL
)
_BOLD = re.compile(r"\*\*\s{0,3}\(?" + r"([A-Z]|[1-9])" + r"\)?[.:]?\s{0,3}\*\*")
_ONLY_LABEL_LINE = re.compile(r"^\s*\(?([A-Z]|[1-9])\)?\.?\s*$")
_BOX_LABEL = re.compile(r"^\(?([A-Za-z]|[1-9])\)?(?:$|[.:)\s])")
_TEXT_WRAPPER = re.compile(r"\\(?:text|textbf|mathrm|mathbf|bf)\s*\{([^{}]*)\}")

#: Labels a ground truth may have.
VALID_LABELS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ123456789")


def _label_from_box(content: str) -> str | None:
    content = _TEXT_WRAPPER.sub(r"\1", content).replace("$", "").strip()
    m = _BOX_LABEL.match(content)
    return m.group(1).upper() if m else None


def extract_choice(response: str) -> str | None:
    """The option label the response ends with (see module docstring), or None."""
    text = strip_thinking(response)
    candidates: list[tuple[int, str]] = []  # (position, label)
    box_pos = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if box_pos >= 0:
        content = last_boxed(text)
        label = _label_from_box(content) if content is not None else None
        if label:
            candidates.append((box_pos, label))
    for pattern in (_ANSWER_PHRASE, _BOLD):
        last = None
        for last in pattern.finditer(text):
            pass
        if last is not None:
            candidates.append((last.start(), last.group(1).upper()))
    lines = text.rstrip().rsplit("\n", 1)
    m = _ONLY_LABEL_LINE.match(lines[-1]) if lines and len(lines[-1]) < 16 else None
    if m:
        candidates.append((len(text) - len(lines[-1]), m.group(1)))
    return max(candidates)[1] if candidates else None


def check_label(ground_truth: str) -> str:
    """The normalised label of a ground truth; ValueError if it is not one (the DATA is wrong)."""
    label = str(ground_truth).strip().strip("()").upper()
    if label not in VALID_LABELS:
        raise ValueError(
            f"multiple-choice ground truth must be one option label (A-Z or 1-9), got {ground_truth!r}; "
            "fix reward_model.ground_truth of this row in the data file"
        )
    return label


def score_choice(response: str, ground_truth: str) -> tuple[bool, str]:
    """``(correct, pred)``: pred is the extracted label or "" when the response gives none."""
    gold = check_label(ground_truth)
    pred = extract_choice(response)
    return pred == gold, pred or ""
