"""EchoRL's reward function for verl: ``compute_score`` dispatching on ``data_source``.

Use in a verl 0.9.1 config::

    reward.custom_reward_function.path=pkg://echorl_verl.rewards
    reward.custom_reward_function.name=compute_score
    # optional, passed as keyword arguments (verl's get_custom_reward_fn binds reward_kwargs to every call):
    +reward.custom_reward_function.reward_kwargs.sandbox_fusion_url=http://host:8080/run_code
    +reward.custom_reward_function.reward_kwargs.math_format=think    # the EchoRL/LUFFY authors' math reward

Math formats (``math_format``): ``boxed`` (default) compares the last ``\\boxed{}`` after any ``</think>``;
``think`` is the authors' reward (LUFFY's reward_impl_version=3, which the EchoRL authors forked): the
response gets ``<think>\\n`` in front, one without ``</think>`` scores 0, and math-verify's default parse
runs on the text after the first ``</think>`` (see ``math_answer.score_math_think``).

Every call returns the same keys (verl's reward loop builds one array per key from the FIRST
result's keys, so a key missing in a later row would raise KeyError there)::

    {"score": float, "acc": float (0.0/1.0), "pred": str, "error": str, "infra_error": float (0.0/1.0)}

``pred`` is the extracted answer (boxed content / option label; "" for code, where it would be
a whole program), which verl's validation uses for maj@N. ``error`` is "" or why the scorer
itself could not decide (math check timed out, sandbox unavailable); such rows score 0.
``infra_error`` is 1.0 when the reward could not be computed at all (the code sandbox could not run
the program): counted, and past a bound the run stops (``infra.py``; ``max_infra_errors``).

Model output can never make this raise. Bad DATA does: an unknown ``data_source`` or a
malformed ground truth raises ValueError naming what is wrong (so does an unknown ``math_format``).

Which data_source is which family (math / choice / code) is declared once, in
echorl_verl/data/catalog.py; the CPU tasks built by code score themselves (``TASK_REWARDS``): the toy's
``echorl/addition`` by echorl_verl.toy.reward, SmolLM2's ``echorl/arithmetic`` by echorl_verl.smollm2.reward.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

from echorl_verl.data.catalog import data_sources

MATH_SOURCES = data_sources("math")
CHOICE_SOURCES = data_sources("choice")
CODE_SOURCES = data_sources("code")
#: the CPU tasks built by code (not data_prep sets), each scored by its own module, imported only when needed
TASK_REWARDS = {"echorl/addition": "echorl_verl.toy.reward", "echorl/arithmetic": "echorl_verl.smollm2.reward"}
TOY_SOURCES = frozenset(TASK_REWARDS)
KNOWN_DATA_SOURCES = MATH_SOURCES | CHOICE_SOURCES | CODE_SOURCES | TOY_SOURCES
RESULT_KEYS = ("score", "acc", "pred", "error", "infra_error")
#: ``math_format`` values: the default boxed-answer check, or the authors' </think> + math-verify reward
MATH_FORMATS = ("boxed", "think")

__all__ = ["compute_score", "KNOWN_DATA_SOURCES", "MATH_FORMATS", "RESULT_KEYS", "math_golds"]


#: ``pred`` is cut to this many characters (it is kept per row in verl's batch and logs)
PRED_CHARS = 200


def _result(correct: bool, pred: str = "", error: str = "", infra_error: bool = False) -> dict:
    # lone surrogates (decoded garbage) would break a UTF-8 log writer downstream
    pred = pred[:PRED_CHARS].encode("utf-8", "replace").decode("utf-8")
    return {"score": float(correct), "acc": float(correct), "pred": pred, "error": error,
            "infra_error": float(infra_error)}


def math_golds(ground_truth: Any) -> list[str]:
    """Ground-truth answers of a math row as a non-empty list of strings.

    Accepts a string, a number, a dict with ``target`` (MATH-lighteval's {question, target}),
    or a list/tuple/array of those (any of them counts as correct). ValueError otherwise.
    """
    gt = ground_truth
    if isinstance(gt, dict):
        if "target" not in gt:
            raise ValueError(
                f"math ground_truth is a dict without 'target' (keys: {sorted(gt)}); "
                "write the answer string, or {'question': ..., 'target': answer}"
            )
        gt = gt["target"]
    if hasattr(gt, "tolist") and not isinstance(gt, str):
        gt = gt.tolist()
    items = list(gt) if isinstance(gt, (list, tuple)) else [gt]
    golds = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, (str, int, float)):
            raise ValueError(f"math ground_truth must be a string or a list of strings, got {ground_truth!r}")
        text = str(item).strip()
        if text:
            golds.append(text)
    if not golds:
        raise ValueError(f"math ground_truth is empty ({ground_truth!r}); every row needs an answer")
    return golds


def _as_text(solution_str: Any) -> str:
    if isinstance(solution_str, bytes):
        return solution_str.decode("utf-8", "replace")
    return solution_str if isinstance(solution_str, str) else ("" if solution_str is None else str(solution_str))


def _score_toy(data_source, solution_str, ground_truth, extra_info, **kwargs) -> dict:
    module = TASK_REWARDS[data_source]
    if importlib.util.find_spec(module.rsplit(".", 1)[0]) is None or importlib.util.find_spec(module) is None:
        raise ValueError(f"data_source {data_source!r} is scored by {module}, which is not installed")
    scorer = importlib.import_module(module)
    out = scorer.compute_score(data_source, solution_str, ground_truth, extra_info, **kwargs)
    score = float(out["score"] if isinstance(out, dict) else out)
    acc = float(out.get("acc", score > 0) if isinstance(out, dict) else score > 0)
    return {"score": score, "acc": acc, "pred": str(out.get("pred", "")) if isinstance(out, dict) else "", "error": "",
            "infra_error": 0.0}


def _score_code(solution_str: str, ground_truth: Any, extra_info: Any, kwargs: dict) -> dict:
    from echorl_verl.rewards.code_sandbox import runner_for
    from echorl_verl.rewards.code_score import score_code
    from echorl_verl.rewards.infra import MAX_INFRA_ERRORS, count_call

    info = extra_info if isinstance(extra_info, dict) else {}
    url = kwargs.get("sandbox_fusion_url") or info.get("sandbox_fusion_url")
    runner = runner_for(url, int(kwargs.get("memory_limit_mb", 1024)))
    passed, _detail, error = score_code(solution_str, ground_truth, runner=runner)
    count_call(error, int(kwargs.get("max_infra_errors", MAX_INFRA_ERRORS)))  # raises past the bound
    return _result(passed, "", error, infra_error=bool(error))


def compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs) -> dict:
    """Score one response; see the module docstring for the returned keys.

    Args:
        data_source: one of ``KNOWN_DATA_SOURCES``.
        solution_str: the decoded response (anything; non-strings are converted).
        ground_truth: math: str | number | {"target": ...} | list of those; multiple choice: a
            label (A-Z or 1-9); code: the dict/JSON described in ``code_score``.
        extra_info: the row's extra_info; ``sandbox_fusion_url`` is read from it for code.
        kwargs: ``sandbox_fusion_url``, ``memory_limit_mb``, ``max_infra_errors`` (code), ``math_timeout_s`` (math,
            default 10 s), ``math_format`` (math: "boxed" or "think", see the module docstring); others
            (verl's ``reward_router_address``...) are ignored.
    """
    data_source = str(data_source)
    text = _as_text(solution_str)
    math_format = kwargs.get("math_format", "boxed")
    if math_format not in MATH_FORMATS:
        raise ValueError(f"math_format={math_format!r}: choose one of {', '.join(MATH_FORMATS)} "
                         "(+reward.custom_reward_function.reward_kwargs.math_format=...)")
    if data_source in MATH_SOURCES:
        from echorl_verl.rewards.math_answer import CALL_TIMEOUT_S, score_math, score_math_think

        golds = math_golds(ground_truth)
        score = score_math_think if math_format == "think" else score_math
        correct, pred, error = score(text, golds, float(kwargs.get("math_timeout_s", CALL_TIMEOUT_S)))
        return _result(correct, pred, error)
    if data_source in CHOICE_SOURCES:
        from echorl_verl.rewards.multiple_choice import score_choice

        correct, pred = score_choice(text, ground_truth)
        return _result(correct, pred)
    if data_source in CODE_SOURCES:
        return _score_code(text, ground_truth, extra_info, kwargs)
    if data_source in TOY_SOURCES:
        return _score_toy(data_source, solution_str, ground_truth, extra_info, **kwargs)
    raise ValueError(
        f"unknown data_source {data_source!r} for echorl_verl.rewards.compute_score; known: {sorted(KNOWN_DATA_SOURCES)}. "
        "Declare it in echorl_verl/data/catalog.py with its family (math, choice or code)."
    )
