"""Rollout tokens/s on this CPU: vLLM (what the CPU profile runs now) against the HF-transformers rollout it replaced.

    python -m benchmarks.bench_rollout [--model toy|smollm2|both]     (ECHORL_HF_ROLLOUT_THREADS: the HF side's threads)

Why: until issue 14 every CPU run generated with the project's own HF rollout (echorl_verl/cpu/hf_rollout.py,
removed since; last at commit 4effb9f). This measures, in one invocation, what the switch to verl's vLLM rollout
changes in generation speed, on the same prompts at a training step's batch size:
  * toy      the demo's model (echorl_verl.toy.build, default settings, cached in $ECHORL_CACHE/toy-default):
             32 prompts x 8 rollouts at T=1, up to 96 new tokens (recipes/profile_cpu.sh);
  * smollm2  SmolLM2-135M-Instruct (converted and its task data written on first use, as
             `python -m echorl_verl.smollm2.convert` and `.data` do): 16 prompts x 8 rollouts at T=0.7, up to 128
             new tokens (a study-sized batch). Its HF side takes ~10 minutes here (fp32, one thread, per-step scores).
Prompts are the first rows of each model's train.parquet, through the tokenizer's chat template, each sent 8 times.

Each engine runs in its own child process (memory and threads apart), one after the other:
  * vllm  offline `vllm.LLM` with the engine settings verl's CPU run gives its server (vllm_async_server.py:
          bf16, enforce_eager (echorl_verl/cpu/overrides.py), chunked prefill, prefix caching, 256 seqs, 8192
          batched tokens, processed log-probs of the sampled tokens; VLLM_CPU_KVCACHE_SPACE=2 GiB and
          VLLM_CPU_OMP_THREADS_BIND=nobind, PlatformCPU.rollout_env_vars' defaults; a value set here wins);
  * hf    a minimal copy of HFRolloutServer._generate_batch at 4effb9f: fp32 weights, sdpa, torch threads
          $ECHORL_HF_ROLLOUT_THREADS or 1 (its default), all of a step's requests as one left-padded `generate`
          sorted by prompt, top-k off, scores kept and turned into log-probs, each row cut after its eos.
Both get OMP_WAIT_POLICY=PASSIVE (the CPU profile's) and one small warm-up call that is not timed. tokens/s =
the rollout's response tokens (up to and including eos) / the wall time of the batched call (toy: the median of
3 calls, each a second or two; SmolLM2: one). Engine start = model load (vLLM: constructing `LLM`, its
engine-core process included). Peak RSS: the child's process tree (benchmarks/peak_rss.py). This is a shared
2-core machine: next to each figure it prints how many cores the engine's processes and all other processes kept
busy during the timed call, and the load average; compare the ratio from one run, not figures between runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import psutil

from benchmarks.peak_rss import load_average, measure

#: the study-sized batches: prompts, rollouts per prompt, temperature, max prompt / new tokens, timed repetitions
SETUPS = {
    "toy": dict(prompts=32, n=8, temperature=1.0, prompt_len=32, response_len=96, reps=3),  # recipes/profile_cpu.sh
    "smollm2": dict(prompts=16, n=8, temperature=0.7, prompt_len=256, response_len=128, reps=1),  # smollm2.data's max
}
ENGINES = ("vllm", "hf")


def cache_dir() -> str:
    return os.path.expanduser(os.environ.get("ECHORL_CACHE", "~/.cache/echorl_verl"))


def model_files(model: str) -> tuple[str, str]:
    """(HF model folder, train.parquet) of `model`, built or converted here when the cache lacks them."""
    if model == "toy":
        from echorl_verl.toy import build

        out = os.path.join(cache_dir(), "toy-default")
        build.build(out, progress=False)
        p = build.paths(out)
        return p["model"], p["train"]
    from echorl_verl.smollm2 import convert, data, default_dir, paths

    convert.convert(default_dir())  # returns at once when converted
    p = paths(default_dir())
    if not os.path.exists(p["train"]):  # `python -m echorl_verl.smollm2.data` with its defaults
        data.write_splits(default_dir(), data.make_splits(2048, 64))
    return p["model"], p["train"]


def prompt_ids(model_dir: str, train_file: str, count: int, max_len: int) -> list[list[int]]:
    """The first `count` prompts of the training data as token ids, through the chat template (as verl's agent loop)."""
    import pandas as pd
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    rows = pd.read_parquet(train_file)["prompt"][:count]
    out = []
    for messages in rows:
        ids = tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=True,
                                            return_dict=False)
        if len(ids) > max_len:
            raise SystemExit(f"bench_rollout: a prompt of {len(ids)} tokens exceeds max_prompt_length {max_len}")
        out.append([int(t) for t in ids])
    return out


def busy_cpu_s(proc: psutil.Process) -> tuple[float, float]:
    """(CPU seconds the whole machine has been busy, CPU seconds of `proc` and its descendants) so far."""
    machine = psutil.cpu_times()
    own = 0.0
    for p in [proc] + proc.children(recursive=True):
        try:
            t = p.cpu_times()
            own += t.user + t.system
        except psutil.Error:
            pass
    return sum(machine) - machine.idle - getattr(machine, "iowait", 0.0), own


def timed(generate, reps: int) -> dict:
    """Run `generate()` (returns the response lengths) `reps` times; the median repetition's figures, and how many
    cores other processes kept busy meanwhile (machine busy CPU time minus this process tree's, per second)."""
    me, runs = psutil.Process(), []
    for _ in range(reps):
        machine0, own0 = busy_cpu_s(me)
        t0 = time.time()
        lengths = generate()
        gen_s = time.time() - t0
        machine1, own1 = busy_cpu_s(me)
        runs.append({"gen_s": gen_s, "tokens": sum(lengths), "rows": len(lengths), "max_len": max(lengths),
                     "others_cores": max(0.0, (machine1 - machine0) - (own1 - own0)) / gen_s,
                     "own_cores": (own1 - own0) / gen_s})
    runs.sort(key=lambda r: r["tokens"] / r["gen_s"])
    return {**runs[len(runs) // 2], "tokens_per_s_all": [r["tokens"] / r["gen_s"] for r in runs]}


# ------------------------------------------------------------------------------------------------ vLLM
def run_vllm(model_dir: str, prompts: list[list[int]], s: dict) -> dict:
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
    from vllm import LLM, SamplingParams

    t0 = time.time()
    llm = LLM(model=model_dir, dtype="bfloat16", enforce_eager=True, max_model_len=s["prompt_len"] + s["response_len"],
              max_num_seqs=256, max_num_batched_tokens=8192, enable_chunked_prefill=True, enable_prefix_caching=True,
              logprobs_mode="processed_logprobs", seed=0, disable_log_stats=True)
    start_s = time.time() - t0

    def sampling(max_tokens):
        return SamplingParams(temperature=s["temperature"], top_p=1.0, top_k=-1, repetition_penalty=1.0, logprobs=0,
                              max_tokens=max_tokens)

    llm.generate([{"prompt_token_ids": prompts[0]}], sampling(4), use_tqdm=False)  # warm-up
    requests = [{"prompt_token_ids": p} for p in prompts for _ in range(s["n"])]
    reps = timed(lambda: [len(o.outputs[0].token_ids)
                          for o in llm.generate(requests, sampling(s["response_len"]), use_tqdm=False)], s["reps"])
    return {"start_s": start_s, **reps, "threads": f"{os.cpu_count()} (nobind)"}


# ------------------------------------------------------------------------------------------------ HF (4effb9f)
def run_hf(model_dir: str, prompts: list[list[int]], s: dict) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    threads = int(os.environ.get("ECHORL_HF_ROLLOUT_THREADS", "1"))
    torch.set_num_threads(threads)
    t0 = time.time()
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="sdpa").eval()
    start_s = time.time() - t0
    gen_cfg = model.generation_config
    eos = gen_cfg.eos_token_id if gen_cfg.eos_token_id is not None else model.config.eos_token_id
    eos_ids = set(eos if isinstance(eos, list) else [eos]) - {None}
    pad = gen_cfg.pad_token_id if gen_cfg.pad_token_id is not None else model.config.pad_token_id
    pad_id = pad if pad is not None else min(eos_ids)
    torch.manual_seed(0)

    @torch.no_grad()
    def generate_batch(rows: list[list[int]], max_tokens: int) -> list[list[int]]:
        """HFRolloutServer._generate_batch (4effb9f): one left-padded generate, log-probs of processed scores."""
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, width - len(r):] = torch.tensor(r)
            mask[i, width - len(r):] = 1
        cfg = GenerationConfig(do_sample=True, temperature=s["temperature"], top_p=1.0, top_k=0, repetition_penalty=1.0,
                               max_new_tokens=max_tokens, eos_token_id=sorted(eos_ids), pad_token_id=pad_id,
                               return_dict_in_generate=True, output_scores=True)
        out = model.generate(input_ids=ids, attention_mask=mask, generation_config=cfg)
        new = out.sequences[:, width:]
        lp = model.compute_transition_scores(out.sequences, out.scores, normalize_logits=True)
        results = []
        for i in range(len(rows)):
            toks = new[i, :max_tokens].tolist()
            end = next((j + 1 for j, t in enumerate(toks) if t in eos_ids), len(toks))
            results.append((toks[:end], lp[i, :end].tolist()))  # the log-probs: part of the rollout's cost
        return [tokens for tokens, _ in results]

    generate_batch(prompts[:1], 4)  # warm-up
    rows = sorted(p for p in prompts for _ in range(s["n"]))  # the server sorted a step's requests by prompt
    reps = timed(lambda: [len(o) for o in generate_batch(rows, s["response_len"])], s["reps"])
    return {"start_s": start_s, **reps, "threads": str(threads)}


def worker(engine: str, model: str, out_file: str) -> None:
    """One engine on one model, in this (child) process; the result goes to `out_file` as JSON."""
    s = SETUPS[model]
    model_dir, train_file = model_files(model)
    prompts = prompt_ids(model_dir, train_file, s["prompts"], s["prompt_len"])
    load_start = load_average()
    result = (run_vllm if engine == "vllm" else run_hf)(model_dir, prompts, s)
    result.update(load_start=load_start, load_end=load_average(),
                  prompt_tokens_mean=sum(map(len, prompts)) / len(prompts))
    with open(out_file, "w", encoding="utf-8") as f:
        json.dump(result, f)


def measure_engine(engine: str, model: str, workdir: str) -> dict:
    out_file = os.path.join(workdir, f"{model}_{engine}.json")
    env = dict(os.environ, OMP_WAIT_POLICY=os.environ.get("OMP_WAIT_POLICY", "PASSIVE"), TOKENIZERS_PARALLELISM="false")
    cmd = [sys.executable, "-m", "benchmarks.bench_rollout", "--worker", engine, "--model", model, "--out", out_file]
    tree = measure(cmd, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))), env=env)
    if tree["rc"] != 0 or not os.path.exists(out_file):
        raise SystemExit(f"bench_rollout: {engine} on {model} failed (exit {tree['rc']}); its output is above")
    with open(out_file, encoding="utf-8") as f:
        return {**json.load(f), "peak_rss_gib": tree["peak_rss_gib"], "wall_s": tree["wall_s"]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=("toy", "smollm2", "both"), default="both")
    parser.add_argument("--worker", choices=ENGINES, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.model, args.out)
        return
    models = ("toy", "smollm2") if args.model == "both" else (args.model,)
    results = {}
    with tempfile.TemporaryDirectory() as workdir:
        for model in models:
            for engine in ENGINES:
                print(f"[bench] {engine} on {model} ({load_average()}) ...", flush=True)
                results[model, engine] = measure_engine(engine, model, workdir)
    print("\nrollout on this CPU, one engine at a time; tokens = response tokens incl. eos; own / others: cores busy "
          "with the engine's process tree / with other processes during the timed call")
    header = (f"{'model':<9}{'engine':<7}{'batch':>10}{'T':>5}{'tokens':>8}{'longest':>8}{'gen s':>8}{'tokens/s':>10}"
              f"{'start s':>9}{'peak GiB':>9}{'threads':>11}{'own':>6}{'others':>8}"
              "  load avg at start -> end of the worker")
    print(header)
    for model in models:
        s = SETUPS[model]
        for engine in ENGINES:
            r = results[model, engine]
            print(f"{model:<9}{engine:<7}{s['prompts']:>6} x {s['n']:<2}{s['temperature']:>5}{r['tokens']:>8}"
                  f"{r['max_len']:>8}{r['gen_s']:>8.2f}{r['tokens'] / r['gen_s']:>10.0f}{r['start_s']:>9.1f}"
                  f"{r['peak_rss_gib']:>9.2f}{r['threads']:>11}{r['own_cores']:>6.2f}{r['others_cores']:>8.2f}"
                  f"  {r['load_start']} -> {r['load_end']}")
            if len(r["tokens_per_s_all"]) > 1:
                print(f"{'':<16}tokens/s of the {len(r['tokens_per_s_all'])} repetitions (median shown): "
                      + ", ".join(f"{x:.0f}" for x in r["tokens_per_s_all"]))
    for model in models:
        v, h = results[model, "vllm"], results[model, "hf"]
        print(f"{model}: vLLM/HF tokens/s = {(v['tokens'] / v['gen_s']) / (h['tokens'] / h['gen_s']):.2f}, "
              f"generation wall time HF/vLLM = {h['gen_s'] / v['gen_s']:.2f}, engine start vLLM - HF = "
              f"{v['start_s'] - h['start_s']:+.1f} s")


if __name__ == "__main__":
    main()
