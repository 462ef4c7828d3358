"""Sample the converted model on the task and count what a training run depends on.

    python -m echorl_verl.smollm2.survey [--model DIR/model] [--data DIR/data/val.parquet] [--prompts 32] [--n 8]
                                         [--temperature 0.7] [--max_tokens 128] [--seed 0]

Why: GRPO learns only from groups with mixed outcomes, and EchoRL needs all-success groups and successes with
several steps; whether a model/prompt/task choice gives them is measured, not assumed. Samples `n` responses
per prompt with vLLM's offline engine (bf16, eager, the prompt tokens that verl's agent loop would send:
the chat template with its generation prompt) and prints JSON: format kept (last line `Answer: N`),
accuracy overall and per kind, groups all-success / mixed / all-fail, successes with >= 3 steps
(non-empty lines), how responses ended, generated tokens per second; `--dump` keeps every response.
Sets VLLM_CPU_KVCACHE_SPACE=1 and VLLM_CPU_OMP_THREADS_BIND=nobind unless already set (a shared CPU).

`--clips` also runs EchoRL's own clip selection (echorl_verl.selection, default EchoConfig: peak_prefix, step
entropy = mean, every newline token of the tokenizer a boundary) on the successes of the all-success groups,
with token entropies from a float32 HF forward pass of the same model at the sampling temperature (as verl's
actor computes the old policy's entropies), and reports `clips`: how many clips are shorter than their
response (the peak is not the last step), where the peak falls, and the clip NLL per token and entropy under
the T-scaled and the T=1 policy (`clip_stats`).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import time

from echorl_verl.atomic import write_text
from echorl_verl.smollm2 import DATA_SOURCE, default_dir, paths
from echorl_verl.smollm2.reward import compute_score, parse_answer


def steps_of(response: str) -> int:
    """Steps of a response: its non-empty lines."""
    return sum(1 for line in response.splitlines() if line.strip())


def summarize(groups: list[list[str]], truths: list[str], kinds: list[str]) -> dict:
    """Counts over `groups` (the responses of each prompt), with each prompt's ground truth and kind."""
    outcomes, by_kind = collections.Counter(), collections.defaultdict(list)
    scores, formats, long_successes = [], [], 0
    for responses, truth, kind in zip(groups, truths, kinds, strict=True):
        ok = [compute_score(DATA_SOURCE, r, truth)["score"] == 1.0 for r in responses]
        outcomes["all" if all(ok) else "none" if not any(ok) else "mixed"] += 1
        scores += ok
        by_kind[kind] += ok
        formats += [parse_answer(r) is not None for r in responses]
        long_successes += sum(1 for r, good in zip(responses, ok) if good and steps_of(r) >= 3)
    successes = sum(scores)
    return {
        "prompts": len(groups), "samples": len(scores),
        "format_kept": round(sum(formats) / max(len(formats), 1), 3),
        "accuracy": round(successes / max(len(scores), 1), 3),
        "accuracy_by_kind": {k: round(sum(v) / len(v), 3) for k, v in sorted(by_kind.items())},
        "groups_all_mixed_none": [outcomes["all"], outcomes["mixed"], outcomes["none"]],
        "all_success_share": round(outcomes["all"] / max(len(groups), 1), 3),
        "successes": successes,
        "successes_with_3plus_steps": long_successes,
    }


def sample_vllm(model: str, prompt_ids: list[list[int]], n: int, temperature: float, max_tokens: int, seed: int):
    """[[response text] * n per prompt], finish reasons, generated tokens, engine start and generate seconds."""
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
    from vllm import LLM, SamplingParams

    t0 = time.time()
    llm = LLM(model=model, dtype="bfloat16", enforce_eager=True, seed=seed,
              max_model_len=max(map(len, prompt_ids)) + max_tokens)
    started = time.time() - t0
    # the engine's seed only: a per-request seed fails on vLLM-CPU ("CPU Generator does not use offset")
    params = SamplingParams(n=n, temperature=temperature, max_tokens=max_tokens)
    t1 = time.time()
    outputs = llm.generate([{"prompt_token_ids": ids} for ids in prompt_ids], params)
    seconds = time.time() - t1
    groups = [[c.text for c in out.outputs] for out in outputs]
    ids = [[list(c.token_ids) for c in out.outputs] for out in outputs]
    finish = collections.Counter(c.finish_reason for out in outputs for c in out.outputs)
    tokens = sum(len(c.token_ids) for out in outputs for c in out.outputs)
    return groups, ids, dict(finish), tokens, started, seconds


def response_token_stats(model, prompt: list[int], responses: list[list[int]], temperature: float):
    """Per response token of each response after `prompt`: [entropy, NLL] under logits / temperature, then
    [entropy, NLL] under the T=1 policy; float32 tensors [len(response)] (one padded forward for all responses)."""
    import torch

    width = max(map(len, responses))
    ids = torch.tensor([prompt + r + [0] * (width - len(r)) for r in responses])
    mask = torch.tensor([[1] * (len(prompt) + len(r)) + [0] * (width - len(r)) for r in responses])
    out = []
    with torch.no_grad():
        hidden = model.model(input_ids=ids, attention_mask=mask).last_hidden_state[:, len(prompt) - 1:-1]
        for row, resp in zip(hidden, responses):
            logits, target, stats = model.lm_head(row[:len(resp)]).float(), torch.tensor(resp), []
            for t in (temperature, 1.0):
                logp = torch.log_softmax(logits / t, dim=-1)
                stats += [-(logp.exp() * logp).sum(-1), -logp.gather(1, target[:, None]).squeeze(1)]
            out.append(stats)
    return out


def clip_stats(model_dir: str, prompt_ids: list[list[int]], groups_ids: list[list[list[int]]],
               successes: list[list[bool]], temperature: float) -> dict:
    """EchoRL's clips of the successes of all-success groups (see the module docstring), summarised."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from echorl_verl.config import EchoConfig, boundary_ids_from_tokenizer
    from echorl_verl.selection import select_echo_clips

    rows = [(g, ids) for g, (ok, group) in enumerate(zip(successes, groups_ids)) if all(ok) for ids in group]
    if not rows:
        return {"clips": 0}
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    stats = [s for g in sorted({g for g, _ in rows})
             for s in response_token_stats(model, prompt_ids[g], [ids for h, ids in rows if h == g], temperature)]
    width = max(len(ids) for _, ids in rows)
    responses = torch.tensor([ids + [tokenizer.pad_token_id] * (width - len(ids)) for _, ids in rows])
    mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for _, ids in rows])

    def column(k):  # [rows, width]: field k of `stats`, zero-padded
        return torch.stack([torch.nn.functional.pad(s[k], (0, width - s[k].numel())) for s in stats])

    entropy, nll_t, ent_1, nll_1 = (column(k) for k in range(4))
    clips = select_echo_clips(responses, mask, entropy, torch.ones(len(rows), dtype=torch.bool),
                              torch.tensor([g for g, _ in rows]), boundary_ids_from_tokenizer(tokenizer), EchoConfig())
    sel = clips.selected
    lengths = mask.sum(1)
    cm = clips.mask.bool()
    steps, peak = clips.num_steps[sel], clips.peak_step[sel]
    clip_nll_seq = (nll_t * cm).sum(1)[sel]
    n = int(sel.sum())

    def mean(x):
        return round(float(x.double().mean()), 4) if x.numel() else None

    return {
        "clips": n, "rows": len(rows),
        "shorter_than_response": int((clips.clip_len[sel] < lengths[sel]).sum()),
        "shorter_share": round(float((clips.clip_len[sel] < lengths[sel]).double().mean()), 3) if n else None,
        "clip_len_mean": mean(clips.clip_len[sel]), "response_len_mean": mean(lengths[sel]),
        "steps_hist": dict(sorted(collections.Counter(steps.tolist()).items())),
        "peak_first_middle_last": [int((peak == 0).sum()), int(((peak > 0) & (peak < steps - 1)).sum()),
                                   int(((peak == steps - 1) & (steps > 1)).sum())],
        f"clip_nll_per_token_T{temperature}": mean(nll_t[cm]), "clip_nll_per_token_T1": mean(nll_1[cm]),
        f"token_entropy_mean_T{temperature}": mean(entropy[mask.bool()]),
        "token_entropy_mean_T1": mean(ent_1[mask.bool()]),
        "token_entropy_median_T1": round(float(ent_1[mask.bool()].median()), 4),
        "peak_entropy_mean": mean(clips.peak_entropy[sel]),
        f"clip_prob_mean_T{temperature}": mean(torch.exp(-clip_nll_seq)),
        "clip_prob_ge_0.99_share": round(float((torch.exp(-clip_nll_seq) >= 0.99).double().mean()), 3) if n else None,
    }


def main(argv=None) -> int:
    import pandas as pd
    from transformers import AutoTokenizer

    build = paths(default_dir())
    ap = argparse.ArgumentParser(prog="python -m echorl_verl.smollm2.survey", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=build["model"])
    ap.add_argument("--data", default=build["val"], help="a parquet file of echorl_verl.smollm2.data")
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--temperature", type=float, default=0.7)
    ap.add_argument("--max_tokens", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dump", default=None, help="also write every response here (JSON lines, one per prompt)")
    ap.add_argument("--clips", action="store_true", help="also EchoRL's clips of the all-success groups' successes")
    args = ap.parse_args(argv)
    for path, fix in ((args.model, "python -m echorl_verl.smollm2.convert"), (args.data, "python -m echorl_verl.smollm2.data")):
        if not os.path.exists(path):
            print(f"error: {path} not found: build it with {fix}", file=sys.stderr)
            return 2
    rows = pd.read_parquet(args.data).head(args.prompts)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    prompt_ids = [tokenizer(tokenizer.apply_chat_template(list(p), add_generation_prompt=True, tokenize=False),
                            add_special_tokens=False)["input_ids"] for p in rows["prompt"]]
    groups, ids, finish, tokens, started, seconds = sample_vllm(args.model, prompt_ids, args.n, args.temperature,
                                                                 args.max_tokens, args.seed)
    truths, infos = [r["ground_truth"] for r in rows["reward_model"]], list(rows["extra_info"])
    report = summarize(groups, truths, [e["kind"] for e in infos])
    if args.clips:
        t0 = time.time()
        ok = [[compute_score(DATA_SOURCE, r, t)["score"] == 1.0 for r in g] for g, t in zip(groups, truths)]
        report["clips"] = {**clip_stats(args.model, prompt_ids, ids, ok, args.temperature),
                           "seconds": round(time.time() - t0, 1)}
    if args.dump:
        write_text(args.dump, "".join(json.dumps({"question": e["question"], "kind": e["kind"], "ground_truth": t,
                                                  "responses": g}) + "\n" for e, t, g in zip(infos, truths, groups)))
    report.update({"temperature": args.temperature, "max_tokens": args.max_tokens, "finish_reasons": finish,
                   "prompt_tokens_max": max(map(len, prompt_ids)), "generated_tokens": tokens,
                   "engine_start_s": round(started, 1), "generate_s": round(seconds, 1),
                   "tokens_per_s": round(tokens / max(seconds, 1e-9), 1),
                   "examples": [g[0] for g in groups[:4]]})
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
