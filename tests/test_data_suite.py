"""The data suite on real source schemas (issue 10): what a set does with the rows a source gets wrong, the
summary of each build, and data_prep/all.sh building every set whatever fails.

Training sets skip and count the records they cannot use (DeepScaleR's answerless rows); evaluation sets
keep every row or fail with the row and field; MMLU-Pro's "N/A" padding is dropped; a gated or unreachable
hub is classified with its fix; all.sh prints a table and exits 1 when a set failed, leaving no partial file.
"""

from __future__ import annotations

import json
import os
import string
import subprocess
import sys

import pytest

from data_testlib import GOOD_AIME, REPO, echo, read_rows, row, write_source
from echorl_verl.data.cli import main_choice, main_math_eval, main_math_train
from echorl_verl.data.math_sets import DAPO_PREFIX, DAPO_SUFFIX
from echorl_verl.data.outcome import NoRows
from echorl_verl.data.rows import RowError
from echorl_verl.data.sources import SourceError
from echorl_verl.data.templates import MC_INSTRUCTION

# ---------------------------------------------------------------- training sets skip and count unusable records


def _openr1(problem, truth):
    reward = {"style": "rule"} if truth is None else {"ground_truth": truth, "style": "rule"}
    return {"data_source": "openr1", "prompt": [{"role": "user", "content": problem}], "reward_model": reward}


def _dapo(problem, wrapped=True):
    text = DAPO_PREFIX + problem + DAPO_SUFFIX if wrapped else problem
    return {"prompt": [{"role": "user", "content": text}], "reward_model": {"ground_truth": "1"}}


BAD_TRAIN = [
    # (dataset, [good, bad as the source has it, good], field of the bad one)
    ("deepscaler", [{"problem": "Q0", "answer": "4", "solution": "s"}, {"problem": "Q1", "answer": "", "solution": "s"},
                    {"problem": "Q2", "answer": "5", "solution": "s"}], "answer"),
    ("deepscaler", [{"problem": "Q0", "answer": "4", "solution": "s"}, {"problem": "Q1", "answer": None, "solution": "s"},
                    {"problem": "Q2", "answer": "5", "solution": "s"}], "answer"),
    ("math_lighteval", [{"problem": "Q0", "solution": "\\boxed{1}"}, {"problem": "Q1", "solution": "no box here"},
                        {"problem": "Q2", "solution": "\\boxed{2}"}], "solution"),
    ("dapo", [_dapo("Q0"), _dapo("Q1", wrapped=False), _dapo("Q2")], "prompt"),
    ("openr1", [_openr1("Q0", "1"), _openr1("Q1", None), _openr1("Q2", "2")], "reward_model.ground_truth"),
]


@pytest.mark.parametrize("dataset,records,bad_field", BAD_TRAIN, ids=[f"{c[0]}-{i}" for i, c in enumerate(BAD_TRAIN)])
def test_training_set_skips_and_counts_unusable_records(tmp_path, capsys, dataset, records, bad_field):
    summary = tmp_path / "summary.json"
    out = main_math_train(["--dataset", dataset, "--output_dir", str(tmp_path / "out"), "--summary", str(summary),
                           "--input", write_source(tmp_path / "src.parquet", records)])
    rows = read_rows(out)
    assert [r["prompt"][-1]["content"] for r in rows] == ["Q0", "Q2"]
    assert [r["extra_info"]["index"] for r in rows] == [0, 1]
    reason = f"without a usable {bad_field!r}"
    got = json.loads(summary.read_text())
    assert got["status"] == "ok" and (got["records"], got["rows"], got["skipped"]) == (3, 2, {reason: 1})
    assert f"skipped 1 of 3 records: {reason} (first: " in capsys.readouterr().out


def test_deepscaler_in_the_hub_schema_with_answerless_rows(tmp_path):
    """agentica-org/DeepScaleR-Preview-Dataset columns (problem, answer, solution); the hub discussion "There
    are no answers for 6 samples": an empty or null answer. The set is written without them and says so."""
    records = [{"problem": f"P{i}", "answer": str(i), "solution": f"... \\boxed{{{i}}}"} for i in range(8)]
    records[2]["answer"], records[5]["answer"] = "", None
    summary = tmp_path / "deepscaler.json"
    out = main_math_train(["--dataset", "deepscaler", "--output_dir", str(tmp_path), "--summary", str(summary),
                           "--input", write_source(tmp_path / "ds.parquet", records)])
    ds = "agentica-org/DeepScaleR-Preview-Dataset"
    assert read_rows(out) == [row(ds, echo(f"P{i}"), str(i), k, "train") for k, i in enumerate([0, 1, 3, 4, 6, 7])]
    assert json.loads(summary.read_text())["skipped"] == {"without a usable 'answer'": 2}


def test_training_set_with_no_usable_record_fails_and_writes_nothing(tmp_path):
    summary = tmp_path / "s.json"
    src = write_source(tmp_path / "s.jsonl", [{"problem": "Q", "answer": ""}, {"problem": "Q2"}])
    with pytest.raises(NoRows, match="no usable record of 2 .*2 x without a usable 'answer'"):
        main_math_train(["--dataset", "deepscaler", "--output_dir", str(tmp_path / "out"), "--input", src,
                         "--summary", str(summary)])
    assert not (tmp_path / "out").exists() or os.listdir(tmp_path / "out") == []
    assert json.loads(summary.read_text())["reason"] == "no usable record"


def test_evaluation_set_failure_is_summarised_with_row_and_field(tmp_path):
    summary = tmp_path / "s.json"
    src = write_source(tmp_path / "s.jsonl", [{"problem": "P", "answer": "1"}, {"problem": "P2", "answer": None}])
    with pytest.raises(RowError):
        main_math_eval(["--dataset", "math", "--output_dir", str(tmp_path / "out"), "--input", src,
                        "--summary", str(summary)])
    got = json.loads(summary.read_text())
    assert got["status"] == "failed" and got["reason"].startswith("bad record: row 1, field 'answer'")
    assert "row 1, field 'answer'" in got["error"]


# ---------------------------------------------------------------- MMLU-Pro's "N/A" padding


def _mmlu(qid, options, answer, index):
    return {"question_id": qid, "question": f"Q{qid}?", "options": options, "answer": answer, "answer_index": index,
            "cot_content": "", "category": "law", "src": "ori_mmlu-law"}


def test_mmlu_pro_drops_na_options_and_the_answer_follows_its_option(tmp_path):
    """TIGER-Lab/MMLU-Pro pads to 10 options with "N/A" (the official preprocessing drops them). Padding at the
    end keeps the letter; padding before the answer moves it to the answer's new letter."""
    tail = _mmlu(1, ["o0", "o1", "o2", "o3", "o4", "o5", "o6", "N/A", "N/A", "N/A"], "C", 2)
    middle = _mmlu(2, ["o0", "N/A", "o2", "o3"], "D", 3)
    summary = tmp_path / "m.json"
    out = main_choice(["--dataset", "mmlu_pro", "--output_dir", str(tmp_path), "--summary", str(summary),
                       "--input", write_source(tmp_path / "m.parquet", [tail, middle])])
    rows = read_rows(out)
    for r, texts, letter in [(rows[0], [f"o{j}" for j in range(7)], "C"), (rows[1], ["o0", "o2", "o3"], "C")]:
        letters = string.ascii_uppercase[: len(texts)]
        body = "\n".join(f"{x}) {t}" for x, t in zip(letters, texts))
        qid = 1 if r is rows[0] else 2
        assert r["prompt"][1]["content"] == MC_INSTRUCTION.format(letters=letters) + f"\n\nQ{qid}?\n\n" + body
        assert r["reward_model"]["ground_truth"] == letter
    assert dict(line.split(") ", 1) for line in rows[1]["prompt"][1]["content"].split("\n\n")[-1].split("\n"))["C"] == "o3"
    assert json.loads(summary.read_text())["normalised"] == {"'N/A' padding options dropped": 2}


# ---------------------------------------------------------------- hub failures are classified


def test_gated_dataset_failure_says_accept_the_terms_and_log_in(tmp_path, monkeypatch):
    """datasets' real load path: the hub answers 401 for a gated repo (GatedRepoError, here raised by the file
    download instead of the network), which datasets turns into "... is a gated dataset on the Hub"."""
    import datasets
    import httpx
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError

    from echorl_verl.data.sources import GATED

    def gated(self, repo_id, *args, **kwargs):
        request = httpx.Request("GET", f"https://huggingface.co/datasets/{repo_id}/resolve/main/README.md")
        raise GatedRepoError("401 Client Error: gated repo", response=httpx.Response(401, request=request))

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(HfApi, "hf_hub_download", gated)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    summary = tmp_path / "gpqa.json"
    with pytest.raises(SourceError, match="is a gated dataset on the Hub") as err:
        main_choice(["--dataset", "gpqa", "--output_dir", str(tmp_path / "out"), "--summary", str(summary)])
    assert err.value.reason == GATED == "gated: accept the terms on the Hub and `huggingface-cli login`"
    assert json.loads(summary.read_text())["reason"] == GATED
    assert not (tmp_path / "out").exists()


def test_all_sh_uses_local_inputs(tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    write_source(inputs / "aime.jsonl", [GOOD_AIME])
    write_source(inputs / "deepscaler.json", [{"problem": "Q", "answer": "4"}])
    res = subprocess.run(["bash", "data_prep/all.sh"], cwd=REPO, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "OUTPUT_DIR": str(tmp_path / "out"), "INPUT_DIR": str(inputs),
                              "PYTHON": sys.executable, "SETS": "aime deepscaler"})
    assert res.returncode == 0, res.stderr
    assert sorted(os.listdir(tmp_path / "out")) == ["aime.parquet", "deepscaler.parquet"]
    assert len(read_rows(str(tmp_path / "out" / "aime.parquet"))) == 32


def run_all_sh(tmp_path, inputs, sets, extra_env=None):
    env = {**os.environ, "OUTPUT_DIR": str(tmp_path / "out"), "INPUT_DIR": str(inputs), "PYTHON": sys.executable,
           "SETS": sets, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
           **(extra_env or {})}
    return subprocess.run(["bash", "data_prep/all.sh"], cwd=REPO, capture_output=True, text=True, timeout=300, env=env)


def test_all_sh_builds_every_set_despite_failures_and_prints_the_summary(tmp_path):
    """A training set with an answerless row, a good set, an evaluation set with a bad row (an older file of
    it exists) and a set whose hub is unreachable: all four are attempted, the table says what happened to
    each, the exit status is 1, no partial or temp file is left and the older file is untouched."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    write_source(inputs / "deepscaler.parquet", [{"problem": "Q", "answer": "4", "solution": "s"},
                                                  {"problem": "Q2", "answer": "", "solution": "s"}])
    write_source(inputs / "aime.jsonl", [GOOD_AIME])
    write_source(inputs / "math.jsonl", [{"problem": "P", "answer": "1"}, {"problem": "P2"}])
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "math.parquet").write_bytes(b"older")
    res = run_all_sh(tmp_path, inputs, "math minerva aime deepscaler")
    assert res.returncode == 1, res.stdout + res.stderr
    assert sorted(os.listdir(tmp_path / "out")) == ["aime.parquet", "deepscaler.parquet", "math.parquet"]
    assert (tmp_path / "out" / "math.parquet").read_bytes() == b"older"
    table = res.stdout[res.stdout.index("== summary"):].splitlines()[1:]
    assert [line.split()[0] for line in table[1:5]] == ["deepscaler", "aime", "math", "minerva"]  # catalog order
    assert table[1].split()[1] == "1" and "1 without a usable 'answer'" in table[1] and table[1].endswith("ok")
    assert table[2].split()[1] == "32" and table[2].endswith("ok")
    assert "FAILED bad record: row 1, field 'answer'" in table[3] and "an older math.parquet is left as it was" in table[3]
    assert "FAILED hub unreachable" in table[4]
    assert table[5] == f"2 of 4 set(s) built in {tmp_path / 'out'}; FAILED: math minerva"
    assert "math: " in res.stderr and "row 1, field 'answer'" in res.stderr


def test_all_sh_refuses_an_unknown_set_name(tmp_path):
    res = run_all_sh(tmp_path, tmp_path, "aime gsm8k")
    assert res.returncode == 1 and "unknown set 'gsm8k'" in res.stderr
    assert not (tmp_path / "out").exists()
