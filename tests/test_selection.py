"""EchoClip selection (echorl_verl/selection.py): hand-worked cases, every edge case of the spec, bad
input, and property tests against a slow pure-Python reference written straight from the definition."""

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from echorl_verl.clip_modes import CLIP_SPANS
from echorl_verl.config import CLIP_MODES, PER_GROUP, SCOPES, STEP_AGGREGATIONS, EchoConfig, EchoConfigError
from echorl_verl.selection import EchoClips, group_ids_from_uids, select_echo_clips, selection_metrics

NAN, INF = float("nan"), float("inf")
B9 = [9]  # boundary id of the hand-worked examples


# ----------------------------------------------------------------------------- reference implementation
def reference(responses, mask, entropy, success, group_ids, boundary_ids, config, step=0):
    """The definition, with loops: returns a dict of plain Python lists, one entry per row."""
    B = len(responses)
    bset = set(int(i) for i in boundary_ids)
    groups = {}
    for r in range(B):
        groups.setdefault(int(group_ids[r]), []).append(r)
    all_succ = {g: all(success[r] for r in rows) for g, rows in groups.items()}
    all_fail = {g: not any(success[r] for r in rows) for g, rows in groups.items()}
    res = {k: [] for k in ("eligible", "selected", "peak_step", "clip_step", "num_steps", "clip_len", "peak_entropy",
                           "peak_rel_pos", "nonfinite", "no_candidate", "group_all_success", "group_all_fail", "mask")}
    peaks = {}
    for r in range(B):
        g = int(group_ids[r])
        res["group_all_success"].append(all_succ[g])
        res["group_all_fail"].append(all_fail[g])
        eligible = bool(success[r]) and (all_succ[g] or config.scope == "all_successes")
        res["eligible"].append(eligible)
        valid = [t for t in range(len(responses[r])) if mask[r][t] != 0]
        steps, cur = [], []
        for t in valid:
            cur.append(t)
            if int(responses[r][t]) in bset:
                steps.append(cur)
                cur = []
        if cur:
            steps.append(cur)
        res["num_steps"].append(len(steps) if eligible else 0)
        nonfinite = eligible and any(not math.isfinite(entropy[r][t]) for t in valid)
        res["nonfinite"].append(nonfinite)
        peaks[r] = None
        no_cand = False
        if eligible and not nonfinite:
            cands = [k for k, s in enumerate(steps) if len(s) >= config.min_step_tokens]
            no_cand = not cands
            if cands:
                def agg(s):
                    vals = [float(entropy[r][t]) for t in s]
                    return {"mean": sum(vals) / len(vals), "max": max(vals), "sum": sum(vals)}[config.step_agg]
                best = max(agg(steps[k]) for k in cands)
                peak = next(k for k in cands if agg(steps[k]) == best)
                peaks[r] = (peak, best, cands, steps, valid)
        res["no_candidate"].append(no_cand)
    chosen = {r for r in range(B) if peaks[r] is not None}
    if config.per_group == "one":
        keep = set()
        for rows in groups.values():
            rows = [r for r in rows if r in chosen]
            if rows:
                best = max(peaks[r][1] for r in rows)
                keep.add(next(r for r in rows if peaks[r][1] == best))
        chosen = keep
    gen = torch.Generator().manual_seed((config.seed * 0x9E3779B97F4A7C15 + step) % (2**63 - 1))
    u = torch.rand(B, generator=gen, dtype=torch.float64).tolist()
    for r in range(B):
        T = len(responses[r])
        row = [0.0] * T
        if r not in chosen:
            for k, v in (("selected", False), ("peak_step", -1), ("clip_step", -1), ("clip_len", 0),
                         ("peak_entropy", 0.0), ("peak_rel_pos", 0.0)):
                res[k].append(v)
        else:
            peak, best, cands, steps, valid = peaks[r]
            if config.clip_mode == "peak_prefix":
                clip_step, tokens = peak, [t for s in steps[: peak + 1] for t in s]
            elif config.clip_mode == "peak_step":
                clip_step, tokens = peak, steps[peak]
            elif config.clip_mode == "full_response":
                clip_step, tokens = len(steps) - 1, valid
            else:
                j = min(int(u[r] * len(cands)), len(cands) - 1)
                clip_step = cands[j]
                tokens = [t for s in steps[: clip_step + 1] for t in s]
            for t in tokens:
                row[t] = 1.0
            through_peak = sum(len(s) for s in steps[: peak + 1])
            for k, v in (("selected", True), ("peak_step", peak), ("clip_step", clip_step), ("clip_len", len(tokens)),
                         ("peak_entropy", best), ("peak_rel_pos", through_peak / len(valid))):
                res[k].append(v)
        res["mask"].append(row)
    return res


def run(responses, mask, entropy, success, group_ids, config, boundary_ids=B9, step=0):
    """Call select_echo_clips on nested lists / tensors."""
    return select_echo_clips(
        torch.as_tensor(responses, dtype=torch.long), torch.as_tensor(mask), torch.as_tensor(entropy, dtype=torch.float32),
        torch.as_tensor(success, dtype=torch.bool), torch.as_tensor(group_ids, dtype=torch.long), boundary_ids, config, step,
    )


def assert_matches_reference(clips: EchoClips, ref: dict):
    for name in ("eligible", "selected", "nonfinite", "no_candidate", "group_all_success", "group_all_fail",
                 "peak_step", "clip_step", "num_steps", "clip_len"):
        assert getattr(clips, name).tolist() == ref[name], name
    assert clips.peak_entropy.tolist() == torch.tensor(ref["peak_entropy"], dtype=torch.float32).tolist()
    assert torch.allclose(clips.peak_rel_pos, torch.tensor(ref["peak_rel_pos"], dtype=torch.float32))
    T = clips.mask.shape[1]
    assert clips.mask.tolist() == (ref["mask"] if T else [[] for _ in ref["eligible"]])
    assert clips.mask.dtype == torch.float32 and not clips.mask.isnan().any()


# ----------------------------------------------------------------------------- hand-worked cases
# One row, boundary id 9, 9 response tokens then 2 padding positions (entropy nan there: must be ignored).
#   steps:   s0 = pos 0-1          s1 = pos 2-4              s2 = pos 5-8
#   entropy: [0, 4]                [2, 2, 3]                 [3, 0, 3, 3]
#   mean:    2                     7/3  <- peak              2.25
#   max:     4  <- peak            3                         3
#   sum:     4                     7                         9  <- peak
ROW = dict(
    responses=[[1, 9, 2, 3, 9, 4, 5, 6, 7, 0, 0]],
    mask=[[1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0]],
    entropy=[[0, 4, 2, 2, 3, 3, 0, 3, 3, NAN, NAN]],
    success=[True],
    group_ids=[0],
)


@pytest.mark.parametrize(
    "settings_, expected_mask, peak, peak_entropy",
    [
        (dict(), [1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0], 1, 7 / 3),
        (dict(step_agg="max"), [1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0], 0, 4.0),
        (dict(step_agg="sum"), [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0], 2, 9.0),
        (dict(clip_mode="peak_step"), [0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0], 1, 7 / 3),
        (dict(clip_mode="peak_step", step_agg="sum"), [0, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0], 2, 9.0),
        (dict(clip_mode="full_response"), [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0], 1, 7 / 3),
        # s0 has 2 tokens: with min 3 only s1, s2 compete; max ties at 3 -> the earliest, s1
        (dict(step_agg="max", min_step_tokens=3), [1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0], 1, 3.0),
        (dict(min_step_tokens=5), [0] * 11, -1, 0.0),  # no step is long enough: no clip
    ],
)
def test_hand_worked_modes_and_aggregations(settings_, expected_mask, peak, peak_entropy):
    clips = run(**ROW, config=EchoConfig(**settings_))
    assert clips.mask.tolist() == [[float(x) for x in expected_mask]]
    assert clips.peak_step.tolist() == [peak]
    assert clips.peak_entropy.tolist() == pytest.approx([peak_entropy])
    assert clips.num_steps.tolist() == [3]
    assert clips.clip_len.tolist() == [sum(expected_mask)]
    assert clips.selected.tolist() == [peak >= 0]
    assert clips.no_candidate.tolist() == [peak < 0]


def test_hand_worked_facts_of_the_default_clip():
    clips = run(**ROW, config=EchoConfig())
    assert clips.peak_rel_pos.tolist() == pytest.approx([5 / 9])  # s1 ends at position 4 of 9 tokens
    assert clips.clip_step.tolist() == [1]
    assert clips.eligible.tolist() == [True] and clips.nonfinite.tolist() == [False]
    full = run(**ROW, config=EchoConfig(clip_mode="full_response"))
    assert full.clip_step.tolist() == [2] and full.peak_step.tolist() == [1]  # peak still reported


def test_random_prefix_is_a_candidate_prefix_seeded_and_covers_every_candidate():
    prefixes = {1: [1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0], 2: [1] * 9 + [0, 0]}  # min 3 tokens: s1 or s2
    seen = set()
    for step in range(40):
        cfg = EchoConfig(clip_mode="random_prefix", min_step_tokens=3, seed=7)
        clips = run(**ROW, config=cfg, step=step)
        k = clips.clip_step.item()
        assert clips.mask.tolist() == [[float(x) for x in prefixes[k]]]
        assert clips.peak_step.tolist() == [1]  # the true peak is still reported
        assert torch.equal(run(**ROW, config=cfg, step=step).mask, clips.mask)  # deterministic
        seen.add(k)
    assert seen == {1, 2}


def test_random_prefix_depends_on_seed_and_step():
    B = 64
    batch = dict(responses=ROW["responses"] * B, mask=ROW["mask"] * B, entropy=ROW["entropy"] * B,
                 success=[True] * B, group_ids=list(range(B)))
    a = run(**batch, config=EchoConfig(clip_mode="random_prefix", seed=1), step=3).clip_step
    b = run(**batch, config=EchoConfig(clip_mode="random_prefix", seed=1), step=4).clip_step
    c = run(**batch, config=EchoConfig(clip_mode="random_prefix", seed=2), step=3).clip_step
    assert not torch.equal(a, b) and not torch.equal(a, c)
    assert set(a.tolist()) == {0, 1, 2}


# ----------------------------------------------------------------------------- groups, scope, per_group
# rows 0,1: group 10, both succeed (all-success); rows 2,3: group 20 mixed; row 4: group 30 alone, fails;
# row 5: group 40 alone, succeeds. One step each (no boundary): the peak entropy is the row's mean.
GROUPS = dict(
    responses=[[1, 2, 3]] * 6,
    mask=[[1, 1, 1]] * 6,
    entropy=[[1, 1, 1], [2, 2, 2], [3, 3, 3], [1, 1, 1], [1, 1, 1], [0, 0, 0]],
    success=[True, True, True, False, False, True],
    group_ids=[10, 10, 20, 20, 30, 40],
)


def test_scope_and_group_facts():
    clips = run(**GROUPS, config=EchoConfig())
    assert clips.group_all_success.tolist() == [True, True, False, False, False, True]
    assert clips.group_all_fail.tolist() == [False, False, False, False, True, False]
    assert clips.eligible.tolist() == [True, True, False, False, False, True]
    assert clips.selected.tolist() == [True, True, False, False, False, True]
    assert clips.num_steps.tolist() == [1, 1, 0, 0, 0, 1]  # computed for eligible rows only
    assert clips.mask.sum(1).tolist() == [3, 3, 0, 0, 0, 3]
    wide = run(**GROUPS, config=EchoConfig(scope="all_successes"))
    assert wide.selected.tolist() == [True, True, True, False, False, True]


def test_per_group_one_keeps_the_highest_peak_and_the_earliest_on_ties():
    one = run(**GROUPS, config=EchoConfig(per_group="one", scope="all_successes"))
    assert one.selected.tolist() == [False, True, True, False, False, True]
    assert one.eligible.tolist() == [True, True, True, False, False, True]
    tied = dict(GROUPS, entropy=[[2, 2, 2]] * 6)
    assert run(**tied, config=EchoConfig(per_group="one")).selected.tolist() == [True, False, False, False, False, True]


def test_per_group_one_skips_rows_without_a_clip():
    # row 1 has the higher entropy but a nan on a valid token: row 0 must win its group
    batch = dict(GROUPS, entropy=[[1, 1, 1], [5, NAN, 5], [3, 3, 3], [1, 1, 1], [1, 1, 1], [0, 0, 0]])
    one = run(**batch, config=EchoConfig(per_group="one"))
    assert one.selected.tolist() == [True, False, False, False, False, True]
    assert one.nonfinite.tolist() == [False, True, False, False, False, False]


def test_metrics_of_the_group_example():
    clips = run(**GROUPS, config=EchoConfig())
    m = selection_metrics(clips, torch.tensor(GROUPS["mask"]))
    assert m["echo/all_success_group_share"] == 0.5  # groups 10 and 40 of 4
    assert m["echo/all_fail_group_share"] == 0.25
    assert m["echo/eligible_rollouts"] == 3 and m["echo/clip_rollouts"] == 3
    assert m["echo/clip_token_share"] == pytest.approx(9 / 18)
    assert m["echo/clip_len_mean"] == 3 and m["echo/peak_rel_pos_mean"] == 1.0
    assert m["echo/peak_entropy_mean"] == pytest.approx(1.0)
    assert m["echo/nonfinite_entropy_rollouts"] == 0 and m["echo/no_candidate_rollouts"] == 0
    assert all(isinstance(v, float) and math.isfinite(v) for v in m.values())


# ----------------------------------------------------------------------------- edge cases
def single(responses, mask, entropy, config=EchoConfig(), boundary_ids=B9):
    return run([responses], [mask], [entropy], [True], [0], config, boundary_ids)


def test_empty_response_gets_no_clip():
    clips = single([5, 5, 5], [0, 0, 0], [NAN, NAN, NAN])
    assert clips.eligible.tolist() == [True] and clips.selected.tolist() == [False]
    assert clips.no_candidate.tolist() == [True] and clips.nonfinite.tolist() == [False]
    assert clips.num_steps.tolist() == [0] and clips.mask.tolist() == [[0.0, 0.0, 0.0]]


def test_no_boundary_is_one_step_and_the_clip_is_the_whole_response():
    clips = single([1, 2, 3, 0], [1, 1, 1, 0], [0.5, 2, 1, 0])
    assert clips.num_steps.tolist() == [1] and clips.mask.tolist() == [[1.0, 1.0, 1.0, 0.0]]
    assert clips.peak_rel_pos.tolist() == [1.0]


def test_only_boundaries_each_token_is_a_step():
    clips = single([9, 9, 9, 9], [1, 1, 1, 1], [1, 3, 3, 2])
    assert clips.num_steps.tolist() == [4] and clips.peak_step.tolist() == [1]  # tie 3/3: earliest
    assert clips.mask.tolist() == [[1.0, 1.0, 0.0, 0.0]]


def test_response_ending_with_a_boundary_has_no_empty_extra_step():
    clips = single([1, 9, 2, 9, 0], [1, 1, 1, 1, 0], [1, 1, 2, 2, 7])
    assert clips.num_steps.tolist() == [2] and clips.peak_step.tolist() == [1]
    assert clips.mask.tolist() == [[1.0, 1.0, 1.0, 1.0, 0.0]]


def test_boundary_id_on_padding_ends_no_step():
    clips = single([1, 2, 9, 9], [1, 1, 0, 0], [1, 1, 5, 5])
    assert clips.num_steps.tolist() == [1] and clips.mask.tolist() == [[1.0, 1.0, 0.0, 0.0]]


@pytest.mark.parametrize("bad", [NAN, INF, -INF])
def test_nonfinite_entropy_on_a_valid_token_drops_the_row(bad):
    clips = single([1, 9, 2, 3], [1, 1, 1, 1], [1, 1, bad, 1])
    assert clips.nonfinite.tolist() == [True] and clips.selected.tolist() == [False]
    assert clips.mask.tolist() == [[0.0] * 4] and clips.peak_entropy.tolist() == [0.0]
    m = selection_metrics(clips, torch.ones(1, 4))
    assert m["echo/nonfinite_entropy_rollouts"] == 1.0
    assert all(math.isfinite(v) for v in m.values())


@pytest.mark.parametrize("bad", [NAN, INF, -INF])
def test_nonfinite_entropy_on_padding_is_ignored(bad):
    clips = single([1, 9, 2, 3], [1, 1, 1, 0], [1, 1, 2, bad])
    assert clips.nonfinite.tolist() == [False] and clips.mask.tolist() == [[1.0, 1.0, 1.0, 0.0]]


def test_mask_with_holes_is_taken_as_given():
    # position 2 is not a response token: steps are [0,1] and [3,4,5]; the hole's nan is ignored
    clips = single([1, 9, 9, 2, 3, 4], [1, 1, 0, 1, 1, 1], [1, 1, NAN, 2, 2, 2])
    assert clips.num_steps.tolist() == [2] and clips.peak_step.tolist() == [1]
    assert clips.mask.tolist() == [[1.0, 1.0, 0.0, 1.0, 1.0, 1.0]]
    assert clips.clip_len.tolist() == [5] and clips.peak_rel_pos.tolist() == [1.0]


@pytest.mark.parametrize("dtype", [torch.bool, torch.int32, torch.int64, torch.float32, torch.bfloat16])
def test_mask_of_any_dtype(dtype):
    clips = run(**dict(ROW, mask=torch.tensor(ROW["mask"]).to(dtype)), config=EchoConfig())
    assert clips.mask.tolist() == [[1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0]]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64])
def test_entropy_of_any_float_dtype(dtype):
    # summed in bf16, the 299 tokens of the last step would lose whole units; its mean (1.01) must still win
    resp = [[9] + [2] * 299 + [9] + [3] * 299]
    ent = torch.tensor([[1.0] * 300 + [1.01] * 300]).to(dtype)
    clips = select_echo_clips(torch.tensor(resp), torch.ones(1, 600), ent, torch.tensor([True]), torch.tensor([0]),
                              B9, EchoConfig())
    assert clips.peak_step.tolist() == [2] and clips.peak_entropy.item() == pytest.approx(float(ent[0, -1]), abs=1e-3)


def test_token_ids_outside_the_boundary_range_and_negative_pads():
    clips = single([151_000, 9, 5, -100], [1, 1, 1, 0], [1, 1, 0, NAN], boundary_ids=torch.tensor([9, 271]))
    assert clips.num_steps.tolist() == [2] and clips.mask.tolist() == [[1.0, 1.0, 0.0, 0.0]]
    clips = single([2**40, 9, 5, 9], [1, 1, 1, 1], [1, 1, 0, 0], boundary_ids=[9, 2**40 + 1])
    assert clips.num_steps.tolist() == [2] and clips.mask.tolist() == [[1.0, 1.0, 0.0, 0.0]]


def test_no_success_anywhere():
    clips = run(**dict(GROUPS, success=[False] * 6), config=EchoConfig(scope="all_successes"))
    assert not clips.eligible.any() and not clips.selected.any() and clips.mask.sum() == 0
    assert clips.group_all_fail.all()
    m = selection_metrics(clips, torch.tensor(GROUPS["mask"]))
    assert m["echo/clip_rollouts"] == 0 and m["echo/clip_len_mean"] == 0 and m["echo/all_fail_group_share"] == 1.0
    assert all(math.isfinite(v) for v in m.values())


def test_every_group_degenerate():
    clips = run(**dict(GROUPS, success=[True] * 6), config=EchoConfig())
    assert clips.eligible.all() and clips.selected.all() and clips.group_all_success.all()
    assert selection_metrics(clips, torch.tensor(GROUPS["mask"]))["echo/all_success_group_share"] == 1.0


def test_empty_batch_and_empty_responses():
    clips = select_echo_clips(torch.zeros(0, 5, dtype=torch.long), torch.zeros(0, 5), torch.zeros(0, 5),
                              torch.zeros(0, dtype=torch.bool), torch.zeros(0, dtype=torch.long), B9, EchoConfig())
    assert clips.mask.shape == (0, 5) and clips.selected.shape == (0,)
    assert all(v == 0.0 for v in selection_metrics(clips, torch.zeros(0, 5)).values())
    clips = run([[]], [[]], [[]], [True], [0], EchoConfig())
    assert clips.mask.shape == (1, 0) and clips.no_candidate.tolist() == [True]


def test_the_callers_thread_setting_is_restored():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        run(**ROW, config=EchoConfig())
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_the_callers_thread_setting_is_restored_when_selection_raises(monkeypatch):
    """The selection itself runs on one thread, and a failure inside it leaves the caller's setting as it was."""
    import echorl_verl.selection as selection

    seen = []

    def failing_step_tables(*args, **kwargs):
        seen.append(torch.get_num_threads())
        raise RuntimeError("inside selection")

    monkeypatch.setattr(selection, "step_tables", failing_step_tables)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with pytest.raises(RuntimeError, match="inside selection"):
            run(**ROW, config=EchoConfig())
        assert seen == [1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_result_moves_between_devices_and_keeps_its_fields():
    clips = run(**ROW, config=EchoConfig()).to("cpu")
    assert clips.mask.device.type == "cpu" and clips.peak_step.tolist() == [1]


# ----------------------------------------------------------------------------- bad input
def call_with(**override):
    args = dict(responses=torch.tensor(ROW["responses"]), response_mask=torch.tensor(ROW["mask"]),
                entropy=torch.tensor(ROW["entropy"]), success=torch.tensor([True]), group_ids=torch.tensor([0]),
                boundary_token_ids=B9, config=EchoConfig(), step=0)
    args.update(override)
    return select_echo_clips(**args)


@pytest.mark.parametrize(
    "override, error, words",
    [
        (dict(response_mask=torch.ones(1, 3)), ValueError, "response_mask"),
        (dict(entropy=torch.ones(2, 11)), ValueError, "entropy"),
        (dict(entropy=torch.ones(1, 11, dtype=torch.long)), ValueError, "entropy"),
        (dict(responses=torch.ones(1, 11)), ValueError, "responses"),
        (dict(responses=torch.ones(11, dtype=torch.long)), ValueError, "responses"),
        (dict(success=torch.tensor([1])), ValueError, "success"),
        (dict(success=torch.tensor([True, False])), ValueError, "success"),
        (dict(group_ids=torch.tensor([0.0])), ValueError, "group_ids"),
        (dict(group_ids=np.array([0])), TypeError, "group_ids"),
        (dict(boundary_token_ids=[]), ValueError, "boundary_token_ids"),
        (dict(boundary_token_ids=[-1]), ValueError, "boundary_token_ids"),
        (dict(boundary_token_ids=[1.5]), ValueError, "boundary_token_ids"),
        (dict(config={"clip_mode": "peak_prefix"}), TypeError, "EchoConfig"),
        (dict(config=lambda: EchoConfig(clip_mode="prefix")), EchoConfigError, "clip_mode"),
        (dict(config=lambda: EchoConfig(scope="everything")), EchoConfigError, "scope"),
        (dict(config=lambda: EchoConfig(per_group="two")), EchoConfigError, "per_group"),
        (dict(config=lambda: EchoConfig(step_agg="median")), EchoConfigError, "step_agg"),
        (dict(step=1.0), TypeError, "step"),
    ],
)
def test_bad_input_names_the_field(override, error, words):
    # configs are built inside the raises block (lambda): a config class may refuse a bad value itself
    with pytest.raises(error, match=words):
        call_with(**{k: v() if callable(v) else v for k, v in override.items()})


def test_group_ids_from_uids():
    uids = np.array(["b", "a", "b", "c", "a"], dtype=object)
    ids = group_ids_from_uids(uids)
    assert ids.dtype == torch.long and ids.tolist() == [1, 0, 1, 2, 0]
    with pytest.raises(ValueError, match="1-D"):
        group_ids_from_uids(np.array([["a"]], dtype=object))
    with pytest.raises(ValueError, match="uid"):
        group_ids_from_uids(np.array(["a", None], dtype=object))


# ----------------------------------------------------------------------------- property tests
VOCAB = 6  # ids 0..5, boundaries {1, 4}: frequent boundaries, runs of boundaries, boundary-only rows
BOUNDARIES = [1, 4]


@st.composite
def batches(draw):
    B = draw(st.integers(1, 10))
    T = draw(st.integers(0, 12))
    n_groups = draw(st.integers(1, B))
    group_ids = [draw(st.integers(0, n_groups - 1)) * 1000 for _ in range(B)]  # sparse ids: dense mapping matters
    responses, mask, entropy = [], [], []
    holes = draw(st.booleans()) and draw(st.booleans())  # a quarter of the batches: masks with holes
    for _ in range(B):
        responses.append([draw(st.integers(0, VOCAB - 1)) for _ in range(T)])
        if holes:
            mask.append([draw(st.integers(0, 1)) for _ in range(T)])
        else:
            n = draw(st.integers(0, T))
            mask.append([1] * n + [0] * (T - n))
        # small multiples of 0.5: exact in float32 and float64, so ties are real ties
        entropy.append([draw(st.sampled_from([0.0, 0.5, 1.0, 1.0, 2.0, 2.0, 3.0])) for _ in range(T)])
    if draw(st.booleans()):  # sprinkle non-finite values, on valid tokens or padding
        for _ in range(draw(st.integers(1, 3))):
            r, t = draw(st.integers(0, B - 1)), draw(st.integers(0, max(T - 1, 0)))
            if T:
                entropy[r][t] = draw(st.sampled_from([NAN, INF, -INF]))
    success = [draw(st.booleans()) for _ in range(B)]
    if draw(st.booleans()):  # make whole groups succeed often, so that all_success_groups has rows
        good = draw(st.sets(st.sampled_from(sorted(set(group_ids)))))
        success = [s or g in good for s, g in zip(success, group_ids)]
    config = EchoConfig(
        scope=draw(st.sampled_from(SCOPES)), per_group=draw(st.sampled_from(PER_GROUP)),
        clip_mode=draw(st.sampled_from(CLIP_MODES)), step_agg=draw(st.sampled_from(STEP_AGGREGATIONS)),
        min_step_tokens=draw(st.integers(1, 3)), seed=draw(st.integers(0, 3)),
    )
    return responses, mask, entropy, success, group_ids, config, draw(st.integers(0, 5))


def select_drawn(batch):
    """select_echo_clips on a drawn batch (nested lists)."""
    responses, mask, entropy, success, group_ids, config, step = batch
    B, T = len(responses), len(responses[0])
    clips = select_echo_clips(
        torch.tensor(responses, dtype=torch.long).reshape(B, T), torch.tensor(mask, dtype=torch.int64).reshape(B, T),
        torch.tensor(entropy, dtype=torch.float32).reshape(B, T), torch.tensor(success), torch.tensor(group_ids),
        BOUNDARIES, config, step,
    )
    return clips


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches())
def test_matches_reference(batch):
    responses, mask, entropy, success, group_ids, config, step = batch
    B, T = len(responses), len(responses[0])
    clips = select_drawn(batch)
    assert_matches_reference(clips, reference(responses, mask, entropy, success, group_ids, BOUNDARIES, config, step))
    metrics = selection_metrics(clips, torch.tensor(mask).reshape(B, T))
    assert all(isinstance(v, float) and math.isfinite(v) for v in metrics.values())


def reference_steps(responses, mask, entropy, boundary_ids, step_agg):
    """Per row: [(position of the step's last token, valid tokens, step entropy)], straight from the definition."""
    out = []
    for resp, m, ent in zip(responses, mask, entropy):
        steps, cur = [], []
        for t in (t for t in range(len(resp)) if m[t]):
            cur.append(t)
            if resp[t] in boundary_ids:
                steps.append(cur)
                cur = []
        steps += [cur] if cur else []
        agg = {"mean": lambda v: sum(v) / len(v), "max": max, "sum": sum}[step_agg]
        out.append([(s[-1], len(s), agg([ent[t] for t in s])) for s in steps])
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches())
def test_step_tables_match_the_definition(batch):
    """The step tables EchoClips carries for the rollout dump (step_rows, step_ends, step_tokens, step_entropy)."""
    responses, mask, entropy, config = (batch[k] for k in (0, 1, 2, 5))
    clips = select_drawn(batch)
    B, T = clips.mask.shape
    ref = reference_steps(responses, mask, entropy, BOUNDARIES, config.step_agg)
    expected_rows = [r for r in range(B) if clips.eligible[r]] if T else []
    assert clips.step_rows.tolist() == expected_rows
    S = clips.step_ends.shape[1]
    for i, r in enumerate(expected_rows):
        n = len(ref[r])
        assert clips.step_ends[i].tolist() == [e for e, _, _ in ref[r]] + [-1] * (S - n)
        assert clips.step_tokens[i].tolist() == [c for _, c, _ in ref[r]] + [0] * (S - n)
        if not clips.nonfinite[r]:
            assert clips.step_entropy[i].tolist() == [a for _, _, a in ref[r]] + [0.0] * (S - n)


def test_every_clip_mode_is_one_span():
    assert set(CLIP_SPANS) == set(CLIP_MODES)


@pytest.mark.parametrize("config", [EchoConfig(), EchoConfig(step_agg="max", per_group="one"),
                                    EchoConfig(clip_mode="random_prefix", scope="all_successes")])
def test_matches_reference_on_a_larger_batch_with_real_valued_entropies(config):
    """Continuous entropies (fixed seed): float32 step sums differ from the float64 reference only in the last
    bits, far below the gaps between step entropies here, so the same steps win."""
    gen = torch.Generator().manual_seed(0)
    B, T = 48, 160
    lengths = torch.randint(0, T + 1, (B,), generator=gen)
    mask = (torch.arange(T)[None] < lengths[:, None]).long()
    responses = torch.randint(0, 40, (B, T), generator=gen)
    entropy = torch.rand(B, T, generator=gen) * 3
    success = torch.rand(B, generator=gen) < 0.9
    group_ids = torch.arange(B) // 4
    clips = select_echo_clips(responses, mask, entropy, success, group_ids, [1, 2], config, step=2)
    ref = reference(responses.tolist(), mask.tolist(), entropy.tolist(), success.tolist(), group_ids.tolist(),
                    [1, 2], config, step=2)
    assert clips.selected.tolist() == ref["selected"] and clips.selected.sum() >= 4
    assert clips.peak_step.tolist() == ref["peak_step"]
    assert clips.mask.tolist() == ref["mask"]
    assert torch.allclose(clips.peak_entropy, torch.tensor(ref["peak_entropy"]), atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_gives_the_cpu_result():
    gen = torch.Generator().manual_seed(1)
    B, T = 64, 300
    mask = (torch.arange(T)[None] < torch.randint(0, T + 1, (B, 1), generator=gen)).long()
    args = (torch.randint(0, 30, (B, T), generator=gen), mask, torch.randint(0, 4, (B, T), generator=gen).float(),
            torch.rand(B, generator=gen) < 0.8, torch.arange(B) // 8)
    for config in (EchoConfig(), EchoConfig(clip_mode="random_prefix", per_group="one", step_agg="max")):
        cpu = select_echo_clips(*args, [1, 2], config, step=5)
        gpu = select_echo_clips(*(a.cuda() for a in args), [1, 2], config, step=5).to("cpu")
        for name in ("mask", "selected", "peak_step", "clip_step", "clip_len", "peak_entropy"):
            assert torch.equal(getattr(cpu, name), getattr(gpu, name)), name
