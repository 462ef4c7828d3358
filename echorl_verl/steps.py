"""Steps of a response: where they end and how much entropy each holds (used by `selection.py`).

A step ends at (and includes) a boundary token; the last step ends at the last valid token. The tables
are built for the E eligible rows only, with one `nonzero` of the boundary flags for the step ends and
one `torch.segment_reduce` per row (segments = the steps, then the padding) for the step sums, so no
[E, T] step-id or prefix-sum tensor and no [E, T, S] tensor is ever built.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

#: how token entropies make a step entropy (`echo.step_agg`); `step_tables` implements each
STEP_AGGREGATIONS = ("mean", "max", "sum")


class StepTable(NamedTuple):
    """The steps of E rows, S = max(1, most steps of a row) columns; column k is step k of the row.

    A NamedTuple rather than a dict so that each field has one name, type and shape a reader (and a
    linter) can check. Where `exists` is False, or in `nonfinite` rows, ends/seg_len/counts/agg are
    meaningless.
    """

    valid: torch.Tensor
    """[E, T] bool: response tokens."""
    prefix: bool
    """Every row's valid tokens are a prefix (right padding; the fast path)."""
    length: torch.Tensor
    """[E] long: valid tokens per row."""
    nonfinite: torch.Tensor
    """[E] bool: a valid token's entropy is nan/inf."""
    num_steps: torch.Tensor
    """[E] long: steps per row (0 for an empty response)."""
    ends: torch.Tensor
    """[E, S] long: position of each step's last token."""
    seg_len: torch.Tensor
    """[E, S] long: positions from the previous step's end (-1 before step 0) to this step's end."""
    counts: torch.Tensor
    """[E, S] long: valid tokens per step (= seg_len when `prefix`)."""
    agg: torch.Tensor
    """[E, S] float64: the step entropy (mean, max or sum of its tokens' entropies)."""

    @property
    def exists(self) -> torch.Tensor:
        """[E, S] bool: column k is a step of the row (k < num_steps)."""
        S = self.ends.shape[1]
        return torch.arange(S, device=self.ends.device)[None, :] < self.num_steps[:, None]

    @property
    def starts(self) -> torch.Tensor:
        """[E, S] long: the position just before each step's first token (the previous step's end; -1)."""
        return self.ends - self.seg_len


def boundary_flags(resp: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """[E, T] bool: the tokens whose id is a boundary id (padding included; the caller drops those).

    A gather through a bool lookup table costs the same for 2 ids or for the thousands a tokenizer can
    have (torch.isin with many ids sorts the whole batch). The table spans every id present, so the usual
    batch needs no clamp pass; odd ids (negative pads, ids past 2^24) are first sent to a False slot.
    """
    lo, hi = torch.stack(torch.aminmax(resp)).tolist() if resp.numel() else (0, 0)
    top = int(ids.max()) + 1  # a slot that is never a boundary
    if top > 2**24:  # no tokenizer has such ids; stay correct without a huge table
        return torch.isin(resp, ids)
    if lo < 0 or hi >= 2**24:
        resp = torch.where((resp < 0) | (resp > top), top, resp)
        hi = top
    lut = torch.zeros(max(hi, top) + 1, dtype=torch.bool, device=resp.device)
    lut[ids] = True
    return torch.take(lut, resp)  # ids are in range here; take is faster than lut[resp]


def step_tables(resp, mask, ent, ids, step_agg: str) -> StepTable:
    """Step structure and step entropies of E rows (the eligible ones).

    resp [E, T] int token ids, mask [E, T] any dtype (nonzero = response token), ent [E, T] float,
    ids [N] long boundary ids, step_agg one of STEP_AGGREGATIONS (checked by EchoConfig).
    """
    E, T = resp.shape
    dev = resp.device
    ar = torch.arange(E, device=dev)
    pos = torch.arange(T, device=dev)
    valid = mask if mask.dtype == torch.bool else mask != 0
    length = torch.count_nonzero(valid, dim=1)  # no int64 [E, T] temporary, unlike valid.sum
    # The usual case (right padding): the valid tokens of each row are exactly positions 0..length-1.
    prefix = torch.equal(valid, pos < length[:, None])
    if prefix:
        last_pos = length - 1
    else:
        last_pos = (valid * (pos + 1)).amax(dim=1) - 1
        ent = torch.where(valid, ent, torch.zeros((), dtype=ent.dtype, device=dev))
    flag = boundary_flags(resp, ids)
    flag &= valid  # a boundary id on a padding position ends no step
    rows_b, cols_b = flag.nonzero(as_tuple=True)  # row-major order: a row's boundaries in position order
    nb = torch.bincount(rows_b, minlength=E)
    safe_last = last_pos.clamp(min=0)
    tail = (length > 0) & ~flag[ar, safe_last]  # valid tokens after the last boundary form one more step
    num_steps = nb + tail.long()
    S = max(int(num_steps.max()), 1)  # at least one (maybe non-existent) column keeps the tables simple
    # ends[:, k] = position of step k's last token for k < num_steps, T-1 after: the differences are the
    # segment lengths of each row: its steps, then its padding (maybe empty), then empty segments.
    ends = torch.full((E, S + 1), T - 1, dtype=torch.long, device=dev)
    rank = torch.arange(rows_b.numel(), device=dev) - (torch.cumsum(nb, 0) - nb)[rows_b]
    ends[rows_b, rank] = cols_b
    ends[ar[tail], nb[tail]] = last_pos[tail]
    seg_len = torch.diff(ends, dim=1, prepend=torch.full((E, 1), -1, dtype=torch.long, device=dev))
    exists = torch.arange(S, device=dev)[None, :] < num_steps[:, None]  # column num_steps is the padding

    # float32 segment sums (exact for the integer test values); a nan/inf on a valid token makes its step
    # sum non-finite, while padding lands in the padding segment, which is no step.
    sums = torch.segment_reduce(ent, "sum", lengths=seg_len, axis=1)[:, :S]
    nonfinite = (~torch.isfinite(sums) & exists).any(dim=1)
    sums = sums.double()
    if prefix:
        counts = seg_len[:, :S]
    else:
        counts = torch.segment_reduce(valid.to(ent.dtype), "sum", lengths=seg_len, axis=1)[:, :S].long()
    if step_agg == "max":
        if not prefix:  # holes were zeroed for the sums; for a max they must lose
            ent = torch.where(valid, ent, torch.full((), -torch.inf, dtype=ent.dtype, device=dev))
        agg = torch.segment_reduce(ent, "max", lengths=seg_len, axis=1)[:, :S].double()
    elif step_agg == "sum":
        agg = sums
    else:
        agg = sums / counts.clamp(min=1)
    return StepTable(valid=valid, prefix=prefix, length=length, nonfinite=nonfinite, num_steps=num_steps,
                     ends=ends[:, :S], seg_len=seg_len[:, :S], counts=counts, agg=agg)
