"""verl reward for the arithmetic task: the response's last line must be `Answer: <number>`.

Why: the two-shot prompt (task.py) asks for exactly that last line, so the reward checks format and value
together: score 1 when the last non-empty line is `Answer: N` (the word in any case, N an integer or decimal,
thousands commas allowed) and N equals the ground truth; else 0. An answer followed by more text, or given
only in an earlier line, scores 0: the model has to stop after its answer. Dispatched from
echorl_verl.rewards (data_source "echorl/arithmetic"), or used alone:
`reward.custom_reward_function.path=pkg://echorl_verl.smollm2.reward`.

Model output never makes this raise; a malformed ground truth or another data_source does (ValueError).
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from echorl_verl.smollm2 import DATA_SOURCE

_ANSWER = re.compile(r"answer:\s*(-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?)", re.IGNORECASE)


def parse_answer(response) -> str | None:
    """The number of the last non-empty line when that line is `Answer: N` (commas removed), else None."""
    text = response.decode("utf-8", "replace") if isinstance(response, bytes) else str(response or "")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    m = _ANSWER.fullmatch(lines[-1]) if lines else None
    return m.group(1).replace(",", "") if m else None


def _number(ground_truth) -> Decimal:
    try:
        return Decimal(str(ground_truth).strip())
    except InvalidOperation:
        raise ValueError(f"{DATA_SOURCE} ground_truth must be a number, got {ground_truth!r}; "
                         "rebuild the data with python -m echorl_verl.smollm2.data") from None


def compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs) -> dict:
    """{"score": 1.0/0.0, "acc": same, "pred": the parsed number or ""}."""
    if data_source != DATA_SOURCE:
        raise ValueError(f"echorl_verl.smollm2.reward scores only data_source={DATA_SOURCE!r}, got {data_source!r}; "
                         "use pkg://echorl_verl.rewards, which dispatches on data_source")
    gold = _number(ground_truth)
    pred = parse_answer(solution_str)
    correct = pred is not None and Decimal(pred) == gold
    return {"score": float(correct), "acc": float(correct), "pred": pred or ""}
