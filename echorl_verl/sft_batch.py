"""Right-padded SFT batches, shared by the two warm-ups (echorl_verl/toy/warmup.py, echorl_verl/smollm2/warmup.py).

Why: both warm-ups train on (prompt + response) rows with the loss on the response only; the padding layout
must be the same everywhere a test or a build reads it.
"""

from __future__ import annotations


def right_padded(rows: list[tuple[list[int], list[int]]], pad_id: int):
    """rows: (input ids, labels) of equal length per row, labels -100 where no loss is taken.

    Returns input_ids [B, T] int64 (padded with `pad_id`), attention_mask [B, T] int64 and labels [B, T] int64
    (-100 on the padding).
    """
    import torch

    width = max(len(ids) for ids, _ in rows)
    ids = torch.tensor([r + [pad_id] * (width - len(r)) for r, _ in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r, _ in rows])
    labels = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in rows])
    return ids, mask, labels
