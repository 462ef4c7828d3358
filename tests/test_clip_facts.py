"""clip_facts (echorl_verl/clip_facts.py): the per-rollout records of the rollout dump, built from a real
select_echo_clips result on responses of the toy tokenizer, checked against the texts they came from."""

import json

import clip_testlib
import pytest
import torch
from clip_testlib import NAN

from echorl_verl.clip_facts import FACTS_VERSION, clip_facts
from echorl_verl.config import CLIP_MODES, EchoConfig
from echorl_verl.selection import select_echo_clips
from echorl_verl.toy.tokenizer import EOS, build_tokenizer


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer()


# (response lines, per-line entropy, success, group): group 0 all-success, group 1 mixed
ROWS = [
    (["1+2=3 write 3\n", "4+5=9 write 9\n", "answer: 93" + EOS], [0.5, 2.0, 1.0], True, 0),
    (["7+1=8 write 8\n", "answer: 8" + EOS], [3.0, 1.0], True, 0),
    (["2+2=4 write 4\n", "answer: 5" + EOS], [1.0, 1.0], False, 1),
    (["9+9=18 write 8 carry 1\n", "answer: 18" + EOS], [1.0, 2.5], True, 1),
]


def facts_of(tok, config=EchoConfig(), rows=ROWS, hole=False):
    return clip_testlib.facts_of(tok, rows, config, hole)


def test_default_clip_facts_of_an_all_success_group(tok):
    _, facts, _, _ = facts_of(tok)
    first = facts[0]
    assert first["version"] == FACTS_VERSION and first["eligible"] and first["selected"] and first["status"] == "clip"
    assert [s["text"] for s in first["steps"]] == ROWS[0][0]  # each step is one line, special tokens kept
    assert [s["tokens"] for s in first["steps"]] == [len(tok.encode(line)) for line in ROWS[0][0]]
    assert [s["entropy"] for s in first["steps"]] == [0.5, 2.0, 1.0]
    through_peak = len(tok.encode(ROWS[0][0][0])) + len(tok.encode(ROWS[0][0][1]))
    assert first["peak_step"] == 1 and first["clip_first_step"] == 0 and first["clip_step"] == 1
    assert first["clip_end_tokens"] == through_peak == first["clip_len"]
    assert first["response_tokens"] == sum(s["tokens"] for s in first["steps"])
    assert first["group_all_success"]
    assert facts[1]["peak_step"] == 0 and facts[1]["clip_len"] == len(tok.encode(ROWS[1][0][0]))


def test_rows_that_are_not_eligible_get_a_small_record(tok):
    _, facts, _, _ = facts_of(tok)
    for r in (2, 3):  # the mixed group: a failure and a success outside scope
        assert facts[r] == {"version": FACTS_VERSION, "eligible": False, "selected": False,
                            "status": "not_eligible", "group_all_success": False,
                            "response_tokens": sum(len(tok.encode(line)) for line in ROWS[r][0])}
    _, wide, _, _ = facts_of(tok, EchoConfig(scope="all_successes"))
    assert wide[3]["selected"] and wide[3]["peak_step"] == 1 and not wide[3]["group_all_success"]


def test_records_are_plain_json(tok):
    rows = [ROWS[0], (ROWS[1][0], [NAN, 1.0], True, 0)]  # row 1: nan entropy on a valid token
    _, facts, _, _ = facts_of(tok, rows=rows)
    assert json.loads(json.dumps(facts, allow_nan=False)) == facts
    assert facts[1]["status"] == "nonfinite_entropy" and not facts[1]["selected"]
    assert facts[1]["steps"][0]["entropy"] is None and facts[1]["steps"][1]["entropy"] == 1.0
    assert facts[1]["clip_step"] is None and facts[1]["clip_len"] == 0


def test_status_of_rows_without_a_clip(tok):
    _, one, _, _ = facts_of(tok, EchoConfig(per_group="one"))
    assert one[0]["status"] == "not_best_in_group" and one[1]["status"] == "clip"  # row 1's peak is higher
    long_steps = EchoConfig(min_step_tokens=100)
    _, none, _, _ = facts_of(tok, long_steps)
    assert none[0]["status"] == "no_candidate_step" and none[0]["peak_step"] is None and len(none[0]["steps"]) == 3


@pytest.mark.parametrize("mode", CLIP_MODES)
def test_clip_span_of_every_mode_matches_the_mask(tok, mode):
    clips, facts, responses, mask = facts_of(tok, EchoConfig(clip_mode=mode))
    for r, rec in enumerate(facts):
        if not rec["selected"]:
            continue
        steps = rec["steps"][rec["clip_first_step"] : rec["clip_step"] + 1]
        assert sum(s["tokens"] for s in steps) == rec["clip_len"] == int(clips.mask[r].sum())
        assert "".join(s["text"] for s in steps) == tok.decode(responses[r][clips.mask[r] != 0])
    assert facts[0]["clip_first_step"] == (1 if mode == "peak_step" else 0)
    expected_end = {"peak_prefix": {1}, "peak_step": {1}, "full_response": {2}, "random_prefix": {0, 1, 2}}[mode]
    assert facts[0]["clip_step"] in expected_end and facts[0]["peak_step"] == 1


def test_a_mask_with_holes_leaves_the_hole_out_of_the_step_text(tok):
    clips, facts, responses, mask = facts_of(tok, hole=True)
    first = facts[0]
    ids = tok.encode(ROWS[0][0][0])
    assert first["steps"][0]["text"] == tok.decode(ids[:1] + ids[2:])
    assert first["steps"][0]["tokens"] == len(ids) - 1
    assert "".join(s["text"] for s in first["steps"][: first["clip_step"] + 1]) == tok.decode(
        responses[0][clips.mask[0] != 0])


def test_tensors_of_another_shape_are_refused(tok):
    clips, _, responses, mask = facts_of(tok)
    with pytest.raises(ValueError, match="select_echo_clips"):
        clip_facts(clips, responses[:, :-1], mask, tok)


def test_empty_responses(tok):
    clips = select_echo_clips(torch.zeros(2, 0, dtype=torch.long), torch.zeros(2, 0), torch.zeros(2, 0),
                              torch.tensor([True, True]), torch.tensor([0, 0]), [98], EchoConfig())
    facts = clip_facts(clips, torch.zeros(2, 0, dtype=torch.long), torch.zeros(2, 0), tok)
    assert [f["status"] for f in facts] == ["no_candidate_step"] * 2 and facts[0]["steps"] == []
