"""Math answers: equivalence of a response's answer with the ground truth via math-verify.

Two formats (``compute_score(..., math_format=...)``):
    boxed (default)  the last ``\\boxed{}`` after ``</think>``, normalised on both sides (below), parsed
                     as a box only: ``score_math`` / worker ``check_equivalent``.
    think            the EchoRL/LUFFY authors' reward, as they wrote it: no ``</think>`` scores 0; else
                     math-verify's default ``parse`` of the text after the first ``</think>`` against
                     ``parse("$" + gold + "$")``, no normalisation: ``score_math_think`` / ``check_think``.
The checks run inside :mod:`echorl_verl.rewards.bounded` worker processes (their own main thread, so
math-verify's signal-based timeouts work there; the parent adds a hard wall deadline on top, see
``bounded.py``); the ``score_*`` functions are the parent-side entry points.

Both sides go through the same normalisation, so a ground truth written the way the sources
write it ("142.0", ``\\left( 3, \\frac{\\pi}{2} \\right)``, ``5\\text{ cm}``, ``$\\frac{9}{17}$``,
``75\\%``, ``4^{\\circ}``, ``\\$18.90``, ``\\text{A,C,F}``) matches itself and its equivalents.
"""

from __future__ import annotations

import functools
import re
import time

from echorl_verl.rewards.extract import last_boxed, think_solution

#: Longest boxed answer given to sympy. Benchmark ground truths are at most 210 characters;
#: parsing time grows with size, and a 1000+ character box is not an answer.
MAX_ANSWER_CHARS = 1000
#: math-verify's own (signal based) timeouts inside the worker, seconds.
PARSE_TIMEOUT_S = 3
VERIFY_TIMEOUT_S = 3

_UNESCAPED_DOLLAR = re.compile(r"(?<!\\)\$")
_SPACES = re.compile(r"\s+")


def normalize_answer_text(text: str) -> str:
    """Drop math-mode ``$`` (not ``\\$``), ``\\displaystyle``, percent signs, outer space/periods.

    Percent is read as a unit, as verl's MATH normalisation does: ``75\\%`` equals ``75`` (not
    ``0.75``). math-verify alone turned ``75\\%`` into 0.75 on one side only, so that
    ``\\boxed{75}`` did not match the MATH ground truth ``75\\%``.
    """
    text = _UNESCAPED_DOLLAR.sub("", text)
    text = text.replace("\\displaystyle", "").replace("\\%", "").replace("%", "")
    return text.strip().rstrip(".").strip()


def _string_key(text: str) -> str:
    """Loose string form used when sympy cannot parse either side (text answers)."""
    text = normalize_answer_text(text)
    text = re.sub(r"\\(?:text|textbf|mathrm|mbox)\{([^{}]*)\}", r"\1", text)
    text = text.replace("\\!", "").replace("\\,", "").replace("\\ ", "").replace("\\left", "").replace("\\right", "")
    return _SPACES.sub("", text).lower()


@functools.lru_cache(maxsize=4096)
def _parse(text: str) -> tuple:
    """math-verify parse of one answer (already normalised); cached: golds repeat a lot."""
    from math_verify import LatexExtractionConfig, parse

    # Only the box itself: with the default "any_match", math-verify falls back to any LaTeX
    # fragment inside it when the whole fails to parse (``\frac{1}{3} E_{1}+\frac{2}{3} E_{2}``
    # became 2/3), which made different answers compare equal.
    configs = [LatexExtractionConfig(boxed_match_priority=0, try_extract_without_anchor=False)]
    return tuple(
        parse(
            "\\boxed{" + text + "}",
            extraction_config=configs,
            extraction_mode="first_match",
            parsing_timeout=PARSE_TIMEOUT_S,
        )
    )


class _Timer:
    """Notes which math-verify calls ran into their own timeout: math-verify swallows its timeouts and
    returns "not equal", which would hide a scorer problem as a wrong answer."""

    def __init__(self):
        self.timed_out: list[str] = []

    def __call__(self, what, fn, limit):
        t0 = time.monotonic()
        out = fn()
        if time.monotonic() - t0 >= limit - 0.05:
            self.timed_out.append(what)
        return out

    def error(self) -> str:
        return f"math-verify timed out {', '.join(self.timed_out)}" if self.timed_out else ""


def check_equivalent(golds: list[str], answer: str) -> list:
    """``[equal, error]``: is ``answer`` (boxed content) equivalent to one of ``golds``? Worker side.

    ``error`` names a math-verify timeout ("" otherwise).
    """
    from math_verify import verify

    timed = _Timer()
    answer = normalize_answer_text(answer)
    pred = timed("parsing the answer", lambda: _parse(answer), PARSE_TIMEOUT_S)
    for gold_text in golds:
        gold_text = normalize_answer_text(gold_text)
        gold = timed("parsing the ground truth", lambda: _parse(gold_text), PARSE_TIMEOUT_S)
        if gold and pred:
            equal = timed("verifying", lambda: verify(list(gold), list(pred), timeout_seconds=VERIFY_TIMEOUT_S), VERIFY_TIMEOUT_S)
            if equal:
                return [True, ""]
        if _string_key(gold_text) == _string_key(answer):
            return [True, ""]
    return [False, timed.error()]


def check_think(golds: list[str], solution: str) -> list:
    """``[equal, pred, error]`` of the authors' check (LUFFY math_verify_reward.py). Worker side.

    ``verify(parse("$" + gold + "$"), parse(solution))`` with math-verify's default extraction (LaTeX
    and plain expressions, any match; not only ``\\boxed{}``); any gold may match. ``pred`` is the
    text math-verify extracted ("" when nothing parsed).
    """
    from math_verify import parse, verify

    timed = _Timer()
    pred = timed("parsing the answer", lambda: parse(solution, parsing_timeout=PARSE_TIMEOUT_S), PARSE_TIMEOUT_S)
    shown = str(pred[-1]) if pred else ""
    for gold_text in golds:
        gold = timed("parsing the ground truth", lambda: parse("$" + gold_text + "$", parsing_timeout=PARSE_TIMEOUT_S),
                     PARSE_TIMEOUT_S)
        if timed("verifying", lambda: verify(gold, pred, timeout_seconds=VERIFY_TIMEOUT_S), VERIFY_TIMEOUT_S):
            return [True, shown, ""]
    return [False, shown, timed.error()]


#: Wall-clock bound of one math check, seconds (see ``bounded.py`` for what it covers).
CALL_TIMEOUT_S = 10.0
_TARGET = "echorl_verl.rewards.math_answer:check_equivalent"
_THINK_TARGET = "echorl_verl.rewards.math_answer:check_think"


def score_math(response: str, golds: list[str], timeout_s: float = CALL_TIMEOUT_S) -> tuple[bool, str, str]:
    """Is the last boxed answer of ``response`` equivalent to one of ``golds``?

    Returns ``(correct, pred, error)``: ``pred`` is the boxed content ("" when there is none),
    ``error`` is "" or why the check could not run (timeout, worker failure, answer too long);
    an error always comes with ``correct=False``. Never raises for any ``response``.
    """
    from echorl_verl.rewards.bounded import CallTimeout, WorkerError, get_pool

    pred = last_boxed(response)
    if pred is None:
        return False, "", ""
    if len(pred) > MAX_ANSWER_CHARS:
        return False, pred[:100], f"boxed answer longer than {MAX_ANSWER_CHARS} characters"
    if not normalize_answer_text(pred):
        return False, pred, ""
    # lone surrogates (from decoding garbage) cannot cross the JSON pipe as UTF-8
    answer = pred.encode("utf-8", "replace").decode("utf-8")
    try:
        pool = get_pool(_TARGET, preload=("math_verify",))
        equal, error = pool.call(list(golds), answer, timeout_s=timeout_s)
        return bool(equal), pred, error
    except CallTimeout as e:
        return False, pred, f"math check timed out: {e}"
    except WorkerError as e:
        return False, pred, f"math check failed: {e}"


def score_math_think(response: str, golds: list[str], timeout_s: float = CALL_TIMEOUT_S) -> tuple[bool, str, str]:
    """The authors' math reward: ``(correct, pred, error)`` as ``score_math``, never raises.

    A response without ``</think>`` is 0 with no error (it is the model's format failure, not the scorer's).
    """
    from echorl_verl.rewards.bounded import CallTimeout, WorkerError, get_pool

    solution = think_solution(response)
    if solution is None:
        return False, "", ""
    solution = solution.encode("utf-8", "replace").decode("utf-8")  # lone surrogates cannot cross the pipe
    try:
        pool = get_pool(_THINK_TARGET, preload=("math_verify",))
        equal, pred, error = pool.call(list(golds), solution, timeout_s=timeout_s)
        return bool(equal), pred, error
    except CallTimeout as e:
        return False, "", f"math check timed out: {e}"
    except WorkerError as e:
        return False, "", f"math check failed: {e}"
