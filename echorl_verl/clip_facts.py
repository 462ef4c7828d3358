"""Per-rollout clip facts for verl's rollout dump (`trainer.rollout_data_dir`), read by the EchoClip viewer.

The trainer calls `clip_facts` on the EchoClips of a step and writes each record under the key `echo` of
that rollout's line in verl's `{step}.jsonl` (see `EchoPPOTrainer._dump_generations`). It runs only when
the dump is on: the per-step token lists are cut in Python, but all steps of the batch are decoded in one
`batch_decode` call.

Record of an eligible row (JSON-serialisable; field names are the dump's format, `FACTS_VERSION` 1):
    version            1
    eligible           true
    selected           the row got a clip
    status             "clip" | "nonfinite_entropy" | "no_candidate_step" | "not_best_in_group"
    group_all_success  every rollout of the prompt succeeded
    response_tokens    valid response tokens
    steps              [{"text", "tokens", "entropy"}] per step, in order; text decoded with special
                       tokens kept (what the clip supervises), entropy the step entropy (null if nan/inf)
    peak_step          index of the highest-entropy candidate step, or null
    clip_first_step    first step of the clip (0, or the peak for clip_mode=peak_step), or null
    clip_step          the step the clip ends at, or null
    clip_end_tokens    response tokens through the end of `clip_step` (the clip's end), or null
    clip_len           tokens in the clip (0 without a clip)
A row that is not eligible gets {"version", "eligible": false, "selected": false, "status": "not_eligible",
"group_all_success", "response_tokens"}.
"""

from __future__ import annotations

import itertools
import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # not imported at run time: the viewer reads FACTS_VERSION without loading torch
    import torch

    from echorl_verl.selection import EchoClips

FACTS_VERSION = 1


def clip_facts(clips: EchoClips, responses: torch.Tensor, response_mask: torch.Tensor, tokenizer) -> list[dict]:
    """One record per batch row (see the module docstring), in row order.

    clips: select_echo_clips' result for this batch; responses [B, T] token ids and response_mask [B, T]
    (nonzero = response token): the tensors given to select_echo_clips; tokenizer: has `batch_decode`.
    """
    B = clips.selected.numel()
    if tuple(responses.shape) != tuple(clips.mask.shape) or tuple(response_mask.shape) != tuple(clips.mask.shape):
        raise ValueError(
            f"clip_facts: responses {tuple(responses.shape)} and response_mask {tuple(response_mask.shape)} must "
            f"have the clip mask's shape {tuple(clips.mask.shape)}: pass the tensors given to select_echo_clips"
        )
    clips = clips.to("cpu")
    valid = response_mask.cpu() != 0
    responses = responses.cpu()
    length = valid.sum(dim=1).tolist()
    rows = [_base(clips, r, length[r]) for r in range(B)]

    step_ids, owners = [], []  # every step's token ids, and (batch row, step index) of each
    for i, r in enumerate(clips.step_rows.tolist()):
        ids = responses[r][valid[r]].tolist()
        n = int(clips.num_steps[r])
        start = 0
        for k, count in enumerate(clips.step_tokens[i, :n].tolist()):
            step_ids.append(ids[start : start + count])
            owners.append((r, k))
            start += count
        _fill_eligible(rows[r], clips, r, i, n)
    texts = tokenizer.batch_decode(step_ids, skip_special_tokens=False) if step_ids else []
    for (r, k), text in zip(owners, texts):
        rows[r]["steps"][k]["text"] = text
    return rows


def _base(clips: EchoClips, r: int, response_tokens: int) -> dict:
    """The record of a row that is not eligible, or of an eligible one before its steps are added."""
    rec = {"version": FACTS_VERSION, "eligible": bool(clips.eligible[r]), "selected": False,
           "status": "not_eligible", "group_all_success": bool(clips.group_all_success[r]),
           "response_tokens": int(response_tokens)}
    if rec["eligible"]:  # an eligible row outside the step tables has no response positions (T = 0)
        rec.update(status="no_candidate_step", steps=[], peak_step=None, clip_first_step=None, clip_step=None,
                   clip_end_tokens=None, clip_len=0)
    return rec


def _fill_eligible(rec: dict, clips: EchoClips, r: int, i: int, n: int) -> None:
    """Add the step facts of batch row r (row i of the step tables, n steps) to its record."""
    tokens = clips.step_tokens[i, :n].tolist()
    rec["steps"] = [{"text": None, "tokens": int(t), "entropy": e if math.isfinite(e) else None}
                    for t, e in zip(tokens, clips.step_entropy[i, :n].tolist())]
    rec["clip_len"] = int(clips.clip_len[r])
    if bool(clips.nonfinite[r]):
        rec["status"] = "nonfinite_entropy"
    elif not bool(clips.no_candidate[r]):
        rec["status"] = "not_best_in_group"  # a candidate but no clip: per_group=one chose another row
    if not bool(clips.selected[r]):
        return
    through = list(itertools.accumulate(tokens))  # tokens through the end of each step
    last = int(clips.clip_step[r])
    before = through[last] - rec["clip_len"]  # tokens before the clip: it is contiguous over valid tokens
    first = next(k for k, t in enumerate(through) if t > before)
    rec.update(selected=True, status="clip", peak_step=int(clips.peak_step[r]), clip_first_step=first,
               clip_step=last, clip_end_tokens=through[last])


__all__ = ["clip_facts", "FACTS_VERSION"]
