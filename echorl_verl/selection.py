"""EchoClip selection: for each eligible success rollout, the response prefix through its highest-entropy step.

A response is cut into steps: a step ends at (and includes) a boundary token (a newline token by default);
the last step ends at the last response token, so a response that ends with a boundary has no empty
extra step and a response with no boundary is one step. The step entropy aggregates the old policy's
per-token entropies over the step (`mean`, `max` or `sum`). The EchoClip of a rollout is the prefix
through the end of its peak step (ties: the earliest step); the ablation modes cut other spans of steps
(`clip_modes.py`: one table entry per mode).

Everything is vectorised (no Python loop over rows or tokens) and runs on the tensors' device. Speed
comes from working only on the eligible rows (index_select first: in a real batch most rows are not
eligible), from few passes over those rows and from small temporaries: the step ends come from
`nonzero` of the boundary flags, the step sums (and maxima) from one `torch.segment_reduce` per row
whose segments are the steps, so no [rows, tokens] step-id or prefix-sum tensor and no
[rows, tokens, steps] tensor is built; the clip mask is written in one comparison straight into float32.
A row whose valid tokens are not a prefix (holes in the mask) takes a slower but equally exact path.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, fields
from typing import Sequence, Union

import numpy as np
import torch

from echorl_verl.clip_modes import CLIP_SPANS, Candidates, span_mask
from echorl_verl.config import EchoConfig
from echorl_verl.steps import step_tables

BoundaryIds = Union[Sequence[int], torch.Tensor]


@dataclass
class EchoClips:
    """The clips of one batch of B rollouts with T response positions, plus per-row facts (all on one device).

    Per-step facts describe the eligible rows only (0, -1 or False elsewhere): `num_steps` is 0 for rows
    that are not eligible; `peak_*`, `clip_*` are filled only where `selected`. The `step_*` tables hold
    the E eligible rows' steps (S = max(1, most steps of a row) columns), for the rollout dump
    (`clip_facts.py`); they are small ([E, S]) and already computed for the selection.
    """

    mask: torch.Tensor
    """[B, T] float32 0/1: the clip tokens (never NaN; 0 on padding and on rows that are not selected)."""
    eligible: torch.Tensor
    """[B] bool: a success row in scope (`EchoConfig.scope`), before the peak search."""
    selected: torch.Tensor
    """[B] bool: the row got a clip."""
    peak_step: torch.Tensor
    """[B] long: index of the highest-entropy candidate step (ties: earliest), -1 where not selected.
    It is the true peak in every clip mode (random_prefix draws its end step separately: `clip_step`)."""
    clip_step: torch.Tensor
    """[B] long: the step the clip ends at (peak_prefix, peak_step: the peak; random_prefix: the drawn step;
    full_response: the last step), -1 where not selected."""
    num_steps: torch.Tensor
    """[B] long: steps in the response (eligible rows; 0 elsewhere)."""
    clip_len: torch.Tensor
    """[B] long: tokens in the clip, counted from `mask` (0 where not selected)."""
    peak_entropy: torch.Tensor
    """[B] float32: aggregated entropy of the peak step (0 where not selected)."""
    peak_rel_pos: torch.Tensor
    """[B] float32: (tokens through the end of the peak step) / (response tokens); 0 where not selected."""
    nonfinite: torch.Tensor
    """[B] bool: eligible but dropped: its entropy is nan/inf on a valid token."""
    no_candidate: torch.Tensor
    """[B] bool: eligible, finite, but no step has >= min_step_tokens tokens (or the response is empty)."""
    group_index: torch.Tensor
    """[B] long: dense group id (0 .. num_groups-1) of each row."""
    group_all_success: torch.Tensor
    """[B] bool: every row of this row's group succeeded (the advantage-degenerated groups)."""
    group_all_fail: torch.Tensor
    """[B] bool: no row of this row's group succeeded."""
    step_rows: torch.Tensor
    """[E] long: the batch row of each row of the step tables (the eligible rows, ascending; none if T = 0)."""
    step_ends: torch.Tensor
    """[E, S] long: position of each step's last token; -1 past the row's last step."""
    step_tokens: torch.Tensor
    """[E, S] long: response tokens in each step; 0 past the row's last step."""
    step_entropy: torch.Tensor
    """[E, S] float64: each step's entropy (`step_agg` of its tokens'; nan/inf in `nonfinite` rows);
    0 past the row's last step."""

    def to(self, device) -> "EchoClips":
        return EchoClips(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})


def group_ids_from_uids(uids) -> torch.Tensor:
    """Map verl's per-row prompt uids (np.ndarray of str/object, [B]) to dense group ids (LongTensor [B]).

    Ids follow the sorted order of the uids (np.unique); only equality matters downstream.
    """
    arr = np.asarray(uids)
    if arr.ndim != 1:
        raise ValueError(f"uids: expected a 1-D array with one uid per row, got shape {arr.shape}")
    try:
        _, inverse = np.unique(arr, return_inverse=True)
    except TypeError as err:  # e.g. None mixed with str: not orderable
        raise ValueError(
            f"uids: cannot group rows by uid ({err}); every row needs a uid of one type (verl uses str)"
        ) from err
    return torch.from_numpy(inverse.reshape(-1).astype(np.int64))


def _check_inputs(responses, response_mask, entropy, success, group_ids, boundary_token_ids, config, step):
    """Validate shapes, dtypes and devices; return (B, T, boundary id LongTensor on the device)."""
    if not isinstance(config, EchoConfig):
        raise TypeError(f"config: expected an EchoConfig, got {type(config).__name__}; build it with EchoConfig.from_dict")
    if not isinstance(step, (int, np.integer)) or isinstance(step, bool):
        raise TypeError(f"step: expected the integer training step, got {step!r}")
    tensors = dict(responses=responses, response_mask=response_mask, entropy=entropy, success=success, group_ids=group_ids)
    for name, value in tensors.items():
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{name}: expected a torch.Tensor, got {type(value).__name__}")
    if responses.dim() != 2 or responses.is_floating_point() or responses.dtype == torch.bool:
        raise ValueError(f"responses: expected integer token ids of shape [B, T], got {responses.dtype} {tuple(responses.shape)}")
    B, T = responses.shape
    if T >= 2**24:  # positions are compared in float32 when the mask is written
        raise ValueError(f"responses: {T} response positions; at most 2^24 - 1 are supported")
    for name in ("response_mask", "entropy"):
        if tuple(tensors[name].shape) != (B, T):
            raise ValueError(f"{name}: expected shape [B, T] = {(B, T)} like responses, got {tuple(tensors[name].shape)}")
    if not entropy.is_floating_point():
        raise ValueError(f"entropy: expected a floating tensor of per-token entropies, got {entropy.dtype}")
    if tuple(success.shape) != (B,) or success.dtype != torch.bool:
        raise ValueError(
            f"success: expected a bool tensor of shape [B] = ({B},), got {success.dtype} {tuple(success.shape)}; "
            f"compute it as `score >= success_threshold`"
        )
    if tuple(group_ids.shape) != (B,) or group_ids.is_floating_point() or group_ids.dtype == torch.bool:
        raise ValueError(
            f"group_ids: expected integer group ids of shape [B] = ({B},), got {group_ids.dtype} "
            f"{tuple(group_ids.shape)}; map verl's uids with group_ids_from_uids"
        )
    devices = {name: value.device for name, value in tensors.items()}
    if len(set(devices.values())) != 1:
        raise ValueError(f"all tensors must be on one device, got {devices}")
    ids = torch.as_tensor(boundary_token_ids).reshape(-1)
    if ids.numel() == 0 or ids.is_floating_point() or ids.dtype == torch.bool or bool((ids < 0).any()):
        raise ValueError(
            f"boundary_token_ids: expected a non-empty list of token ids >= 0, got {boundary_token_ids!r}; "
            f"see EchoConfig.boundary_token_ids"
        )
    return B, T, ids.to(device=responses.device, dtype=torch.long)


def _one_per_group(selected, score, group_index, num_groups):
    """Keep, per group, only the selected row with the highest score (ties: the earliest row). [B] bool."""
    B = selected.numel()
    dev = selected.device
    score = torch.where(selected, score, torch.full((), -torch.inf, dtype=score.dtype, device=dev))
    best = torch.full((num_groups,), -torch.inf, dtype=score.dtype, device=dev)
    best = best.scatter_reduce(0, group_index, score, "amax", include_self=True)
    rows = torch.arange(B, device=dev)
    top = selected & (score == best[group_index])
    first = torch.full((num_groups,), B, dtype=torch.long, device=dev)
    first = first.scatter_reduce(0, group_index, torch.where(top, rows, B), "amin", include_self=True)
    return top & (rows == first[group_index])


def select_echo_clips(
    responses: torch.Tensor,
    response_mask: torch.Tensor,
    entropy: torch.Tensor,
    success: torch.Tensor,
    group_ids: torch.Tensor,
    boundary_token_ids: BoundaryIds,
    config: EchoConfig,
    step: int = 0,
) -> EchoClips:
    """Select the EchoClips of a batch.

    responses [B, T] integer token ids; response_mask [B, T] 0/1 (any dtype; nonzero = response token);
    entropy [B, T] float (values at padding are ignored, nan/inf there are fine); success [B] bool;
    group_ids [B] integer prompt group of each row (see group_ids_from_uids); boundary_token_ids: the ids
    that end a step; config: EchoConfig (scope, per_group, clip_mode, step_agg, min_step_tokens, seed);
    step: the training step, mixed into the random_prefix seed. Returns EchoClips on the inputs' device.
    """
    B, T, ids = _check_inputs(responses, response_mask, entropy, success, group_ids, boundary_token_ids, config, step)
    with _single_thread_on_cpu(responses.device):
        return _select(responses, response_mask, entropy, success, group_ids, ids, config, step, B, T)


@contextlib.contextmanager
def _single_thread_on_cpu(device: torch.device):
    """Run the CPU path with one intra-op thread, then restore the caller's setting (also when selection raises).

    Why: selection is ~35 short ops; on a CPU that other processes keep busy (a trainer's driver shares
    its node with workers and data loaders), every multi-threaded op waits for its second thread to be
    scheduled. Measured on the 2-core dev machine under load (load average 1.6-4):
    B=1024, T=2048: 2 threads 60-186 ms, 1 thread 15-37 ms (1.6x-9x);
    B=1024, T=8192: 2 threads 240-400 ms, 1 thread 25-80 ms
    (`python -m benchmarks.bench_selection --compare-threads --sizes 1024x2048`). One thread costs little
    when the machine is idle. With torch's OpenMP backend the setting belongs to the calling thread: other
    threads of the process keep theirs during the call.
    """
    if device.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _group_facts(group_ids, success):
    """Dense group index [B], the number of groups, and [B] bool all-success / all-fail of each row's group."""
    B = group_ids.numel()
    if B:
        _, group_index = torch.unique(group_ids, return_inverse=True)
        num_groups = int(group_index.max()) + 1
    else:
        group_index, num_groups = torch.zeros(0, dtype=torch.long, device=group_ids.device), 0
    size = torch.bincount(group_index, minlength=num_groups)
    wins = torch.bincount(group_index, weights=success.double(), minlength=num_groups).long()
    return group_index, num_groups, (wins == size)[group_index], (wins == 0)[group_index]


def _select(responses, response_mask, entropy, success, group_ids, ids, config, step, B, T) -> EchoClips:
    """select_echo_clips after validation (see there)."""
    dev = responses.device
    group_index, num_groups, group_all_success, group_all_fail = _group_facts(group_ids, success)
    eligible = success & group_all_success if config.scope == "all_success_groups" else success.clone()
    groups = dict(eligible=eligible, group_index=group_index, group_all_success=group_all_success,
                  group_all_fail=group_all_fail)
    rows = eligible.nonzero().squeeze(1)
    if rows.numel() == 0 or T == 0:
        return _no_clips(B, T, dev, no_candidate=eligible.clone() if T == 0 else None, **groups)

    # bf16/fp16 entropies would lose whole units in step sums: sum in float32 at least (a no-op for float32)
    ent = entropy.index_select(0, rows)
    ent = ent.to(torch.promote_types(ent.dtype, torch.float32))
    st = step_tables(responses.index_select(0, rows), response_mask.index_select(0, rows), ent, ids, config.step_agg)
    cand = (st.counts >= config.min_step_tokens) & st.exists
    score = torch.where(cand, st.agg, torch.full((), -torch.inf, dtype=torch.float64, device=dev))
    peak = score.argmax(dim=1)  # the first maximum: ties go to the earliest step
    peak_val = score.gather(1, peak[:, None]).squeeze(1)
    ok = cand.any(dim=1) & ~st.nonfinite

    selected = _scatter(B, rows, ok, False)
    if config.per_group == "one":
        selected = _one_per_group(selected, _scatter(B, rows, torch.where(ok, peak_val, 0.0), 0.0),
                                  group_index, num_groups)
    sel = selected[rows]

    span = CLIP_SPANS[config.clip_mode]
    c = Candidates(table=st, cand=cand, peak=peak, rows=rows, batch_size=B, seed=config.seed, step=int(step))
    first, last = span.first(c), span.last(c)
    mask = span_mask(span, first, last, c, sel, T)
    through_peak = torch.cumsum(st.counts, dim=1).gather(1, peak[:, None]).squeeze(1)

    def where_selected(values, fill):  # [E] -> [B]: values on selected rows, fill elsewhere
        return _scatter(B, rows, torch.where(sel, values, torch.full((), fill, dtype=values.dtype, device=dev)), fill)

    exists = st.exists
    return EchoClips(
        mask=mask, selected=selected,
        peak_step=where_selected(peak, -1), clip_step=where_selected(last, -1),
        num_steps=_scatter(B, rows, st.num_steps, 0),
        clip_len=mask.sum(dim=1).long(),  # exact: sums of 0/1 below 2^24 in float32
        peak_entropy=where_selected(peak_val, 0.0).float(),
        peak_rel_pos=where_selected(through_peak.double() / st.length.clamp(min=1).double(), 0.0).float(),
        nonfinite=_scatter(B, rows, st.nonfinite, False),
        no_candidate=_scatter(B, rows, ~cand.any(dim=1) & ~st.nonfinite, False),
        step_rows=rows, step_ends=torch.where(exists, st.ends, -1), step_tokens=torch.where(exists, st.counts, 0),
        step_entropy=torch.where(exists, st.agg, 0.0), **groups,
    )


def _scatter(B: int, rows: torch.Tensor, values: torch.Tensor, fill) -> torch.Tensor:
    """[B] tensor of values' dtype: values [E] at `rows`, `fill` elsewhere."""
    full = torch.full((B,), fill, dtype=values.dtype, device=values.device)
    full[rows] = values
    return full


def _no_clips(B, T, dev, no_candidate=None, **groups) -> EchoClips:
    """The result when no row can give a clip (no eligible row, or no response positions)."""
    false = torch.zeros(B, dtype=torch.bool, device=dev)
    zeros, minus1 = torch.zeros(B, dtype=torch.long, device=dev), torch.full((B,), -1, dtype=torch.long, device=dev)
    return EchoClips(
        mask=torch.zeros(B, T, dtype=torch.float32, device=dev), selected=false, peak_step=minus1,
        clip_step=minus1.clone(), num_steps=zeros, clip_len=zeros.clone(),
        peak_entropy=torch.zeros(B, dtype=torch.float32, device=dev),
        peak_rel_pos=torch.zeros(B, dtype=torch.float32, device=dev), nonfinite=false.clone(),
        no_candidate=false.clone() if no_candidate is None else no_candidate,
        step_rows=torch.zeros(0, dtype=torch.long, device=dev),
        step_ends=torch.zeros(0, 1, dtype=torch.long, device=dev),
        step_tokens=torch.zeros(0, 1, dtype=torch.long, device=dev),
        step_entropy=torch.zeros(0, 1, dtype=torch.float64, device=dev), **groups,
    )


def selection_metrics(clips: EchoClips, response_mask: torch.Tensor) -> dict[str, float]:
    """Per-step metrics (names under `echo/`), all finite floats (0.0 when nothing is selected).

    response_mask [B, T] as given to select_echo_clips (for the clip token share)."""
    sel = clips.selected
    n_sel = int(sel.sum())
    num_groups = int(clips.group_index.max()) + 1 if clips.group_index.numel() else 0

    def group_share(flag):
        if num_groups == 0:
            return 0.0
        per_group = torch.zeros(num_groups, dtype=torch.bool, device=flag.device)
        per_group[clips.group_index[flag]] = True
        return float(per_group.sum()) / num_groups

    def mean_selected(values):
        return float(values[sel].double().mean()) if n_sel else 0.0

    response_tokens = float(torch.count_nonzero(response_mask))
    return {
        "echo/all_success_group_share": group_share(clips.group_all_success),
        "echo/all_fail_group_share": group_share(clips.group_all_fail),
        "echo/eligible_rollouts": float(clips.eligible.sum()),
        "echo/clip_rollouts": float(n_sel),
        "echo/clip_token_share": float(clips.mask.sum(dtype=torch.float64)) / response_tokens if response_tokens else 0.0,
        "echo/clip_len_mean": mean_selected(clips.clip_len),
        "echo/peak_rel_pos_mean": mean_selected(clips.peak_rel_pos),
        "echo/peak_entropy_mean": mean_selected(clips.peak_entropy),
        "echo/nonfinite_entropy_rollouts": float(clips.nonfinite.sum()),
        "echo/no_candidate_rollouts": float(clips.no_candidate.sum()),
    }


__all__ = ["EchoClips", "select_echo_clips", "selection_metrics", "group_ids_from_uids"]
