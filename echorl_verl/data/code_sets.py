"""Code sets: HumanEval, HumanEval+, MBPP, MBPP+ (functional), LiveCodeBench and DeepCoder (mostly stdio).

An extractor turns one source record into (task text for the user turn, JSON ground truth, normalisations
applied) or raises `Skip` for a record the set deliberately leaves out: DeepCoder problems graded by
function calls (their layouts in the TACO / PrimeIntellect subsets could not be confirmed here, so they
are not guessed). DeepCoder is a training set: a record it cannot use is skipped and counted; the
evaluation sets stop at their first bad record. data_source values come from echorl_verl/data/catalog.py.
Ground-truth layouts: see code_tests.py (the scorer's schema in echorl_verl/rewards/code_score.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable

from echorl_verl.data import catalog
from echorl_verl.data import code_tests as ct
from echorl_verl.data.outcome import BuildLog, Skip, collect_rows
from echorl_verl.data.rows import RowError, as_text, field, list_field, make_row, text_field
from echorl_verl.data.sources import HubSource
from echorl_verl.data.templates import code_prompt

FUNCTION_TASK = (
    "Complete the following Python function. Write the whole function, with the imports it needs, "
    "in one ```python code block.\n\n```python\n{code}\n```"
)
MBPP_TASK = "{text}\n\nYour code should pass these tests:\n\n{tests}\n\nWrite the Python function in one ```python code block."
LCB_HEAD = (
    "You will be given a question (problem specification) and will generate a correct Python program that "
    "matches the specification and passes all tests.\n\nQuestion: {question}\n\n"
)
STARTER_TAIL = (
    "You will use the following starter code to write the solution to the problem and enclose your code "
    "within delimiters.\n```python\n{starter}\n```"
)
STDIO_TAIL = (
    "Read the inputs from stdin, solve the problem and write the answer to stdout (do not directly test on "
    "the sample inputs). Enclose your code within delimiters as follows. Ensure that when the python program "
    "runs, it reads the inputs, runs the algorithm and writes output to STDOUT.\n```python\n# YOUR CODE HERE\n```"
)


Extracted = tuple[str, str, list]  # (task text, JSON ground truth, normalisations applied)


def extract_humaneval(record: dict, row: int, src: str) -> Extracted:
    """openai/openai_humaneval and evalplus/humanevalplus: prompt, entry_point, test (defines check)."""
    prompt = text_field(record, row, "prompt", src)
    entry = text_field(record, row, "entry_point", src)
    test = text_field(record, row, "test", src)
    if "def check(" not in test:
        raise RowError(row, "test", "does not define check(candidate)", src)
    return FUNCTION_TASK.format(code=prompt.rstrip("\n")), ct.functional_truth(test, entry, prompt), []


def _strings(record: dict, row: int, key: str, src: str, min_len: int = 0) -> list[str]:
    if min_len == 0 and record.get(key) is None:
        return []
    return [as_text(t, row, key, src) for t in list_field(record, row, key, src, min_len=min_len)]


def extract_mbpp(record: dict, row: int, src: str) -> Extracted:
    """google-research-datasets/mbpp: text, code, test_list, test_setup_code, challenge_test_list."""
    text = text_field(record, row, "text", src)
    text_field(record, row, "code", src)  # the reference solution: required, so a broken export fails here
    tests = _strings(record, row, "test_list", src, min_len=1)
    setup = record.get("test_setup_code") or ""
    script = (setup + "\n" if setup.strip() else "") + "\n".join(tests) + "\n"
    task = MBPP_TASK.format(text=text.strip(), tests="\n".join(tests))
    return task, ct.functional_truth(script), []  # plain asserts calling the function by name


def extract_mbppplus(record: dict, row: int, src: str) -> Extracted:
    """evalplus/mbppplus: prompt, code, test_imports, test_list, test (a script calling the function by name)."""
    text = text_field(record, row, "prompt", src)
    text_field(record, row, "code", src)
    tests = _strings(record, row, "test_list", src, min_len=1)
    script = text_field(record, row, "test", src)
    imports = _strings(record, row, "test_imports", src)
    task = MBPP_TASK.format(text=text.strip(), tests=tests[0])
    return task, ct.functional_truth("\n".join(imports + [script]) + "\n"), []  # a script calling it by name


def extract_livecodebench(record: dict, row: int, src: str) -> Extracted:
    """livecodebench/code_generation_lite: question_content, starter_code, public/private_test_cases, metadata."""
    question = text_field(record, row, "question_content", src)
    starter = record.get("starter_code") or ""
    tests = ct.decode_lcb_tests(text_field(record, row, "public_test_cases", src), row, "public_test_cases", src)
    tests += ct.decode_lcb_tests(record.get("private_test_cases") or "", row, "private_test_cases", src)
    task = LCB_HEAD.format(question=question) + (STARTER_TAIL.format(starter=starter) if starter.strip() else STDIO_TAIL)
    stdio = ct.stdio_pairs(tests, row, "public_test_cases", src)
    if stdio is not None:
        inputs, outputs, fixes = stdio
        return task, ct.stdio_truth(inputs, outputs), fixes
    meta = field(record, row, "metadata", src)
    meta = json.loads(meta) if isinstance(meta, str) else meta
    func_name = meta.get("func_name") if isinstance(meta, dict) else None
    if not func_name:
        raise RowError(row, "metadata", "functional tests need metadata.func_name", src)
    return task, ct.call_truth(func_name, *ct.leetcode_cases(tests, row, "public_test_cases", src)), []


FUNCTION_CALLS = "graded by function calls (only stdin/stdout problems are kept)"


def extract_deepcoder(record: dict, row: int, src: str) -> Extracted:
    """agentica-org/DeepCoder-Preview-Dataset: problem, tests (JSON string), starter_code?; stdio only."""
    problem = text_field(record, row, "problem", src)
    raw = field(record, row, "tests", src)
    try:
        tests = json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError as err:
        raise RowError(row, "tests", f"not valid JSON ({err.msg})", src) from err
    stdio = ct.stdio_pairs(tests, row, "tests", src)
    if stdio is None:
        raise Skip(FUNCTION_CALLS)
    inputs, outputs, fixes = stdio
    return LCB_HEAD.format(question=problem) + STDIO_TAIL, ct.stdio_truth(inputs, outputs), fixes


@dataclass(frozen=True)
class CodeSet:
    key: str
    data_source: str
    hub: "HubSource | tuple"
    extract: Callable[[dict, int, str], Extracted]
    split: str


def code_set(name: str, hub: "HubSource | tuple", extract: Callable, split: str) -> CodeSet:
    """The loader of catalog source ``name`` (its data_source is the catalog's)."""
    return CodeSet(name, catalog.source(name).data_source, hub, extract, split)


# release_v6 = these six files of livecodebench/code_generation_lite. That repo is script-based, which
# datasets>=4 no longer runs, so its jsonl files are read with the "json" builder (as LCB's users do).
_LCB_URL = "https://huggingface.co/datasets/livecodebench/code_generation_lite/resolve/main/"
_LCB_FILES = tuple(_LCB_URL + f for f in ("test.jsonl", "test2.jsonl", "test3.jsonl", "test4.jsonl",
                                           "test5.jsonl", "test6.jsonl"))
CODE_SETS = {
    s.key: s
    for s in [
        code_set("humaneval", HubSource("openai/openai_humaneval", "test"), extract_humaneval, "test"),
        code_set("humanevalplus", HubSource("evalplus/humanevalplus", "test"), extract_humaneval, "test"),
        code_set("mbpp", HubSource("google-research-datasets/mbpp", "test", "full"), extract_mbpp, "test"),
        code_set("mbppplus", HubSource("evalplus/mbppplus", "test"), extract_mbppplus, "test"),
        code_set("livecodebench", HubSource("json", "train", data_files=_LCB_FILES), extract_livecodebench, "test"),
        code_set("deepcoder", tuple(HubSource("agentica-org/DeepCoder-Preview-Dataset", "train", n)
                                    for n in ("primeintellect", "taco", "lcbv5")), extract_deepcoder, "train"),
    ]
}


def build_code_rows(
    records: list[dict], spec: CodeSet, template: str = "echo", src: str = ""
) -> tuple[list[dict], BuildLog]:
    """Rows for ``records`` in source order (``extra_info.index`` counts the rows kept) and the build's log."""
    log = BuildLog(spec.key)

    def make(record: dict, row: int, kept: int) -> list[dict]:
        task, truth, fixes = spec.extract(record, row, src)
        for fix in fixes:
            log.normalise(fix)
        return [make_row(spec.data_source, code_prompt(task, template), "code", truth, kept, spec.split)]

    lenient = catalog.source(spec.key).role == catalog.TRAIN
    return collect_rows(records, log, lenient, make, src), log
