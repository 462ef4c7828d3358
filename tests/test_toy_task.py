"""The toy addition task: worked solutions, tokenizer round trip, reward, parquet schema, build cache."""

import dataclasses
import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from echorl_verl.toy import DATA_SOURCE
from echorl_verl.toy.build import QUICK, BuildSettings, build, is_complete, paths
from echorl_verl.toy.data import REQUIRED_COLUMNS, make_splits, write_parquet
from echorl_verl.toy.reward import compute_score, extract_answer
from echorl_verl.toy.task import Problem, sample_problems, worked_solution
from echorl_verl.toy.tokenizer import EOS, PAD, build_tokenizer, encode_prompt, save_tokenizer


# ---------------------------------------------------------------- task
def _check_worked(problem: Problem) -> None:
    lines = worked_solution(problem).split("\n")
    assert lines[-1] == f"answer: {problem.a + problem.b}"
    da, db = str(problem.a)[::-1], str(problem.b)[::-1]
    carry = 0
    for i, line in enumerate(lines[:-1]):
        lhs, rest = line.split("=")
        terms = [int(t) for t in lhs.split("+")]
        assert terms[:2] == [int(da[i]), int(db[i])]
        assert terms[2:] == ([1] if carry else [])
        s, _, w, _, c = rest.split(" ")
        assert int(s) == sum(terms) and int(w) == int(s) % 10 and int(c) == int(s) // 10
        carry = int(c)
    assert len(lines) - 1 == len(str(problem.a))


def test_worked_solution_example_and_arithmetic():
    assert worked_solution(Problem(47, 85)) == "7+5=12 write 2 carry 1\n4+8+1=13 write 3 carry 1\nanswer: 132"
    for p in sample_problems(7, 300) + [Problem(99999, 99999), Problem(10, 10)]:
        _check_worked(p)


def test_problems_are_deterministic_and_in_range():
    a, b = sample_problems(3, 50), sample_problems(3, 50)
    assert a == b and a != sample_problems(4, 50)
    digits = {len(str(p.a)) for p in sample_problems(0, 400)}
    assert digits == {2, 3, 4, 5}
    assert all(len(str(p.a)) == len(str(p.b)) for p in a)


# ---------------------------------------------------------------- tokenizer
def test_tokenizer_round_trip_through_autotokenizer(tmp_path):
    """Saved next to a Qwen2 config.json, AutoTokenizer must give back the same token ids (the gotcha)."""
    from transformers import AutoTokenizer

    from echorl_verl.toy.model import build_model

    tok = build_tokenizer()
    build_model(tok, "tiny").save_pretrained(tmp_path)
    save_tokenizer(tok, tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert loaded.eos_token == EOS and loaded.pad_token == PAD
    assert loaded.eos_token_id == tok.eos_token_id and loaded.pad_token_id == tok.pad_token_id
    # verl's Qwen chat-boundary handling needs "\n" to be one token.
    assert len(loaded.encode("\n", add_special_tokens=False)) == 1
    for p in sample_problems(11, 50):
        text = worked_solution(p)
        ids = tok.encode(text, add_special_tokens=False)
        assert loaded.encode(text, add_special_tokens=False) == ids
        assert loaded.decode(ids) == text
        assert encode_prompt(loaded, p.prompt) == encode_prompt(tok, p.prompt)
    # the words are single tokens, so responses stay short
    assert len(tok.encode(" write", add_special_tokens=False)) == 1
    assert len(tok.encode("answer", add_special_tokens=False)) == 1
    prompt = loaded.decode(encode_prompt(loaded, "47+85"))
    assert prompt == "<|im_start|>user\n47+85<|im_end|>\n<|im_start|>assistant\n"


# ---------------------------------------------------------------- reward
@pytest.mark.parametrize(
    "response,truth,score",
    [
        ("7+5=12 write 2 carry 1\n4+8+1=13 write 3 carry 1\nanswer: 132", "132", 1.0),
        ("answer: 131", "132", 0.0),
        ("answer:132", "132", 1.0),
        ("no answer line", "132", 0.0),
        ("answer: 90answer: 9", "9", 0.0),  # the FIRST answer counts
        ("answer: 90answer: 9", "90", 1.0),
        ("answer: 1320", "132", 0.0),
        ("", "5", 0.0),
    ],
)
def test_reward_cases(response, truth, score):
    out = compute_score(DATA_SOURCE, response, truth, extra_info={"index": 0})
    assert out == {"score": score, "acc": bool(score)}


def test_reward_refuses_other_data_sources():
    with pytest.raises(ValueError, match="openai/gsm8k"):
        compute_score("openai/gsm8k", "answer: 1", "1")
    assert extract_answer("x answer: 12 answer: 13") == "12"


# ---------------------------------------------------------------- data
def test_parquet_schema_matches_verl(tmp_path):
    splits = make_splits(64, 16, seed=0)
    for name, df in splits.items():
        path = tmp_path / f"{name}.parquet"
        write_parquet(df, str(path))
        table = pq.read_table(path)
        assert set(REQUIRED_COLUMNS) <= set(table.column_names)
        assert pa.types.is_list(table.schema.field("prompt").type)
        rm = table.schema.field("reward_model").type
        assert pa.types.is_struct(rm) and rm.get_field_index("ground_truth") >= 0
        row = table.slice(0, 1).to_pylist()[0]
        assert row["data_source"] == DATA_SOURCE
        assert row["prompt"][0]["role"] == "user"
        a, b = map(int, row["prompt"][0]["content"].split("+"))
        assert row["reward_model"]["ground_truth"] == str(a + b)
        assert row["extra_info"]["split"] == name and row["extra_info"]["index"] == 0
        assert not any(p.name.startswith(f"{name}.parquet.tmp") for p in tmp_path.iterdir())


def test_data_is_deterministic_and_splits_disjoint():
    s1, s2 = make_splits(200, 50, seed=1), make_splits(200, 50, seed=1)
    for k in ("train", "val"):
        assert s1[k].to_json() == s2[k].to_json()
    train = {r[0]["content"] for r in s1["train"]["prompt"]}
    val = {r[0]["content"] for r in s1["val"]["prompt"]}
    assert len(train) == 200 and not (train & val)
    assert make_splits(200, 50, seed=2)["train"].to_json() != s1["train"].to_json()


# ---------------------------------------------------------------- build + cache
def test_quick_build_is_complete_and_cached(quick_build):
    assert is_complete(quick_build, QUICK)
    report = build(quick_build, QUICK, progress=False)
    assert report["cached"] is True and report["params"] > 10_000
    with open(os.path.join(quick_build, "manifest.json")) as f:
        assert json.load(f)["hash"] == QUICK.digest()
    from omegaconf import OmegaConf

    from echorl_verl.preflight import check_data, check_model_path

    p = paths(quick_build)
    check_model_path(OmegaConf.create({"actor_rollout_ref": {"model": {"path": p["model"]}}}))
    check_data(OmegaConf.create({"data": {"train_files": p["train"], "val_files": [p["val"]]}}))


def test_build_rebuilds_on_other_settings_and_after_a_crash(tmp_path):
    tiny = dataclasses.replace(QUICK, sft_steps=2, train_size=16, val_size=4)
    out = str(tmp_path / "toy")
    assert build(out, tiny, progress=False)["cached"] is False
    assert build(out, tiny, progress=False)["cached"] is True
    other = dataclasses.replace(tiny, seed=1)
    assert not is_complete(out, other)
    assert build(out, other, progress=False)["cached"] is False
    # a build that died before its manifest is not reused
    os.remove(os.path.join(out, "manifest.json"))
    assert not is_complete(out, other)
    assert build(out, other, progress=False)["cached"] is False


def test_build_settings_hash_covers_every_field():
    base = BuildSettings()
    for f in dataclasses.fields(BuildSettings):
        value = getattr(base, f.name)
        changed = value + 1 if isinstance(value, (int, float)) else value + "x"
        assert dataclasses.replace(base, **{f.name: changed}).digest() != base.digest(), f.name


def test_rollout_stats_groups_by_prompt(tmp_path):
    from echorl_verl.toy.rollout_stats import group_shares_of_dump

    rows = [("a", 1), ("a", 1), ("b", 1), ("b", 0), ("c", 0), ("c", 0), ("d", 0), ("d", 1)]
    with open(tmp_path / "1.jsonl", "w") as f:
        for prompt, score in rows:
            f.write(json.dumps({"input": prompt, "output": "x", "score": score, "step": 1}) + "\n")
    assert group_shares_of_dump(str(tmp_path / "1.jsonl")) == {
        "groups": 4, "rollouts_per_group": 2.0, "all": 0.25, "mixed": 0.5, "none": 0.25}


def test_warmup_is_deterministic():
    import torch

    from echorl_verl.toy.model import build_model
    from echorl_verl.toy.warmup import warmup_sft

    tok = build_tokenizer()
    runs = []
    for _ in range(2):
        model = build_model(tok, "tiny", seed=0)
        losses = warmup_sft(model, tok, steps=3, batch_size=8, seed=0, progress=False)
        runs.append((losses, model.model.embed_tokens.weight.detach().clone()))
    assert runs[0][0] == runs[1][0]
    assert torch.equal(runs[0][1], runs[1][1])
