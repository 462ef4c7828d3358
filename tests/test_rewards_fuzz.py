"""Fuzz: random and adversarial responses through compute_score (math and multiple choice).

compute_score must never raise on any response, and every call must end within the per-call
bound: ``math_answer.CALL_TIMEOUT_S`` for the math check (the worker is killed past it) plus
start-up of a replacement worker, and milliseconds for the linear-time extraction code.
"""

import random
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from echorl_verl.rewards import RESULT_KEYS, compute_score
from echorl_verl.rewards.math_answer import CALL_TIMEOUT_S

BOUND_S = CALL_TIMEOUT_S + 2.0  # + starting a replacement worker after a kill
TOKENS = ["\\boxed{", "\\fbox{", "{", "}", "\\frac", "\\sqrt", "^", "_", "9", "1", "0", "x", "(", ")", "[", "]",
          ",", "=", "\\left(", "\\right)", "\\text{", "$", "\\$", "\\%", "\\pi", "\\infty", "!", "\\\\", "</think>",
          "Answer: ", "**", "C", "(B)", " ", "\n", "\\begin{pmatrix}", "\\end{pmatrix}", "&", "\\le", "\\cdot",
          "e^{", "i", "\\,", "\\!", "%", "\\circ", "\\ldots", "\x00", "\ud800"]  # fmt: skip
latexish = st.lists(st.sampled_from(TOKENS), max_size=60).map("".join)
responses = st.one_of(latexish, st.text(max_size=300), st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
                      latexish.map(lambda s: "\\boxed{" + s + "}"))  # fmt: skip

ADVERSARIAL = [
    "",
    "\x00" * 1000,
    "\ud800\udfff\ud800",
    "a" * 5_000_000,
    "\\boxed{" * 100_000,
    "}" * 100_000 + "\\boxed{1}",
    "\\boxed{" + "{" * 50_000 + "1" + "}" * 50_000 + "}",
    "\\boxed{" + "\\frac{1}{" * 300 + "2" + "}" * 300 + "}",
    "\\boxed{9^{9^{9^{9^{9^{9}}}}}}",
    "\\boxed{10^{10^{10^{10}}} - 10^{10^{10^{10}}}}",
    "\\boxed{(10^{100})!}",
    "\\boxed{\\frac{1}{0}}",
    "\\boxed{\\sqrt{-1}^{\\infty}}",
    "\\boxed{" + "x+" * 400 + "x}",
    "\\boxed{" + "(" * 400 + "1" + ")" * 400 + "}",
    "</think>" * 100_000,
    "<think>" + "\\boxed{1}" * 10_000,
    "Answer: " * 200_000,
    "**" * 300_000,
    "\\boxed{\\text{" + "\\" * 10_000 + "}}",
    "```python\n" * 50_000,
    "(" * 200_000 + "C",
    ("answer is " + " " * 5 + "\n") * 50_000,
    bytes(range(256)).decode("latin-1") * 1000,
]


def _check(data_source, response, gold, times):
    t0 = time.monotonic()
    result = compute_score(data_source, response, gold)
    times.append(time.monotonic() - t0)
    assert tuple(result) == RESULT_KEYS
    assert result["score"] in (0.0, 1.0) and result["acc"] == result["score"]
    assert isinstance(result["pred"], str) and isinstance(result["error"], str)


def test_adversarial_list():
    times = []
    for response in ADVERSARIAL:
        _check("olympiad_bench", response, "1", times)
        _check("mmlu_pro", response, "C", times)
    assert max(times) < BOUND_S, sorted(times)[-3:]


def test_random_strings_fast_path():
    """Thousands of random strings (seeded): the extraction code alone, no box -> no worker call."""
    rng = random.Random(0)
    alphabet = "".join(t for t in TOKENS if "boxed" not in t and "fbox" not in t)
    times = []
    for _ in range(3000):
        s = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 400)))
        _check("math", s, "1", times)
        _check("gpqa", s, "A", times)
    assert max(times) < 0.5


MATH_TIMES, CHOICE_TIMES = [], []


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(responses, st.sampled_from(["1", "\\frac{1}{2}", "(3, \\pi)", "\\text{Monday}"]))
def test_hypothesis_math(response, gold):
    _check("aime", response, gold, MATH_TIMES)
    assert max(MATH_TIMES) < BOUND_S


@settings(max_examples=1500, deadline=None, derandomize=True)
@given(responses, st.sampled_from(list("ABCDJ") + ["3"]))
def test_hypothesis_choice(response, gold):
    _check("arc_c", response, gold, CHOICE_TIMES)
    assert max(CHOICE_TIMES) < 0.5
