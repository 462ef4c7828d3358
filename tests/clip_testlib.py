"""Shared by the clip-facts and viewer tests: toy-tokenizer batches whose lines carry known entropies, and
their clip facts from the real select_echo_clips + clip_facts."""

import torch

from echorl_verl.clip_facts import clip_facts
from echorl_verl.config import EchoConfig, boundary_ids_from_tokenizer
from echorl_verl.selection import select_echo_clips

NAN = float("nan")


def toy_batch(tok, rows, hole=False):
    """rows: [(response lines, per-line entropy, success, group)] -> padded [B, T] responses, mask (int64),
    entropy (each token gets its line's entropy; nan on padding), success [B] bool, groups [B] long."""
    ids = [[tok.encode(line) for line in lines] for lines, *_ in rows]
    T = max(sum(map(len, r)) for r in ids) + 3
    B = len(rows)
    responses = torch.full((B, T), tok.pad_token_id, dtype=torch.long)
    mask, entropy = torch.zeros(B, T, dtype=torch.long), torch.full((B, T), NAN)
    for b, (lines, (_, ents, _, _)) in enumerate(zip(ids, rows)):
        flat = [t for line in lines for t in line]
        responses[b, : len(flat)] = torch.tensor(flat)
        mask[b, : len(flat)] = 1
        entropy[b, : len(flat)] = torch.tensor([e for line, e in zip(lines, ents) for _ in line])
    if hole:  # a hole inside row 0's first line: that token is not a response token
        mask[0, 1] = 0
    return responses, mask, entropy, torch.tensor([r[2] for r in rows]), torch.tensor([r[3] for r in rows])


def facts_of(tok, rows, config=EchoConfig(), hole=False):
    """(EchoClips, clip facts, responses, mask) of a toy batch."""
    responses, mask, entropy, success, groups = toy_batch(tok, rows, hole)
    clips = select_echo_clips(responses, mask, entropy, success, groups, boundary_ids_from_tokenizer(tok), config)
    return clips, clip_facts(clips, responses, mask, tok), responses, mask
