"""data_prep: math and multiple-choice sets, atomic writing, the scripts' command line and the hub path.

Local source files are made by the tests in each source's own (hub) schema; the real shared benchmark files
(shared/data/benchmarks/) are the reference for prompts, repetition and dtypes. Code sets:
tests/test_data_prep_code.py; skipped records, summaries and data_prep/all.sh: tests/test_data_suite.py.
"""

from __future__ import annotations

import os
import string
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from data_testlib import GOOD_AIME, REPO, echo, read_rows, row, write_source
from echo_testlib import shared_benchmarks_dir
from echorl_verl.data import parquet_io
from echorl_verl.data.cli import main_choice, main_math_eval, main_math_train
from echorl_verl.data.math_sets import DAPO_PREFIX, DAPO_SUFFIX
from echorl_verl.data.rows import ROW_SCHEMA, RowError
from echorl_verl.data.templates import ECHO_SYSTEM_PROMPT, MC_INSTRUCTION, VERL_MATH_SUFFIX

BENCH = Path(shared_benchmarks_dir())
needs_bench = pytest.mark.skipif(not (BENCH / "math_eval_suite.parquet").exists(), reason="shared benchmarks absent")


def shared_rows(name: str) -> list[dict]:
    rows = read_rows(str(BENCH / name))
    for r in rows:
        r.pop("__index_level_0__", None)  # a pandas index left in LUFFY's file, not a verl column
    return rows


# ---------------------------------------------------------------- the shared files are the reference


@needs_bench
def test_schema_and_system_prompt_match_the_shared_files():
    for name in ("math_eval_suite.parquet", "arc_c.parquet", "gpqa_diamond.parquet"):
        schema = pq.read_schema(BENCH / name)
        schema = schema.remove(schema.get_field_index("__index_level_0__")) if "__index_level_0__" in schema.names else schema
        assert schema.remove_metadata().equals(ROW_SCHEMA), name
        prompts = pq.read_table(BENCH / name, columns=["prompt"]).column("prompt").to_pylist()
        assert {p[0]["content"] for p in prompts} == {ECHO_SYSTEM_PROMPT}, name
    gpqa_user = pq.read_table(BENCH / "gpqa_diamond.parquet").column("prompt").to_pylist()[0][1]["content"]
    assert gpqa_user.startswith(MC_INSTRUCTION.format(letters="ABCD") + "\n\n")


@needs_bench
@pytest.mark.parametrize("key", ["aime", "aime25", "amc", "math", "minerva", "olympiad_bench"])
def test_math_eval_rebuilds_the_shared_suite_exactly(tmp_path, key):
    """Problems and answers of the shared suite, as a source file, give back the suite's rows byte for byte."""
    expected = [r for r in shared_rows("math_eval_suite.parquet") if r["data_source"] == key]
    records = []
    for r in expected:  # one record per problem (the suite repeats aime/aime25/amc 32 times)
        if r["extra_info"]["index"] == len(records):
            records.append({"problem": r["prompt"][1]["content"], "answer": r["reward_model"]["ground_truth"]})
    src = write_source(tmp_path / f"{key}.jsonl", records)
    out = main_math_eval(["--dataset", key, "--output_dir", str(tmp_path / "out"), "--input", src,
                          "--problem_key", "problem", "--answer_key", "answer"])
    assert read_rows(out) == expected
    assert pq.read_schema(out).remove_metadata().equals(ROW_SCHEMA)


def test_math_eval_hub_columns_repeat_and_verl_template(tmp_path):
    # Hothan/OlympiadBench columns: question + final_answer (a list); a 2-answer row is joined with ", "
    src = write_source(tmp_path / "ob.parquet", [
        {"id": 1, "question": "Find $x$.", "final_answer": ["$2$"], "is_multiple_answer": False},
        {"id": 2, "question": "Find all $n$.", "final_answer": ["$1$", "$3$"], "is_multiple_answer": True},
    ])
    out = main_math_eval(["--dataset", "olympiad_bench", "--output_dir", str(tmp_path), "--input", src,
                          "--repeat", "2", "--template", "verl"])
    verl = lambda q: [{"content": q + " " + VERL_MATH_SUFFIX, "role": "user"}]  # noqa: E731
    assert read_rows(out) == [
        row("olympiad_bench", verl("Find $x$."), "$2$", 0, "default"),
        row("olympiad_bench", verl("Find $x$."), "$2$", 0, "default"),
        row("olympiad_bench", verl("Find all $n$."), "$1$, $3$", 1, "default"),
        row("olympiad_bench", verl("Find all $n$."), "$1$, $3$", 1, "default"),
    ]
    assert VERL_MATH_SUFFIX == "Let's think step by step and output the final answer within \\boxed{}."


def test_amc_float_answers_and_default_repeat(tmp_path):
    """AI-MO/aimo-validation-amc stores answers as floats: written as the shared file has them ("142.0")."""
    src = write_source(tmp_path / "amc.json", [{"id": 0, "problem": "P0", "answer": 142.0, "url": "u"},
                                               {"id": 1, "problem": "P1", "answer": 7.0, "url": "u"}])
    rows = read_rows(main_math_eval(["--dataset", "amc", "--output_dir", str(tmp_path), "--input", src]))
    assert len(rows) == 64
    assert rows[0] == row("amc", echo("P0"), "142.0", 0, "default") == rows[31]
    assert rows[32] == row("amc", echo("P1"), "7.0", 1, "default")


# ---------------------------------------------------------------- math training sets


def test_math_train_openr1_luffy_layout(tmp_path):
    records = [{
        "data_source": "openr1", "ability": "math",
        "prompt": [{"role": "system", "content": "some system prompt"}, {"role": "user", "content": f"Problem {i}"}],
        "target": [{"role": "assistant", "content": "<think>...</think> \\boxed{3}"}],
        "reward_model": {"ground_truth": str(i + 3), "style": "rule"},
        "extra_info": {"index": i, "split": "default"},
    } for i in range(3)]
    out = main_math_train(["--dataset", "openr1", "--output_dir", str(tmp_path),
                           "--input", write_source(tmp_path / "o.parquet", records)])
    assert read_rows(out) == [row("Elliott/Openr1-Math-46k-8192", echo(f"Problem {i}"), str(i + 3), i, "train")
                              for i in range(3)]


def test_math_train_dapo_unwraps_and_deduplicates(tmp_path):
    def rec(problem, answer):
        return {"data_source": "math_dapo", "ability": "MATH", "extra_info": {"index": "x"},
                "prompt": [{"role": "user", "content": DAPO_PREFIX + problem + DAPO_SUFFIX}],
                "reward_model": {"ground_truth": answer, "style": "rule-lighteval/MATH_v2"}}

    src = write_source(tmp_path / "d.jsonl", [rec("What is 1+1?", "2"), rec("What is 1+1?", "2"), rec("2+3?", "5")])
    out = main_math_train(["--dataset", "dapo", "--output_dir", str(tmp_path), "--input", src])
    ds = "BytedTsinghua-SIA/DAPO-Math-17k"
    assert read_rows(out) == [row(ds, echo("What is 1+1?"), "2", 0, "train"), row(ds, echo("2+3?"), "5", 1, "train")]


def test_math_train_lighteval_takes_the_last_boxed_answer(tmp_path):
    src = write_source(tmp_path / "l.json", [
        {"problem": "Half of one?", "level": "Level 1", "type": "Algebra",
         "solution": "Not \\boxed{2}. It is $\\boxed{\\frac{1}{2}}$."},
        {"problem": "Pi?", "level": "Level 2", "type": "Geometry", "solution": "So $\\boxed{\\pi}$"},
    ])
    out = main_math_train(["--dataset", "math_lighteval", "--output_dir", str(tmp_path), "--input", src])
    ds = "DigitalLearningGmbH/MATH-lighteval"
    assert read_rows(out) == [row(ds, echo("Half of one?"), "\\frac{1}{2}", 0, "train"),
                              row(ds, echo("Pi?"), "\\pi", 1, "train")]


def test_math_train_deepscaler(tmp_path):
    src = write_source(tmp_path / "s.json", [{"problem": "Q", "answer": "4", "solution": "..."}])
    out = main_math_train(["--dataset", "deepscaler", "--output_dir", str(tmp_path), "--input", src])
    assert read_rows(out) == [row("agentica-org/DeepScaleR-Preview-Dataset", echo("Q"), "4", 0, "train")]


# ---------------------------------------------------------------- multiple choice


def _arc_records_from_shared(rows):
    """ARC source records (allenai/ai2_arc layout) rebuilt from arc_c.parquet's own user turns."""
    records = []
    for r in rows:
        question, block = r["prompt"][1]["content"].rsplit("\n\n", 1)
        lines = block.rstrip("\n").split("\n")
        labels, texts = zip(*(line.split(") ", 1) for line in lines))
        records.append({"id": f"q{len(records)}", "question": question,
                        "choices": {"text": list(texts), "label": list(labels)},
                        "answerKey": r["reward_model"]["ground_truth"]})
    return records


@needs_bench
def test_arc_c_rebuilds_the_shared_rows(tmp_path):
    shared = shared_rows("arc_c.parquet")
    letter_rows = [r for r in shared if r["reward_model"]["ground_truth"] in "ABCDE"][:200]
    src = write_source(tmp_path / "arc.jsonl", _arc_records_from_shared(letter_rows))
    out = read_rows(main_choice(["--dataset", "arc_c", "--output_dir", str(tmp_path), "--input", src]))
    for i, (got, want) in enumerate(zip(out, letter_rows)):
        assert got == {**want, "ability": "choice", "extra_info": {"index": i, "split": "default"}}
    assert len(out) == len(letter_rows)
    # ARC's numeric labels ("1".."4") become letters: the answer is always a letter
    numeric = [r for r in shared if r["reward_model"]["ground_truth"] in "1234"][:3]
    out = read_rows(main_choice(["--dataset", "arc_c", "--output_dir", str(tmp_path), "--input",
                                 write_source(tmp_path / "n.jsonl", _arc_records_from_shared(numeric))]))
    for got, want in zip(out, numeric):
        k = int(want["reward_model"]["ground_truth"])
        assert got["reward_model"]["ground_truth"] == "ABCD"[k - 1]
        assert "\nA) " in got["prompt"][1]["content"] and "\n1) " not in got["prompt"][1]["content"]


def _gpqa_records(n):
    return [{"Question": f"Question {i}?", "Correct Answer": f"right {i}", "Incorrect Answer 1": f"wrong {i}a",
             "Incorrect Answer 2": f"wrong {i}b", "Incorrect Answer 3": f"wrong {i}c", "Record ID": f"r{i}"}
            for i in range(n)]


def test_gpqa_layout_without_shuffle(tmp_path):
    src = write_source(tmp_path / "g.jsonl", _gpqa_records(1))
    out = main_choice(["--dataset", "gpqa", "--output_dir", str(tmp_path), "--input", src, "--no_shuffle"])
    user = (MC_INSTRUCTION.format(letters="ABCD") + "\n\nQuestion 0?\n\n"
            "A) right 0\nB) wrong 0a\nC) wrong 0b\nD) wrong 0c")
    assert read_rows(out) == [row("gpqa", echo(user), "A", 0, "default", ability="choice")]


def test_gpqa_shuffle_is_seeded_spread_and_keeps_the_answer(tmp_path):
    src = write_source(tmp_path / "g.jsonl", _gpqa_records(40))
    a = main_choice(["--dataset", "gpqa", "--output_dir", str(tmp_path / "a"), "--input", src])
    b = main_choice(["--dataset", "gpqa", "--output_dir", str(tmp_path / "b"), "--input", src])
    c = main_choice(["--dataset", "gpqa", "--output_dir", str(tmp_path / "c"), "--input", src, "--shuffle_seed", "7"])
    assert Path(a).read_bytes() == Path(b).read_bytes()  # deterministic
    rows, rows_c = read_rows(a), read_rows(c)
    letters = [r["reward_model"]["ground_truth"] for r in rows]
    assert len(set(letters)) == 4  # the right answer is not always A
    assert letters != [r["reward_model"]["ground_truth"] for r in rows_c]  # the seed matters
    for i, r in enumerate(rows):
        text = r["prompt"][1]["content"]
        options = dict(line.split(") ", 1) for line in text.split("\n\n")[-1].split("\n"))
        assert sorted(options.values()) == sorted([f"right {i}", f"wrong {i}a", f"wrong {i}b", f"wrong {i}c"])
        assert options[r["reward_model"]["ground_truth"]] == f"right {i}"


def test_mmlu_pro_ten_options(tmp_path):
    opts = [f"opt{j}" for j in range(10)]
    src = write_source(tmp_path / "m.parquet", [
        {"question_id": 70, "question": "Which?", "options": opts, "answer": "J", "answer_index": 9,
         "cot_content": "", "category": "law", "src": "x"},
    ])
    out = main_choice(["--dataset", "mmlu_pro", "--output_dir", str(tmp_path), "--input", src])
    body = "\n".join(f"{string.ascii_uppercase[j]}) opt{j}" for j in range(10))
    user = MC_INSTRUCTION.format(letters="ABCDEFGHIJ") + "\n\nWhich?\n\n" + body
    assert read_rows(out) == [row("mmlu_pro", echo(user), "J", 0, "default", ability="choice")]


# ---------------------------------------------------------------- bad input: clear error, nothing written

BAD_INPUTS = [
    # (main, dataset, records, row index, field)
    (main_math_eval, "aime", [GOOD_AIME, {**GOOD_AIME, "problem": "  "}], 1, "problem"),
    (main_math_eval, "aime", [GOOD_AIME, GOOD_AIME, {"id": 2, "problem": "P"}], 2, "answer"),
    (main_math_eval, "minerva", [{"problem": "P", "answer": "1"}], 0, "question"),
    (main_choice, "arc_c", [{"question": "Q", "choices": {"text": ["a", "b"], "label": ["A", "B"]}, "answerKey": "C"}],
     0, "answerKey"),
    (main_choice, "gpqa", [{"Question": "Q", "Correct Answer": "a", "Incorrect Answer 1": "b",
                            "Incorrect Answer 2": "c"}], 0, "Incorrect Answer 3"),
    (main_choice, "mmlu_pro", [{"question": "Q", "options": ["a", "b"], "answer": "D"}], 0, "answer"),
    (main_choice, "mmlu_pro", [{"question": "Q", "options": ["a", "b", "N/A"], "answer": "C", "answer_index": 2}],
     0, "answer"),  # the answer is a padding option
]


@pytest.mark.parametrize("main,dataset,records,bad_row,bad_field", BAD_INPUTS,
                         ids=[f"{c[1]}-{c[4]}-{i}" for i, c in enumerate(BAD_INPUTS)])
def test_bad_row_of_an_evaluation_set_names_row_and_field_and_writes_nothing(tmp_path, main, dataset, records, bad_row, bad_field):
    src = write_source(tmp_path / "src.jsonl", records)
    out_dir = tmp_path / "out"
    with pytest.raises(RowError) as err:
        main(["--dataset", dataset, "--output_dir", str(out_dir), "--input", src])
    assert f"row {bad_row}, field {bad_field!r}" in str(err.value)
    assert err.value.row == bad_row and err.value.field == bad_field
    assert not out_dir.exists() or os.listdir(out_dir) == []


def test_failure_mid_way_keeps_the_older_output(tmp_path):
    """Row 3 of 5 fails: the previous aime.parquet stays byte for byte, and no temp file is left."""
    out_dir = tmp_path / "out"
    good = write_source(tmp_path / "good.jsonl", [{**GOOD_AIME, "problem": f"P{i}"} for i in range(5)])
    old = main_math_eval(["--dataset", "aime", "--output_dir", str(out_dir), "--input", good, "--repeat", "1"])
    before = Path(old).read_bytes()
    bad = [{**GOOD_AIME, "problem": f"Q{i}"} for i in range(5)]
    bad[3]["answer"] = None
    with pytest.raises(RowError, match="row 3, field 'answer'"):
        main_math_eval(["--dataset", "aime", "--output_dir", str(out_dir),
                        "--input", write_source(tmp_path / "bad.jsonl", bad)])
    assert os.listdir(out_dir) == ["aime.parquet"] and Path(old).read_bytes() == before


def test_interrupt_while_writing_leaves_no_file(tmp_path, monkeypatch):
    """Ctrl-C in the middle of the parquet write: no output, no temp file, the older file untouched."""
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "math.parquet").write_bytes(b"older")
    real_write = parquet_io.pq.write_table

    def write_then_interrupt(table, where, **kw):
        real_write(table.slice(0, 1), where, **kw)  # part of the file is on disk
        raise KeyboardInterrupt

    monkeypatch.setattr(parquet_io.pq, "write_table", write_then_interrupt)
    src = write_source(tmp_path / "m.jsonl", [{"problem": f"P{i}", "answer": str(i)} for i in range(4)])
    with pytest.raises(KeyboardInterrupt):
        main_math_eval(["--dataset", "math", "--output_dir", str(out_dir), "--input", src])
    assert os.listdir(out_dir) == ["math.parquet"] and (out_dir / "math.parquet").read_bytes() == b"older"


def test_output_is_deterministic(tmp_path):
    src = write_source(tmp_path / "a.json", [{**GOOD_AIME, "problem": f"P{i}"} for i in range(3)])
    a = main_math_eval(["--dataset", "aime", "--output_dir", str(tmp_path / "1"), "--input", src])
    b = main_math_eval(["--dataset", "aime", "--output_dir", str(tmp_path / "2"), "--input", src])
    assert Path(a).read_bytes() == Path(b).read_bytes()


# ---------------------------------------------------------------- the scripts, as a user runs them


def run_script(args, env=None, timeout=120):
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def test_script_cli_success_and_error_exit(tmp_path):
    good = write_source(tmp_path / "g.jsonl", [{"problem": "P", "answer": "1"}])
    ok = run_script(["data_prep/math_eval.py", "--dataset", "math", "--output_dir", str(tmp_path / "o"),
                     "--input", good])
    assert ok.returncode == 0, ok.stderr
    assert read_rows(str(tmp_path / "o" / "math.parquet")) == [row("math", echo("P"), "1", 0, "default")]
    bad = write_source(tmp_path / "b.jsonl", [{"problem": "P", "answer": "1"}, {"problem": "P2"}])
    err = run_script(["data_prep/math_eval.py", "--dataset", "math", "--output_dir", str(tmp_path / "e"),
                      "--input", bad])
    assert err.returncode == 1
    assert "row 1, field 'answer'" in err.stderr and "Traceback" not in err.stderr
    assert not (tmp_path / "e" / "math.parquet").exists()


def test_hub_path_is_datasets_load_dataset_and_fails_clearly_offline(tmp_path):
    """No hub here: the real datasets.load_dataset call runs in offline mode and the error says what to do."""
    env = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    res = run_script(["data_prep/math_eval.py", "--dataset", "aime", "--output_dir", str(tmp_path / "o")], env=env)
    assert res.returncode == 1
    assert "could not load HuggingFaceH4/aime_2024 split=train from the hub" in res.stderr
    assert "--input" in res.stderr
    assert not (tmp_path / "o").exists() or os.listdir(tmp_path / "o") == []
