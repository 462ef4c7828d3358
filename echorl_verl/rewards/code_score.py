"""Code answers: run the response's last code block against the row's tests in the sandbox.

Ground-truth schema (``reward_model.ground_truth``: a dict, or the same dict as a JSON string).
data_prep writes one of three kinds:

``{"kind": "functional", "test": str, "entry_point": str | None, "prompt": str (optional)}``
    HumanEval / HumanEval+ / MBPP / MBPP+. ``test`` is Python code run after the solution in the
    same namespace; with an ``entry_point`` it must define ``check(candidate)`` and the harness
    calls ``check(<entry_point>)`` (HumanEval style); with ``entry_point`` null, ``test`` is
    plain statements such as MBPP's ``assert f(1) == 2`` lines. ``prompt`` (HumanEval's
    signature + docstring) is put before the solution when the solution does not itself define
    ``entry_point`` (completion-style answers). Passes when everything runs without error.
``{"kind": "stdio", "inputs": [str, ...], "outputs": [str, ...]}``
    LiveCodeBench / DeepCoder standard-input problems: the solution runs as ``__main__`` once per
    case with ``inputs[i]`` on stdin; passes when every stdout equals ``outputs[i]`` (compared
    line by line, trailing whitespace ignored, numbers equal within 1e-6 relative/absolute).
``{"kind": "call", "fn_name": str, "inputs": [[arg, ...], ...], "outputs": [value, ...]}``
    LeetCode-style problems (LiveCodeBench "functional", DeepCoder/TACO with ``fn_name``): for
    each case, ``fn_name(*inputs[i])`` (a top-level function, else a method of ``Solution()``)
    must return ``outputs[i]`` (JSON values; compared after a JSON round trip, floats within 1e-6).

Optional in every kind: ``"time_limit_s"`` (CPU seconds per run, default 10) and
``"memory_mb"`` (default 1024). A ground truth that does not fit the schema raises ValueError
(the data is wrong); anything the model writes only ever scores 0.

The score is all-or-nothing (1.0 only when every test passes), as in verl's code rewards.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from typing import Any

from echorl_verl.rewards.code_sandbox import RunResult, Runner, SandboxLimits, SandboxUnavailable, run_program
from echorl_verl.rewards.extract import last_code_block

#: Wall-clock budget of one compute_score call over all its runs (stdio problems have many cases).
TOTAL_BUDGET_S = 120.0
KINDS = ("functional", "stdio", "call")


def parse_code_ground_truth(ground_truth: Any) -> dict:
    """Validate and return the ground-truth dict; ValueError naming the field and the fix."""
    gt = ground_truth
    if isinstance(gt, (str, bytes)):
        try:
            gt = json.loads(gt)
        except json.JSONDecodeError as e:
            raise ValueError(f"code ground_truth is not valid JSON ({e}); write a dict as described in {__name__}") from e
    if not isinstance(gt, dict):
        raise ValueError(f"code ground_truth must be a dict or its JSON, got {type(gt).__name__}; see {__name__}")
    # parquet gives nested lists back as numpy arrays
    gt = {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in gt.items()}
    kind = gt.get("kind")
    if kind not in KINDS:
        raise ValueError(f"code ground_truth['kind'] must be one of {KINDS}, got {kind!r}")
    if kind == "functional":
        if not isinstance(gt.get("test"), str) or not gt["test"].strip():
            raise ValueError("functional code ground_truth needs a non-empty 'test' string")
        if gt.get("entry_point") is not None and not str(gt["entry_point"]).isidentifier():
            raise ValueError(f"functional code ground_truth: 'entry_point' must be an identifier, got {gt['entry_point']!r}")
    else:
        inputs, outputs = gt.get("inputs"), gt.get("outputs")
        if not isinstance(inputs, list) or not isinstance(outputs, list) or len(inputs) != len(outputs) or not inputs:
            raise ValueError(f"{kind} code ground_truth needs equally long non-empty lists 'inputs' and 'outputs'")
        if kind == "stdio" and not all(isinstance(x, str) for x in inputs + outputs):
            raise ValueError("stdio code ground_truth: every input and output must be a string")
        if kind == "call":
            if not str(gt.get("fn_name", "")).isidentifier():
                raise ValueError(f"call code ground_truth needs 'fn_name' (an identifier), got {gt.get('fn_name')!r}")
            if not all(isinstance(x, list) for x in inputs):
                raise ValueError("call code ground_truth: each input must be a list of arguments")
    return gt


def _limits(gt: dict) -> SandboxLimits:
    cpu = int(gt.get("time_limit_s", 10))
    return SandboxLimits(cpu_s=cpu, wall_s=cpu * 2 + 5, memory_mb=int(gt.get("memory_mb", 1024)))


def _as_solution_module(solution: str) -> str:
    """Source that runs ``solution`` with ``__name__`` != "__main__" (its own main block is skipped)."""
    return (
        "__name__ = '__echorl_solution__'\n"
        f"exec(compile({solution!r}, 'solution.py', 'exec'))\n"
        "__name__ = '__main__'\n"
    )


def _numbers_close(a: str, b: str) -> bool:
    try:
        x, y = float(a), float(b)
    except ValueError:
        return False
    return math.isclose(x, y, rel_tol=1e-6, abs_tol=1e-6)


def outputs_match(got: str, expected: str) -> bool:
    """Line-by-line, token-by-token comparison; trailing whitespace and blank lines ignored."""
    g = [line.split() for line in got.strip().splitlines()]
    e = [line.split() for line in expected.strip().splitlines()]
    if len(g) != len(e):
        return False
    for gl, el in zip(g, e):
        if len(gl) != len(el) or any(a != b and not _numbers_close(a, b) for a, b in zip(gl, el)):
            return False
    return True


def _values_match(got: Any, expected: Any) -> bool:
    if isinstance(got, float) or isinstance(expected, float):
        try:
            return math.isclose(float(got), float(expected), rel_tol=1e-6, abs_tol=1e-6)
        except (TypeError, ValueError):
            return False
    if isinstance(got, list) and isinstance(expected, list):
        return len(got) == len(expected) and all(_values_match(a, b) for a, b in zip(got, expected))
    return got == expected


def _run_functional(solution: str, gt: dict, run: Runner) -> tuple[bool, str]:
    entry = gt.get("entry_point")
    if entry and gt.get("prompt") and f"def {entry}" not in solution:
        solution = gt["prompt"] + solution
    sentinel = f"ECHORL_TESTS_PASSED_{uuid.uuid4().hex}"
    program = _as_solution_module(solution) + "\n" + gt["test"] + "\n"
    if entry:
        program += f"\ncheck({entry})\n"
    program += f"print({sentinel!r})\n"  # an early exit(0) in the solution must not count as a pass
    result = run(program, "", _limits(gt))
    passed = result.ok and result.stdout.rstrip().endswith(sentinel)
    return passed, "" if passed else _why(result)


def _run_stdio(solution: str, gt: dict, run: Runner, deadline: float) -> tuple[bool, str]:
    for i, (stdin, expected) in enumerate(zip(gt["inputs"], gt["outputs"])):
        if time.monotonic() > deadline:
            return False, f"time budget of {TOTAL_BUDGET_S:g} s used up at case {i}"
        result = run(solution, stdin, _limits(gt))
        if not result.ok:
            return False, f"case {i}: {_why(result)}"
        if not outputs_match(result.stdout, expected):
            return False, f"case {i}: wrong output"
    return True, ""


def _run_call(solution: str, gt: dict, run: Runner) -> tuple[bool, str]:
    sentinel = f"ECHORL_RESULT_{uuid.uuid4().hex}:"
    program = (
        _as_solution_module(solution)
        + "import json as _echorl_json\n"
        + f"_echorl_fn = globals().get({gt['fn_name']!r}) or getattr(Solution(), {gt['fn_name']!r})\n"
        + f"for _echorl_args in _echorl_json.loads({json.dumps(gt['inputs'])!r}):\n"
        + f"    print({sentinel!r} + _echorl_json.dumps(_echorl_fn(*_echorl_args)), flush=True)\n"
    )
    result = run(program, "", _limits(gt))
    if not result.ok:
        return False, _why(result)
    got = [line[len(sentinel) :] for line in result.stdout.splitlines() if line.startswith(sentinel)]
    if len(got) != len(gt["outputs"]):
        return False, f"{len(got)} results for {len(gt['outputs'])} cases"
    for i, (g, e) in enumerate(zip(got, gt["outputs"])):
        if not _values_match(json.loads(g), json.loads(json.dumps(e))):
            return False, f"case {i}: wrong result"
    return True, ""


def _why(result: RunResult) -> str:
    if result.timed_out:
        return "timed out"
    tail = result.stderr.strip().splitlines()[-1:] or [""]
    return f"exit code {result.returncode}: {tail[0][:200]}"


def score_code(response: str, ground_truth: Any, runner: Runner | None = None) -> tuple[bool, str, str]:
    """``(passed, detail, error)`` for one response.

    ``detail`` says why the code failed (no code block, timeout, wrong output, ...) or is "";
    ``error`` is "" or why the sandbox could not run it (an infrastructure failure, not the
    model's: then ``passed`` is False and the caller counts it, see ``infra.py``).
    ValueError only for a malformed ground truth.
    """
    gt = parse_code_ground_truth(ground_truth)
    solution = last_code_block(response)
    if solution is None:
        return False, "no code block in the response", ""
    run = runner or run_program
    deadline = time.monotonic() + TOTAL_BUDGET_S
    try:
        if gt["kind"] == "functional":
            passed, detail = _run_functional(solution, gt, run)
        elif gt["kind"] == "stdio":
            passed, detail = _run_stdio(solution, gt, run, deadline)
        else:
            passed, detail = _run_call(solution, gt, run)
    except SandboxUnavailable as e:
        return False, "", f"code sandbox failed: {e}"
    return passed, detail, ""

