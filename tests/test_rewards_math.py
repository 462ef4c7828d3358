"""echorl_verl.rewards: math scoring, the data_source registry, and verl 0.9.1 integration.

Runs the real math-verify in the real worker processes, verl's own loader
(``get_custom_reward_fn`` with ``pkg://``, ``load_reward_manager`` with ``reward_kwargs``) and verl's
NaiveRewardManager; both math formats (the default boxed check and the authors' ``math_format=think``).
"""

import glob
import os
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest

from echo_testlib import shared_benchmarks_dir
from echorl_verl.rewards import KNOWN_DATA_SOURCES, RESULT_KEYS, compute_score, math_golds
from echorl_verl.rewards.extract import last_boxed, strip_thinking, think_solution

BENCH = shared_benchmarks_dir()
MATH_FILES = [f"{BENCH}/math_eval_suite.parquet", f"{BENCH}/math_lighteval_with_solutions.parquet"]
needs_bench = pytest.mark.skipif(not os.path.exists(MATH_FILES[0]), reason="benchmark parquet files not on this machine")


# ---------- extraction ----------
@pytest.mark.parametrize(
    "response, expected",
    [
        ("x \\boxed{1} then \\boxed{\\frac{a}{b}}", "\\frac{a}{b}"),
        ("\\boxed{\\left\\{ 1, 2 \\right\\}}", "\\left\\{ 1, 2 \\right\\}"),
        ("<think>\\boxed{7}</think> so \\fbox{8}", "8"),
        ("<think>\\boxed{7}</think> no box after thinking", None),
        ("\\boxed 5.", "5"),
        ("done \\boxed{12", None),  # truncated last box: no answer (as verl)
        ("\\boxed{a}{b}", "a"),
        ("no answer", None),
    ],
)
def test_last_boxed(response, expected):
    assert last_boxed(response) == expected


def test_strip_thinking_uses_last_close_tag():
    assert strip_thinking("a</think>b</think>c") == "c"


# ---------- math equivalence (ground truths as the sources write them) ----------
@pytest.mark.parametrize(
    "answer, gold",
    [
        ("142", "142.0"),
        ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3, \\pi/2)"),
        ("5", "5\\text{ cm}"),
        ("5\\text{ cm}", "5"),
        ("\\$18.90", "18.90"),
        ("30", "30^\\circ"),
        ("75\\%", "75"),  # percent is a unit (as verl's MATH normalisation)
        ("75", "75\\%"),
        ("\\frac{9}{17}", "$\\frac{9}{17}$"),
        ("\\text{Monday}", "\\text{Monday}"),
        ("\\text{(C)}", "\\text{(C)}"),
        ("14{,}916", "14916"),
        ("x \\in [-2,7]", "[-2,7]"),
        ("2 - 2\\sqrt{2}", "-2\\sqrt2 + 2"),
    ],
)
def test_equivalent_answers_score_one(answer, gold):
    r = compute_score("math", f"so the answer is \\boxed{{{answer}}}", gold)
    assert r == {"score": 1.0, "acc": 1.0, "pred": answer, "error": "", "infra_error": 0.0}


@pytest.mark.parametrize(
    "answer, gold",
    [
        ("143", "142.0"),
        ("\\left( 4, \\frac{\\pi}{2} \\right)", "\\left( 3, \\frac{\\pi}{2} \\right)"),
        ("\\frac{2}{3} E_{1}+\\frac{2}{3} E_{2}", "\\frac{1}{3} E_{1}+\\frac{2}{3} E_{2}"),  # fragment fallback bug
        ("\\text{Tuesday}", "\\text{Monday}"),
        ("0.75", "75\\%"),  # percent is a unit, not a factor 1/100
        ("", "0"),
    ],
)
def test_wrong_answers_score_zero(answer, gold):
    r = compute_score("aime", f"\\boxed{{{answer}}}", gold)
    assert r["score"] == 0.0 and r["acc"] == 0.0 and r["error"] == ""


def test_no_box_scores_zero_without_error():
    assert compute_score("amc", "The answer is 12", "12") == {"score": 0.0, "acc": 0.0, "pred": "", "error": "",
                                                              "infra_error": 0.0}


def test_ground_truth_forms():
    assert math_golds({"question": "q", "target": "5"}) == ["5"]
    assert math_golds(["1", "2"]) == ["1", "2"]
    assert math_golds(np.array(["3", "4"])) == ["3", "4"]
    assert math_golds(7) == ["7"]
    assert compute_score("math", "\\boxed{2}", ["1", "2"])["score"] == 1.0
    assert compute_score("DigitalLearningGmbH/MATH-lighteval", "\\boxed{5}", {"question": "q", "target": "5"})["score"] == 1.0


@pytest.mark.parametrize("bad", [{"question": "q"}, "", [], ["", " "], None, {"target": None}, [1.5, object()]])
def test_malformed_math_ground_truth_is_loud(bad):
    with pytest.raises(ValueError, match="ground_truth"):
        compute_score("math", "\\boxed{1}", bad)


def test_unknown_data_source_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown data_source 'gsm8k'.*'aime'.*'mmlu_pro'"):
        compute_score("gsm8k", "\\boxed{1}", "1")


def test_registry_covers_every_benchmark_file():
    """Every data_source of the shared benchmark rows is scored (the catalog test checks the rest)."""
    for path in glob.glob(f"{BENCH}/*.parquet"):
        assert set(pd.read_parquet(path, columns=["data_source"])["data_source"]) <= KNOWN_DATA_SOURCES, path


def test_toy_source_is_delegated_to_the_toy_reward():
    pytest.importorskip("echorl_verl.toy.reward")
    assert compute_score("echorl/addition", "1+2=3 write 3\nanswer: 3", "3") == {
        "score": 1.0, "acc": 1.0, "pred": "", "error": "", "infra_error": 0.0}  # fmt: skip
    assert compute_score("echorl/addition", "answer: 4", "3")["score"] == 0.0


# ---------- benchmark rows (deterministic sample; benchmarks/check_reward_agreement.py does all rows) ----------
def benchmark_golds() -> list[tuple[str, str]]:
    """Every unique (data_source, ground truth) of the shared math rows, sorted."""
    rows = set()
    for path in MATH_FILES:
        df = pd.read_parquet(path)
        for ds, rm in zip(df["data_source"], df["reward_model"]):
            gt = rm["ground_truth"]
            rows.add((ds, gt["target"] if isinstance(gt, dict) else gt))
    return sorted(rows)


def changed_digit(gold: str) -> str | None:
    """``gold`` with its first digit changed (a wrong answer of the same form), None without a digit."""
    m = re.search(r"\d", gold)
    if not m:
        return None
    d = m.group()
    return gold[: m.start()] + ("8" if d == "9" else str(int(d) + 1)) + gold[m.end() :]


@needs_bench
def test_benchmark_ground_truths_match_themselves_and_reject_a_changed_digit():
    sample = benchmark_golds()[::5]  # every 5th unique (data_source, answer): 350+ rows, all sources

    def check(row):
        ds, gold = row
        right = compute_score(ds, f"<think>\\boxed{{0}}</think> final: \\boxed{{{gold}}}", gold)
        w = changed_digit(gold)
        return row, right, None if w is None else compute_score(ds, f"\\boxed{{{w}}}", gold)

    with ThreadPoolExecutor(4) as ex:
        results = list(ex.map(check, sample))
    assert len({ds for ds, _ in sample}) == 7
    misses = [(row, r) for row, r, _ in results if r["score"] != 1.0]
    false_pos = [row for row, _, w in results if w is not None and w["score"] != 0.0]
    assert not misses and not false_pos


# ---------- the authors' math reward: math_format=think ----------
@pytest.mark.parametrize("response, expected", [
    ("reasoning</think> answer", " answer"),
    ("a</think>b</think>c", "b"),  # their split("</think>")[1]: up to the next </think>
    ("<think>x</think>y", "y"),
    ("never closed \\boxed{1}", None),
])
def test_think_solution_is_the_authors_split(response, expected):
    assert think_solution(response) == expected


@pytest.mark.parametrize("response, score, pred", [
    ("work \\boxed{7}</think> The answer is $42$.", 1.0, "42"),  # math-verify's default parse, not only a box
    ("I think it is \\boxed{42}", 0.0, ""),  # no </think>: 0 (the default format scores this 1)
    ("\\boxed{42}</think> so \\boxed{41}", 0.0, "41"),  # only the text after </think> counts
    ("x</think> \\boxed{42} </think> \\boxed{41}", 1.0, "42"),  # between the first and second </think>
])
def test_think_format(response, score, pred):
    r = compute_score("aime", response, "42", math_format="think")
    assert r == {"score": score, "acc": score, "pred": pred, "error": "", "infra_error": 0.0}
    assert compute_score("aime", "I think it is \\boxed{42}", "42")["score"] == 1.0  # default unchanged


def test_unknown_math_format_is_loud():
    with pytest.raises(ValueError, match="math_format='latex': choose one of boxed, think"):
        compute_score("math", "\\boxed{1}", "1", math_format="latex")


# Where the authors' reward and ours disagree on the shared rows (all 1,763 unique ground truths, measured
# with math-verify 0.9.0): their parse of "$" + gold + "$" keeps a fragment of these two Minerva answers.
THINK_MISS = ("minerva", "x_{0} \\cos (\\omega t)+$ $\\dot{x}_{0} \\sin (\\omega t) / \\omega")
THINK_FALSE_POSITIVE = ("minerva", "\\hbar \\omega(v+1 / 2)-\\frac{E_{0}^{2} e^{2}}{2 m \\omega^{2}}")


@needs_bench
def test_think_format_on_the_benchmark_rows():
    """As the default's test: the right answer after </think> scores 1, the same without </think> 0, a changed
    digit 0; the two rows where the authors' check errs are pinned (the default format gets both right)."""
    golds = benchmark_golds()
    assert THINK_MISS in golds and THINK_FALSE_POSITIVE in golds
    sample = sorted(set(golds[::5]) - {THINK_MISS, THINK_FALSE_POSITIVE})

    def check(row):
        ds, gold = row
        right = compute_score(ds, f"\\boxed{{0}}</think> final: \\boxed{{{gold}}}", gold, math_format="think")
        unclosed = compute_score(ds, f"final: \\boxed{{{gold}}}", gold, math_format="think")
        w = changed_digit(gold)
        wrong = None if w is None else compute_score(ds, f"</think> \\boxed{{{w}}}", gold, math_format="think")
        return row, right, unclosed, wrong

    with ThreadPoolExecutor(4) as ex:
        results = list(ex.map(check, sample))
    assert len({ds for ds, _ in sample}) == 7
    assert [row for row, r, _, _ in results if r["score"] != 1.0 or r["error"]] == []
    assert [row for row, _, u, _ in results if u["score"] != 0.0] == []
    assert [row for row, _, _, w in results if w is not None and w["score"] != 0.0] == []
    ds, gold = THINK_MISS
    assert compute_score(ds, f"</think> \\boxed{{{gold}}}", gold, math_format="think")["score"] == 0.0
    assert compute_score(ds, f"</think> \\boxed{{{gold}}}", gold)["score"] == 1.0
    ds, gold = THINK_FALSE_POSITIVE
    wrong = f"</think> \\boxed{{{changed_digit(gold)}}}"
    assert compute_score(ds, wrong, gold, math_format="think")["score"] == 1.0
    assert compute_score(ds, wrong, gold)["score"] == 0.0


# ---------- bounded time, from threads ----------
SLOW = "\\boxed{9^{9^{9^{9^{9^{9}}}}} - 9^{9^{9^{9^{9^{9}}}}}}"


def test_calls_from_worker_threads_are_bounded_and_recover_after_a_kill():
    """verl calls the reward in executor threads, where math-verify's signal timeouts cannot work."""
    out = {}

    def in_thread():
        t0 = time.monotonic()
        out["slow"] = compute_score("math", SLOW, "0", math_timeout_s=1.0)  # parent deadline < internal 3 s
        out["slow_s"] = time.monotonic() - t0
        out["next"] = compute_score("math", "\\boxed{\\frac{1}{2}}", "0.5")

    t = threading.Thread(target=in_thread)
    t.start()
    t.join(60)
    assert out["slow"]["score"] == 0.0 and "timed out" in out["slow"]["error"]
    assert out["slow_s"] < 2.5, out["slow_s"]
    assert out["next"] == {"score": 1.0, "acc": 1.0, "pred": "\\frac{1}{2}", "error": "", "infra_error": 0.0}


def test_many_threads_share_the_workers_fairly():
    """More threads than workers: no call starves (a plain Semaphore starved some for 25 s)."""

    def one(i):
        t0 = time.monotonic()
        r = compute_score("minerva", f"\\boxed{{{i}/7}}", f"\\frac{{{i}}}{{7}}")
        return r["score"], time.monotonic() - t0

    compute_score("math", "\\boxed{1}", "1")  # start the workers
    with ThreadPoolExecutor(16) as ex:
        results = list(ex.map(one, range(200)))
    assert all(s == 1.0 for s, _ in results)
    assert max(dt for _, dt in results) < 5.0


def test_overlong_box_is_an_error_not_a_hang():
    r = compute_score("math", "\\boxed{" + "1+" * 5000 + "1}", "10001")
    assert r["score"] == 0.0 and "longer than" in r["error"]


# ---------- verl 0.9.1 integration ----------
def test_verl_loads_it_through_pkg_path(tmp_path):
    from echo_testlib import compose_config
    from verl.trainer.ppo.reward import get_custom_reward_fn

    config = compose_config(
        [
            "reward.custom_reward_function.path=pkg://echorl_verl.rewards",
            "reward.custom_reward_function.name=compute_score",
            "+reward.custom_reward_function.reward_kwargs.math_timeout_s=7",
        ]
    )
    fn = get_custom_reward_fn(config)
    assert fn.func.__name__ == "_call_with_kwargs" and fn.args[0] is compute_score
    assert fn(data_source="aime", solution_str="\\boxed{042}", ground_truth="42", extra_info={})["score"] == 1.0


def test_math_format_reaches_compute_score_through_verls_reward_loading():
    """reward_kwargs travel as in training: verl's load_reward_manager (the reward loop's own loader) ->
    get_custom_reward_fn -> _call_with_kwargs -> compute_score(..., math_format="think")."""
    import torch
    from verl import DataProto
    from verl.trainer.ppo.reward import load_reward_manager

    from echo_testlib import compose_config

    tok = _byte_tokenizer()
    base = ["reward.custom_reward_function.path=pkg://echorl_verl.rewards",
            "reward.custom_reward_function.name=compute_score"]
    scores = {}
    for fmt in ("boxed", "think"):
        extra = [] if fmt == "boxed" else ["+reward.custom_reward_function.reward_kwargs.math_format=think"]
        manager = load_reward_manager(compose_config(base + extra), tok)
        for text in ("so \\boxed{12}", "so</think> \\boxed{12}"):
            ids = tok(text)["input_ids"]
            data = DataProto.from_dict(
                tensors={"prompts": torch.tensor([[5]]), "responses": torch.tensor([ids]),
                         "attention_mask": torch.ones(1, 1 + len(ids), dtype=torch.long)},
                non_tensors={"data_source": np.array(["aime"]), "reward_model": np.array([{"ground_truth": "12"}]),
                             "extra_info": np.array([{}])})  # fmt: skip
            out = manager.loop.run_until_complete(manager.run_single(data))
            scores[fmt, text] = out["reward_score"]
            assert tuple(out["reward_extra_info"]) == RESULT_KEYS
    assert scores == {("boxed", "so \\boxed{12}"): 1.0, ("boxed", "so</think> \\boxed{12}"): 1.0,
                      ("think", "so \\boxed{12}"): 0.0, ("think", "so</think> \\boxed{12}"): 1.0}


def _byte_tokenizer():
    """A real HF fast tokenizer (byte-level BPE trained here), since no model can be downloaded."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(["\\boxed{12} Answer: C ```python\ndef f(x):\n    return x\n```"] * 10, vocab_size=300)
    return PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, pad_token="<pad>")


def test_verl_naive_reward_manager_with_a_mixed_batch():
    """verl's NaiveRewardManager scores rows of every kind; the per-key arrays the reward loop builds
    from the FIRST row's keys (verl/experimental/reward_loop/reward_loop.py, compute_rm_score) work."""
    import torch
    from verl import DataProto
    from verl.experimental.reward_loop.reward_manager.naive import NaiveRewardManager
    from verl.trainer.ppo.reward import get_custom_reward_fn
    from omegaconf import OmegaConf

    tok = _byte_tokenizer()
    config = OmegaConf.create({"reward": {"custom_reward_function": {"path": "pkg://echorl_verl.rewards", "name": "compute_score"}}})
    manager = NaiveRewardManager(config, tok, get_custom_reward_fn(config))
    fn_gt = '{"kind": "functional", "entry_point": "f", "test": "def check(c):\\n    assert c(3) == 3"}'
    rows = [
        ("math", "so \\boxed{12}", "12.0", 1.0),
        ("gpqa", "Answer: C", "C", 1.0),
        ("arc_c", "Answer: C", "D", 0.0),
        ("humaneval", "```python\ndef f(x):\n    return x\n```", fn_gt, 1.0),
        ("aime", "no answer at all", "7", 0.0),
    ]
    outputs = []
    for ds, text, gt, expected in rows:
        ids = tok(text)["input_ids"]
        resp = torch.tensor([ids + [tok.pad_token_id] * 3])
        prompt = torch.tensor([[tok.pad_token_id, 5]])
        mask = torch.cat([torch.ones(1, 2), torch.ones(1, len(ids)), torch.zeros(1, 3)], dim=1).long()
        data = DataProto.from_dict(
            tensors={"prompts": prompt, "responses": resp, "attention_mask": mask},
            non_tensors={"data_source": np.array([ds]), "reward_model": np.array([{"ground_truth": gt}]),
                         "extra_info": np.array([{}])},  # fmt: skip
        )
        out = manager.loop.run_until_complete(manager.run_single(data))
        assert out["reward_score"] == expected, (ds, out)
        outputs.append(out)
    infos = [o["reward_extra_info"] for o in outputs]
    keys = list(infos[0].keys())
    assert tuple(keys) == RESULT_KEYS
    arrays = {k: np.array([info[k] for info in infos]) for k in keys}  # as compute_rm_score does
    assert arrays["acc"].tolist() == [1.0, 1.0, 0.0, 1.0, 0.0] and arrays["pred"].tolist()[:3] == ["12", "C", "C"]
