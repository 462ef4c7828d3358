"""Code ground truth: the JSON test specs the code scorer (echorl_verl/rewards/code_score.py) runs.

Kinds, as documented by the rewards engineer in echorl_verl/rewards/code_score.py (followed here):
    {"kind": "functional", "test": PYTHON, "entry_point": NAME | null, "prompt": str (optional)}
        with an entry_point, PYTHON defines check(candidate) and the scorer calls check(NAME) (HumanEval);
        with entry_point null, PYTHON is plain statements such as MBPP's asserts. ``prompt`` (HumanEval's
        signature + docstring) is put before a completion-style answer.
    {"kind": "stdio", "inputs": [str, ...], "outputs": [str, ...]}  stdin -> expected stdout.
    {"kind": "call", "fn_name": NAME, "inputs": [[arg, ...], ...], "outputs": [value, ...]}  LeetCode-style.
Nothing here runs test code or model code: it only builds strings.
"""

from __future__ import annotations

import base64
import io
import json
import pickle
import zlib
from typing import Optional

from echorl_verl.data.rows import RowError


def _dump(spec: dict) -> str:
    return json.dumps(spec, ensure_ascii=False)


def functional_truth(test: str, entry_point: Optional[str] = None, prompt: Optional[str] = None) -> str:
    """JSON ground truth of a functional task (see the module docstring)."""
    spec = {"kind": "functional", "test": test, "entry_point": entry_point}
    if prompt is not None:
        spec["prompt"] = prompt
    return _dump(spec)


def stdio_truth(inputs: list[str], outputs: list[str]) -> str:
    """JSON ground truth of a stdin/stdout task (``inputs[i]`` on stdin must print ``outputs[i]``)."""
    return _dump({"kind": "stdio", "inputs": inputs, "outputs": outputs})


def call_truth(fn_name: str, inputs: list[list], outputs: list) -> str:
    """JSON ground truth of a LeetCode-style task: ``fn_name(*inputs[i]) == outputs[i]``."""
    return _dump({"kind": "call", "fn_name": fn_name, "inputs": inputs, "outputs": outputs})


def leetcode_cases(tests: list[dict], row: int, key: str, src: str) -> tuple[list[list], list]:
    """LiveCodeBench functional tests -> (argument lists, expected values).

    Each test input holds one JSON value per line (the arguments); each output one JSON value.
    """
    inputs, outputs = [], []
    for i, test in enumerate(tests):
        raw_in, raw_out = test.get("input"), test.get("output")
        if not isinstance(raw_in, str) or not isinstance(raw_out, str):
            raise RowError(row, key, f"test {i}: input and output must be strings", src)
        try:
            inputs.append([json.loads(line) for line in raw_in.split("\n") if line.strip()])
            outputs.append(json.loads(raw_out))
        except json.JSONDecodeError as err:
            raise RowError(row, key, f"test {i}: not one JSON value per line ({err.msg})", src) from err
    if not inputs:
        raise RowError(row, key, "no test cases", src)
    return inputs, outputs


class _StrOnlyUnpickler(pickle.Unpickler):
    """LiveCodeBench pickles a JSON *string*; refuse every class so no code can run while unpickling."""

    def find_class(self, module, name):  # noqa: D401
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a test-case blob")


def decode_lcb_tests(blob: str, row: int, key: str, src: str) -> list[dict]:
    """LiveCodeBench test cases: plain JSON, or base64(zlib(pickle(JSON string))) for private tests."""
    if not blob or not blob.strip():
        return []
    try:
        return json.loads(blob)
    except json.JSONDecodeError:
        pass
    try:
        raw = _StrOnlyUnpickler(io.BytesIO(zlib.decompress(base64.b64decode(blob.encode("ascii"))))).load()
        return json.loads(raw)
    except Exception as err:
        raise RowError(row, key, f"neither JSON nor base64/zlib/pickle JSON ({type(err).__name__})", src) from err


LIST_JOINED = "list-valued test input/output joined into lines (as TACO's and rLLM's stdio runners do)"
NUMBER_AS_TEXT = "numeric test input/output written as text"
TRUNCATED = "unequal inputs/outputs lists cut to the shorter (rLLM's DeepCoder loader zips them)"


def stdio_text(value, row: int, key: str, what: str, src: str, fixes: list) -> str:
    """One stdin or expected-stdout value as text; a list of lines is joined, a number is written out.

    ``fixes`` collects the normalisations applied (see the module constants). Anything else: RowError.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        fixes.append(NUMBER_AS_TEXT)
        return str(value)
    if isinstance(value, list) and all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in value):
        fixes.append(LIST_JOINED)
        return "\n".join(str(v) for v in value)
    raise RowError(row, key, f"{what} is a {type(value).__name__}, not text or a list of lines", src)


def stdio_pairs(tests, row: int, key: str, src: str):
    """(inputs, outputs, fixes) of a stdin/stdout test list in any DeepCoder / LiveCodeBench layout, or None.

    Layouts: TACO {"inputs": [...], "outputs": [...], "fn_name"?}; LiveCodeBench [{"input", "output",
    "testtype": "stdin"|"functional"}]; PrimeIntellect [{"type": "stdin_stdout"|"function_call", ...}];
    plain [{"input", "output"}]. None means "function-call tests" (not stdio). Malformed -> RowError.

    TACO rows are normalised as the DeepCoder authors' code does (rLLM): list-valued values are joined into
    lines, numbers written as text; lists of unequal length are cut to the shorter, as rLLM's DeepCoder
    loader does by zipping them (its ``taco_to_lcb_format`` instead repeats the first element, which would
    pair inputs with another test's expected output). ``fixes`` names each normalisation applied.
    """
    fixes: list[str] = []
    if isinstance(tests, dict):
        if tests.get("fn_name"):
            return None
        inputs, outputs = tests.get("inputs"), tests.get("outputs")
        if isinstance(inputs, list) and isinstance(outputs, list) and len(inputs) != len(outputs):
            fixes.append(TRUNCATED)
            inputs, outputs = inputs[: len(outputs)], outputs[: len(inputs)]
    elif isinstance(tests, list):
        if any(not isinstance(t, dict) for t in tests):
            raise RowError(row, key, "test list items must be objects", src)
        kinds = {t.get("testtype", t.get("type", "stdin")) for t in tests}
        if kinds - {"stdin", "stdin_stdout"}:
            return None
        inputs, outputs = [t.get("input") for t in tests], [t.get("output") for t in tests]
    else:
        raise RowError(row, key, f"expected a JSON object or list of tests, got {type(tests).__name__}", src)
    if not isinstance(inputs, list) or not isinstance(outputs, list) or len(inputs) != len(outputs) or not inputs:
        raise RowError(row, key, "needs equal-length, non-empty inputs and outputs", src)
    inputs = [stdio_text(v, row, key, f"test {i}: input", src, fixes) for i, v in enumerate(inputs)]
    outputs = [stdio_text(v, row, key, f"test {i}: output", src, fixes) for i, v in enumerate(outputs)]
    return inputs, outputs, sorted(set(fixes))
