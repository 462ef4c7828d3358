"""Deterministic short SFT ("warm-up") so that RL starts from a policy that sometimes succeeds.

After warm-up, 8 samples at temperature 1 give a mix of all-correct, mixed and all-wrong groups,
which is what GRPO (and EchoRL) need to have anything to learn from. Determinism: fixed seeds for
the data and the initialisation, a fixed number of steps (not a time budget), 2 threads.
"""

from __future__ import annotations

import math
import random

import torch
from tqdm import tqdm

from echorl_verl.sft_batch import right_padded

from .task import sample_problem, worked_solution
from .tokenizer import encode_prompt


def make_batch(tokenizer, problems) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded SFT batch.

    Returns:
        input_ids [B, T] int64, attention_mask [B, T] int64, labels [B, T] int64 with -100 on the
        prompt and padding (loss on the response and its end-of-turn token only).
    """
    rows = []
    for p in problems:
        prompt = encode_prompt(tokenizer, p.prompt)
        response = tokenizer.encode(worked_solution(p), add_special_tokens=False) + [tokenizer.eos_token_id]
        rows.append((prompt + response, [-100] * len(prompt) + response))
    return right_padded(rows, tokenizer.pad_token_id)


def warmup_sft(
    model,
    tokenizer,
    steps: int,
    batch_size: int = 32,
    lr: float = 3e-3,
    seed: int = 0,
    min_digits: int = 2,
    max_digits: int = 5,
    progress: bool = True,
) -> list[float]:
    """Train `model` in place for `steps` AdamW steps (linear warm-up 5%, cosine decay to 10%).

    Returns the per-step losses (floats), for logging and tests.
    """
    torch.manual_seed(seed)
    rng = random.Random(seed + 1)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0, betas=(0.9, 0.98))
    warm = max(1, steps // 20)

    def lr_at(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        progress_frac = (step - warm) / max(1, steps - warm)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress_frac))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    model.train()
    losses = []
    bar = tqdm(range(steps), desc="warm-up SFT", disable=not progress)
    for _ in bar:
        batch = [sample_problem(rng, min_digits, max_digits) for _ in range(batch_size)]
        ids, mask, labels = make_batch(tokenizer, batch)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
    model.eval()
    return losses
