"""The clip modes (`echo.clip_mode`): each one is a span of steps, written as one entry of `CLIP_SPANS`.

A clip covers whole steps of a response, from its `first` step to its `last` step (both included), where
each end is named by a rule over the row's steps:
    peak_prefix    [response start, peak step]    the method: the prefix through the highest-entropy step
    peak_step      [peak step,      peak step]    that step alone
    full_response  [response start, last step]    positive-sample SFT, the naive baseline
    random_prefix  [response start, random step]  control: ends at a seeded, uniformly drawn candidate step
Why a table: the mask, the clip's end step and its length then come from one span by one code path for
every mode (the clip length is counted from the mask itself), so a mode cannot disagree with itself,
and adding one is one line here (`config.CLIP_MODES`, the valid `echo.clip_mode` values, is this table's keys).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch

from echorl_verl.steps import StepTable


class Candidates(NamedTuple):
    """What a step rule may look at, for the E eligible rows of a batch of B rows."""

    table: StepTable
    cand: torch.Tensor
    """[E, S] bool: the steps that may be the peak (long enough)."""
    peak: torch.Tensor
    """[E] long: the highest-entropy candidate step (ties: the earliest; 0 where there is none)."""
    rows: torch.Tensor
    """[E] long: the batch row of each table row."""
    batch_size: int
    seed: int
    step: int


StepRule = Callable[[Candidates], torch.Tensor]  # -> [E] long step index per row


def response_start(c: Candidates) -> torch.Tensor:
    return torch.zeros_like(c.peak)


def peak_step(c: Candidates) -> torch.Tensor:
    return c.peak


def last_step(c: Candidates) -> torch.Tensor:
    return (c.table.num_steps - 1).clamp(min=0)


def random_step(c: Candidates) -> torch.Tensor:
    """A uniformly drawn candidate step per row (rows with none: 0).

    The draw comes from a CPU generator seeded by (seed, training step), one number per batch row, so it
    depends on the batch only through B and the row index, never on the device."""
    gen = torch.Generator(device="cpu")
    gen.manual_seed((int(c.seed) * 0x9E3779B97F4A7C15 + int(c.step)) % (2**63 - 1))
    u = torch.rand(c.batch_size, generator=gen, dtype=torch.float64).to(c.cand.device)[c.rows]
    n = c.cand.sum(dim=1)
    j = torch.minimum((u * n).floor().long(), (n - 1).clamp(min=0))
    # the (j+1)-th candidate: first column whose running candidate count exceeds j
    return (torch.cumsum(c.cand, dim=1) > j[:, None]).int().argmax(dim=1)


class ClipSpan(NamedTuple):
    """A clip mode: the clip covers steps first(c) .. last(c) of each row, both included."""

    first: StepRule
    last: StepRule


CLIP_SPANS: dict[str, ClipSpan] = {
    "peak_prefix": ClipSpan(first=response_start, last=peak_step),
    "peak_step": ClipSpan(first=peak_step, last=peak_step),
    "full_response": ClipSpan(first=response_start, last=last_step),
    "random_prefix": ClipSpan(first=response_start, last=random_step),
}


def span_mask(span: ClipSpan, first: torch.Tensor, last: torch.Tensor, c: Candidates, selected: torch.Tensor,
              T: int) -> torch.Tensor:
    """[B, T] float32 0/1: positions (start of step `first`, end of step `last`] of the selected rows.

    first, last [E] long step indices (in range); selected [E] bool. The mask is written in one comparison
    over [B, T] straight into float32 (rows not selected get end -1), plus a second only for spans that do
    not start at the response start. Float operands on purpose: an int64 comparison into a float32 output
    is 3x slower on CPU; positions are exact in float32 (T < 2^24). Rows with holes in their mask are
    multiplied by it (a span may cover padding positions there).
    """
    st, rows, B = c.table, c.rows, c.batch_size
    dev = st.ends.device
    pos = torch.arange(T, device=dev, dtype=torch.float32)

    def per_row(values: torch.Tensor) -> torch.Tensor:  # [E] -> [B, 1] float32, -1 elsewhere
        full = torch.full((B,), -1.0, dtype=torch.float32, device=dev)
        full[rows] = values.float()
        return full[:, None]

    end = st.ends.gather(1, last[:, None]).squeeze(1)
    end = torch.where(selected, end, torch.full((), -1, dtype=torch.long, device=dev))
    mask = torch.le(pos, per_row(end), out=torch.empty(B, T, dtype=torch.float32, device=dev))
    if span.first is not response_start:  # response_start's step starts at -1: no second comparison
        start = st.starts.gather(1, first[:, None]).squeeze(1)
        mask.mul_(torch.gt(pos, per_row(start), out=torch.empty_like(mask)))
    if not st.prefix:
        mask[rows] = mask[rows] * st.valid
    return mask


__all__ = ["CLIP_SPANS", "ClipSpan", "Candidates", "span_mask", "response_start", "peak_step", "last_step",
           "random_step"]
