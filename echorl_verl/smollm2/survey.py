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
    finish = collections.Counter(c.finish_reason for out in outputs for c in out.outputs)
    tokens = sum(len(c.token_ids) for out in outputs for c in out.outputs)
    return groups, dict(finish), tokens, started, seconds


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
    args = ap.parse_args(argv)
    for path, fix in ((args.model, "python -m echorl_verl.smollm2.convert"), (args.data, "python -m echorl_verl.smollm2.data")):
        if not os.path.exists(path):
            print(f"error: {path} not found: build it with {fix}", file=sys.stderr)
            return 2
    rows = pd.read_parquet(args.data).head(args.prompts)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    prompt_ids = [tokenizer(tokenizer.apply_chat_template(list(p), add_generation_prompt=True, tokenize=False),
                            add_special_tokens=False)["input_ids"] for p in rows["prompt"]]
    groups, finish, tokens, started, seconds = sample_vllm(args.model, prompt_ids, args.n, args.temperature,
                                                            args.max_tokens, args.seed)
    truths, infos = [r["ground_truth"] for r in rows["reward_model"]], list(rows["extra_info"])
    report = summarize(groups, truths, [e["kind"] for e in infos])
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
