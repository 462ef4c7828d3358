"""echorl_verl.rewards: multiple-choice scoring (arc_c, gpqa, mmlu_pro)."""

import os

import pandas as pd
import pytest

from echo_testlib import shared_benchmarks_dir
from echorl_verl.rewards import compute_score
from echorl_verl.rewards.multiple_choice import extract_choice

BENCH = shared_benchmarks_dir()


@pytest.mark.parametrize(
    "response, label",
    [
        ("\\boxed{C}", "C"),
        ("\\boxed{\\text{C}}", "C"),
        ("\\boxed{\\textbf{(C)}}", "C"),
        ("\\boxed{c}", "C"),
        ("\\boxed{C. Paris}", "C"),
        ("$\\boxed{3}$", "3"),
        ("Answer: C", "C"),
        ("**Answer:** D", "D"),
        ("Answer: **B**", "B"),
        ("The answer is (C)", "C"),
        ("The correct answer is option B.", "B"),
        ("ANSWER: J", "J"),
        ("so the answer is 4", "4"),
        ("I pick **C**", "C"),
        ("Reasoning...\n(B)", "B"),
        ("Reasoning...\nA.", "A"),
        ("<think>Answer: A</think>Answer: B", "B"),
    ],
)
def test_answer_forms(response, label):
    assert extract_choice(response) == label


@pytest.mark.parametrize(
    "response, label",
    [
        ("Answer: (A) ... no wait, the answer is B", "B"),  # the last explicit form wins
        ("\\boxed{A} hmm, actually Answer: D", "D"),
        ("Answer: D. Double-check: \\boxed{A}", "A"),
        ("Options **A** and **B** look close. The answer is C", "C"),
    ],
)
def test_last_explicit_form_wins(response, label):
    assert extract_choice(response) == label


@pytest.mark.parametrize(
    "response",
    [
        "the answer is a bit unclear",  # lower-case article, not option A
        "Answer: Carbon",  # a word, not a label
        "I think it's C-ish but not sure",
        "<think>Answer: A</think>",  # only inside the thinking
        "",
        "\\boxed{}",
        "\\boxed{CD}",
    ],
)
def test_no_answer(response):
    assert extract_choice(response) is None


def test_scores_and_keys():
    assert compute_score("gpqa", "Answer: C", "C") == {"score": 1.0, "acc": 1.0, "pred": "C", "error": "", "infra_error": 0.0}
    assert compute_score("mmlu_pro", "\\boxed{I}", "J") == {"score": 0.0, "acc": 0.0, "pred": "I", "error": "", "infra_error": 0.0}
    assert compute_score("arc_c", "no idea", "A") == {"score": 0.0, "acc": 0.0, "pred": "", "error": "", "infra_error": 0.0}
    assert compute_score("arc_c", "The answer is (2)", " 2 ")["score"] == 1.0
    assert compute_score("gpqa", "Answer: c", "(C)")["score"] == 0.0  # lower case outside a box is not a label


@pytest.mark.parametrize("bad", ["", "AB", "Paris", "0", None, "10"])
def test_malformed_label_ground_truth_is_loud(bad):
    with pytest.raises(ValueError, match="option label"):
        compute_score("gpqa", "Answer: A", bad)


@pytest.mark.skipif(not os.path.exists(f"{BENCH}/arc_c.parquet"), reason="benchmark files not on this machine")
@pytest.mark.parametrize("name", ["arc_c", "gpqa_diamond"])
def test_every_benchmark_row(name):
    df = pd.read_parquet(f"{BENCH}/{name}.parquet")
    for ds, rm in zip(df["data_source"], df["reward_model"]):
        gold = rm["ground_truth"]
        labels = "1234" if gold.isdigit() else "ABCD"
        wrong = labels[(labels.index(gold) + 1) % 4]
        assert compute_score(ds, f"<think>maybe \\boxed{{{wrong}}}</think> So \\boxed{{{gold}}}.", gold)["score"] == 1.0
        assert compute_score(ds, f"Answer: {wrong}", gold)["score"] == 0.0
