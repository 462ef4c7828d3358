"""The SmolLM2 warm-up (echorl_verl.smollm2.warmup): its batches against the real tokenizer and verl's own prompt
tokenization, the determinism of its data, the shared-prefix loss, the cache (and its snapshots), and bad input.

The SFT runs here are 1-2 steps of 2 problems on the converted model of the `smollm2_build` fixture (seconds);
their builds go to a temporary cache, not the one the profile uses.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time

import pytest

from echorl_verl.smollm2 import EOS_TOKEN, paths
from echorl_verl.smollm2 import warmup as w
from echorl_verl.smollm2.data import make_splits
from echorl_verl.smollm2.task import KINDS, messages, user_turn, worked_solution

#: 2 steps of 2 problems: what the cache tests train (fast; the default regime is WarmupSettings())
TINY = w.WarmupSettings(steps=2, batch_size=2, lr_warmup=1)


@pytest.fixture(scope="module")
def tokenizer(smollm2_build):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(paths(smollm2_build)["model"])


@pytest.fixture(scope="module")
def model(smollm2_build):
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(paths(smollm2_build)["model"], dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def built(smollm2_build, tmp_path_factory):
    """A 2-step build with a 1-step snapshot in a temporary cache, timed."""
    cache = str(tmp_path_factory.mktemp("warm_cache"))
    t0 = time.monotonic()
    report = w.warm_up(TINY, smollm2_build, cache, snapshots=(1,))
    return {"cache": cache, "report": report, "seconds": time.monotonic() - t0}


# ---------------------------------------------------------------- batches
def test_prompt_is_the_token_ids_verl_sends(tokenizer):
    from verl.utils.tokenizer.chat_template import apply_chat_template
    from verl.utils.tokenizer.tokenizer import normalize_token_ids

    for p in w.step_problems(w.WarmupSettings(operations=(2, 3)), 0, frozenset()):
        for shots in (2, 0):  # the data's prompts (`echorl_verl.smollm2.data --shots`)
            sent = normalize_token_ids(apply_chat_template(tokenizer, messages(p.question, shots), tokenize=True,
                                                           add_generation_prompt=True))
            assert w.prompt_ids(tokenizer, p.question, shots) == sent
            assert tokenizer.decode(sent).endswith(f"{user_turn(p.question)}<|im_end|>\n<|im_start|>assistant\n")
    ids, _, labels = w.make_batch(tokenizer, [p], shots=0)
    assert ids[0, :len(sent)].tolist() == sent and (labels[0, :len(sent)] == -100).all()


def test_labels_cover_the_response_and_eos_only(tokenizer):
    problems = w.step_problems(w.WarmupSettings(batch_size=4), 3, frozenset())
    ids, mask, labels = w.make_batch(tokenizer, problems)
    assert ids.shape == mask.shape == labels.shape and ids.shape[0] == 4
    for row, p in enumerate(problems):
        prompt = w.prompt_ids(tokenizer, p.question)
        n = int(mask[row].sum())
        assert ids[row, :len(prompt)].tolist() == prompt
        assert (labels[row, :len(prompt)] == -100).all() and (labels[row, n:] == -100).all()
        target = labels[row, len(prompt):n]
        assert (target == ids[row, len(prompt):n]).all() and (target != -100).all()
        assert tokenizer.decode(target) == worked_solution(p) + EOS_TOKEN
        assert target[-1] == tokenizer.eos_token_id == 2
        assert (mask[row, :n] == 1).all() and (mask[row, n:] == 0).all() and (ids[row, n:] == 2).all()


def test_the_shared_prefix_gives_the_plain_loss(tokenizer, model):
    import torch

    ids, mask, labels = w.make_batch(tokenizer, w.step_problems(w.WarmupSettings(batch_size=3), 0, frozenset()))
    shared = w.shared_prefix_len(ids, labels)
    assert 100 < shared < int((labels[0] != -100).int().argmax())  # the system prompt and both examples
    with torch.no_grad():
        plain = model(input_ids=ids, attention_mask=mask, labels=labels).loss  # transformers' own shifted loss
        ours = w.response_loss(model, ids, mask, labels, share_prefix=True)
        unshared = w.response_loss(model, ids, mask, labels, share_prefix=False)
    assert abs(ours.item() - plain.item()) < 1e-4 and abs(unshared.item() - plain.item()) < 1e-5


# ---------------------------------------------------------------- data
def test_problems_are_deterministic_per_step_and_never_validation_questions():
    s = w.WarmupSettings(operations=(2, 3), batch_size=8)
    exclude = w.excluded_questions(s)
    val = {e["question"] for k in (2, 3) for e in make_splits(1, s.val_size, s.data_seed, k)["val"]["extra_info"]}
    assert exclude == frozenset(val) and len(val) == 2 * s.val_size
    first = w.step_problems(s, 5, exclude)
    assert first == w.step_problems(s, 5, exclude)
    assert first == w.step_problems(dataclasses.replace(s, steps=s.steps * 3), 5, exclude)  # not the run's length
    assert first != w.step_problems(s, 6, exclude)
    assert first != w.step_problems(dataclasses.replace(s, seed=1), 5, exclude)
    assert sorted(p.operations for p in first) == [2] * 4 + [3] * 4
    drawn = [p for step in range(40) for p in w.step_problems(s, step, exclude)]
    assert not {p.question for p in drawn} & val
    assert {p.kind for p in drawn} == set(KINDS)
    # one operation (~250 one-digit questions): without the exclusion validation questions come up, with it not
    one = w.WarmupSettings(operations=(1,))
    val1, exclude1 = set(w.excluded_questions(one)), w.excluded_questions(one)
    assert {p.question for step in range(40) for p in w.step_problems(one, step, frozenset())} & val1
    assert not {p.question for step in range(40) for p in w.step_problems(one, step, exclude1)} & val1


# ---------------------------------------------------------------- cache
def test_a_build_is_cached_and_a_second_call_reuses_it(built, smollm2_build):
    report = built["report"]
    assert report["cached"] is False and len(report["losses"]) == 2
    folder = os.path.dirname(report["model"])
    assert os.path.basename(folder) == report["hash"] == TINY.digest(w.base_model(smollm2_build)[1])
    assert sorted(os.listdir(folder)) == [".build.lock", "manifest.json", "model"]
    def mtimes() -> dict[str, int]:
        return {f: os.stat(os.path.join(report["model"], f)).st_mtime_ns for f in os.listdir(report["model"])}

    written = mtimes()
    again = w.warm_up(TINY, smollm2_build, built["cache"])
    assert again["cached"] is True and again["model"] == report["model"] and again["losses"] == report["losses"]
    assert mtimes() == written  # nothing was trained or written again (checked on the files, not on a time bound)
    from transformers import AutoTokenizer, GenerationConfig

    tok = AutoTokenizer.from_pretrained(report["model"])
    assert tok.eos_token == tok.pad_token == EOS_TOKEN
    assert GenerationConfig.from_pretrained(report["model"]).eos_token_id == 2


def test_a_snapshot_is_the_shorter_run(built, smollm2_build, tokenizer):
    """The 1-step snapshot taken on the way is a complete build of steps=1, with the weights of a 1-step run."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    one = dataclasses.replace(TINY, steps=1)
    snap = w.warm_up(one, smollm2_build, built["cache"])
    assert snap["cached"] is True and snap["losses"] == built["report"]["losses"][:1]
    fresh = AutoModelForCausalLM.from_pretrained(paths(smollm2_build)["model"], dtype=torch.float32)
    threads = torch.get_num_threads()
    torch.set_num_threads(built["report"]["threads"])  # the build's: same threads, same sums
    try:
        assert w.train(fresh, tokenizer, one) == snap["losses"]
    finally:
        torch.set_num_threads(threads)
    saved = load_file(os.path.join(snap["model"], "model.safetensors"))
    for name, value in fresh.state_dict().items():
        if name in saved:
            assert torch.equal(saved[name], value), name


def test_a_half_written_folder_is_rebuilt(built, smollm2_build):
    one = dataclasses.replace(TINY, steps=1)
    folder = os.path.join(built["cache"], one.digest(w.base_model(smollm2_build)[1]))
    manifest = json.load(open(os.path.join(folder, "manifest.json")))
    assert w.read_manifest(folder, manifest["hash"]) is not None
    os.remove(os.path.join(folder, "model", "model.safetensors"))  # weights gone, manifest still there
    assert w.read_manifest(folder, manifest["hash"]) is None
    os.remove(os.path.join(folder, "manifest.json"))  # killed before the manifest: model/ alone is not a build
    assert w.read_manifest(folder, manifest["hash"]) is None
    os.makedirs(os.path.join(folder, ".model.tmp-killed"))
    rebuilt = w.warm_up(one, smollm2_build, built["cache"])
    assert rebuilt["cached"] is False and rebuilt["losses"] == manifest["losses"]
    assert sorted(os.listdir(folder)) == [".build.lock", "manifest.json", "model"]
    assert w.warm_up(one, smollm2_build, built["cache"])["cached"] is True


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("settings, words", [
    (dict(steps=0), "steps must be an integer >= 1, got 0; to start RL from the raw model, skip the warm-up"),
    (dict(steps=-3), "steps must be an integer >= 1, got -3"),
    (dict(batch_size=0), "batch_size must be an integer >= 1"),
    (dict(lr=0.0), "lr must be > 0"),
    (dict(operations=()), "operations must be integers >= 1"),
    (dict(operations=(2, 0)), "operations must be integers >= 1"),
    (dict(batch_size=1, operations=(2, 3)), "batch_size 1 is smaller than the number of operations"),
    (dict(shots=3), "shots must be an integer from 0 to 2, got 3"),
])
def test_bad_settings_fail_with_one_line(settings, words):
    with pytest.raises(w.WarmupError) as err:
        w.WarmupSettings(**settings)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_a_missing_converted_model_names_the_command(tmp_path):
    with pytest.raises(w.WarmupError, match=r"no converted SmolLM2 in .*: run python -m echorl_verl.smollm2.convert"):
        w.warm_up(TINY, str(tmp_path / "nothing"), str(tmp_path / "cache"))
    assert not (tmp_path / "cache").exists()


def test_bad_snapshots_are_refused(smollm2_build, tmp_path):
    with pytest.raises(w.WarmupError, match=r"snapshots \[2\] must lie between 1 and steps - 1 = 1"):
        w.warm_up(TINY, smollm2_build, str(tmp_path), snapshots=(1, 2))


def test_the_command_line_exits_2_with_one_line(smollm2_build, tmp_path, capsys):
    assert w.main(["--steps", "0", "--smollm2_dir", smollm2_build, "--cache_dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: warm-up steps must be an integer >= 1, got 0") and err.count("\n") == 1
    assert w.main(["--smollm2_dir", str(tmp_path / "none"), "--cache_dir", str(tmp_path)]) == 2
    assert "python -m echorl_verl.smollm2.convert" in capsys.readouterr().err
