"""Group statistics of a policy: how many prompts are all-correct, mixed or all-wrong.

These shares decide what GRPO can learn from: all-correct and all-wrong groups have zero advantage.
"""

from __future__ import annotations

import torch

from . import DATA_SOURCE
from .reward import compute_score
from .tokenizer import encode_prompt


@torch.no_grad()
def sample_responses(model, tokenizer, prompts: list[str], temperature: float = 1.0, max_new_tokens: int = 96,
                     chunk: int = 256) -> list[str]:
    """One sampled (temperature > 0) or greedy (temperature == 0) response per prompt, decoded."""
    texts = []
    for start in range(0, len(prompts), chunk):
        rows = [encode_prompt(tokenizer, p) for p in prompts[start:start + chunk]]
        width = max(map(len, rows))
        ids = torch.tensor([[tokenizer.pad_token_id] * (width - len(r)) + r for r in rows])
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
        sample = temperature > 0
        out = model.generate(
            input_ids=ids, attention_mask=mask, do_sample=sample, temperature=temperature if sample else None,
            top_k=0 if sample else None, top_p=1.0 if sample else None, max_new_tokens=max_new_tokens,
            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        )
        texts += tokenizer.batch_decode(out[:, width:], skip_special_tokens=True)
    return texts


def group_shares(model, tokenizer, problems, n: int = 8, temperature: float = 1.0, max_new_tokens: int = 96,
                 seed: int = 0) -> dict:
    """Sample `n` responses per problem; return shares {"all", "mixed", "none"} and "acc" (mean score)."""
    torch.manual_seed(seed)
    texts = sample_responses(model, tokenizer, [p.prompt for p in problems for _ in range(n)], temperature,
                             max_new_tokens)
    counts = {"all": 0, "mixed": 0, "none": 0}
    total = 0.0
    for i, p in enumerate(problems):
        scores = [compute_score(DATA_SOURCE, t, p.answer)["score"] for t in texts[i * n:(i + 1) * n]]
        total += sum(scores)
        counts["all" if min(scores) == 1 else "none" if max(scores) == 0 else "mixed"] += 1
    m = max(1, len(problems))
    return {**{k: v / m for k, v in counts.items()}, "acc": total / (m * n)}


def greedy_accuracy(model, tokenizer, problems, max_new_tokens: int = 96) -> float:
    """Fraction of problems solved by greedy decoding."""
    texts = sample_responses(model, tokenizer, [p.prompt for p in problems], 0.0, max_new_tokens)
    return sum(compute_score(DATA_SOURCE, t, p.answer)["score"] for t, p in zip(texts, problems)) / max(1, len(problems))
