"""Trainer step time with EchoRL / without it, on this CPU, measured in one invocation.

    python -m benchmarks.bench_cpu_step [--steps 5 --rounds 2 --train_batch 32]

Runs `recipes/cpu_demo.sh` (verl's real trainer, toy model) with `echo.enable=true` and with
`echo.enable=false`, alternating (off, on, off, on, ...) so that machine noise hits both alike, with the
same seed and data order. Step 1 of each run is left out (warm-up). Reported from verl's own timing
metrics: the whole step, the parts EchoRL touches (`adv`: clip selection + advantages; `update_actor`:
the loss), and the actor update per token (rollouts are sampled, so their lengths differ a little
between runs; the per-token figure removes that).
Goal (issue 3): step time ratio echo/off <= 1.05.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEYS = ("timing_s/step", "timing_s/gen", "timing_s/adv", "timing_s/update_actor", "timing_per_token_ms/update_actor")


def run_once(echo: bool, steps: int, train_batch: int, workdir: str, tag: str) -> list[dict]:
    run_dir = os.path.join(workdir, tag)
    env = dict(os.environ, STEPS=str(steps), TRAIN_BATCH=str(train_batch), RUN_DIR=run_dir, NAME=tag)
    env.pop("VERL_FILE_LOGGER_PATH", None)
    cmd = ["bash", os.path.join(REPO, "recipes", "cpu_demo.sh"), f"echo.enable={str(echo).lower()}",
           "trainer.val_before_train=False", "trainer.test_freq=-1"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{tag} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    records = [json.loads(line) for line in open(os.path.join(run_dir, "metrics.jsonl"))]
    return [r["data"] for r in sorted(records, key=lambda r: r["step"]) if "timing_s/step" in r["data"]][1:]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=5, help="steps per run (the first is dropped)")
    parser.add_argument("--rounds", type=int, default=1, help="(off, on) pairs of runs")
    parser.add_argument("--train_batch", type=int, default=32)
    args = parser.parse_args()
    samples = {False: [], True: []}
    with tempfile.TemporaryDirectory() as workdir:
        for r in range(args.rounds):
            for echo in (False, True):
                tag = f"{'echo' if echo else 'off'}_{r}"
                print(f"[bench] run {tag} ({args.steps} steps) ...", flush=True)
                samples[echo] += run_once(echo, args.steps, args.train_batch, workdir, tag)
    print(f"\nverl trainer on this CPU, toy model, {args.train_batch} prompts x 8 rollouts, "
          f"{args.rounds} x (off, on) runs of {args.steps} steps, first step dropped; medians:")
    print(f"{'metric':<36}{'echo off':>12}{'echo on':>12}{'on/off':>9}")
    for key in KEYS:
        off = statistics.median(s[key] for s in samples[False])
        on = statistics.median(s[key] for s in samples[True])
        print(f"{key:<36}{off:>12.4f}{on:>12.4f}{on / off:>9.3f}")
    select = statistics.median(s["timing_s/echo_select"] for s in samples[True])
    step_on = statistics.median(s["timing_s/step"] for s in samples[True])
    print(f"{'timing_s/echo_select':<36}{'-':>12}{select:>12.4f}   ({100 * select / step_on:.2f}% of the step)")
    no_gen = {e: statistics.median(s["timing_s/step"] - s["timing_s/gen"] for s in samples[e]) for e in (False, True)}
    print(f"{'step minus generation (s)':<36}{no_gen[False]:>12.4f}{no_gen[True]:>12.4f}{no_gen[True] / no_gen[False]:>9.3f}")
    ratio = step_on / statistics.median(s["timing_s/step"] for s in samples[False])
    print(f"step time ratio echo/off: {ratio:.3f}   (goal <= 1.05)")
    print("note: HF generation on CPU varies run to run (sampled lengths, batching); the rows without it and"
          " echo_select isolate what EchoRL adds.")


if __name__ == "__main__":
    main()
