"""verl reward function for the addition task.

Use with `reward.custom_reward_function.path=pkg://echorl_verl.toy.reward`
`reward.custom_reward_function.name=compute_score`.

Only the FIRST `answer:` line counts: tiny models often keep writing after the answer
(`answer: 90answer: 9`), and scoring a later match would reward guessing twice.
"""

from __future__ import annotations

import re

from . import DATA_SOURCE

_ANSWER = re.compile(r"answer:\s*(-?\d+)")


def extract_answer(solution_str: str) -> str | None:
    """The digits right after the first `answer:`, or None when there is none."""
    m = _ANSWER.search(solution_str)
    return m.group(1) if m else None


def compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs) -> dict:
    """Score one response: {"score": 1.0 or 0.0, "acc": same as bool}.

    Raises ValueError for another data_source: this function is the task's own reward, and a silent
    0 for a foreign data set would look like a policy that never learns.
    """
    if data_source != DATA_SOURCE:
        raise ValueError(
            f"echorl_verl.toy.reward.compute_score scores only data_source={DATA_SOURCE!r}, got {data_source!r}; "
            "point reward.custom_reward_function at the reward of that data set"
        )
    pred = extract_answer(solution_str)
    correct = pred is not None and pred.lstrip("0") == str(ground_truth).strip().lstrip("0")
    return {"score": float(correct), "acc": bool(correct)}
