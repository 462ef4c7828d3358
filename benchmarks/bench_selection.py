"""Cost of EchoClip selection relative to verl's own GRPO advantage computation, on the same batch.

    python -m benchmarks.bench_selection [--sizes 512x4096 1024x8192] [--reps 15] [--threads 2]

For each size it builds one realistic batch (8 rollouts per prompt, response lengths uniform in
[T/4, T], about 1 boundary token in 20, about 30% of the groups all-success, the rest mixed or
all-fail), then times, interleaved repetition by repetition so that machine noise hits both alike:
  * baseline: `verl.trainer.ppo.ray_trainer.compute_advantage(data, adv_estimator="grpo")` on a
    DataProto holding token_level_rewards, response_mask and uid;
  * selection: `group_ids_from_uids(uid)` + `select_echo_clips(...)` (default EchoConfig, and the other
    settings in --configs).
It prints the median times, the ratio of the medians (selection / baseline), the median of the
per-repetition ratios (robust to load that drifts during the run), the ratio of median process CPU
times (all threads), the machine's load average, and the peak extra resident memory
of one call, measured in a child process whose allocator returns every block of 64 KiB or more to the
system when freed (MALLOC_MMAP_THRESHOLD_), so that resident memory follows the live tensors (Linux).
Goal: ratio <= 4 for the default config.

    python -m benchmarks.bench_selection --compare-threads [--sizes 1024x2048] [--reps 15] [--threads 2]

instead times what `select_echo_clips` gains by running its CPU path on one torch thread
(`selection._single_thread_on_cpu`): the default config as shipped against the same call with that guard
bypassed, so that it runs on the process's --threads threads; interleaved, and it prints the medians, their
ratio and the median per-repetition ratio (> 1: one thread is faster), with the machine's load average.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import subprocess
import sys
import time

import numpy as np
import torch
from tqdm import tqdm

from echorl_verl.config import EchoConfig
from echorl_verl.selection import group_ids_from_uids, select_echo_clips

BOUNDARY_IDS = [198, 271]  # Qwen2.5's "\n" and "\n\n", as in the authors' scripts
VOCAB = 151_000
GROUP = 8

CONFIGS = {
    "default": {},
    "all_successes": {"scope": "all_successes"},
    "agg=max": {"step_agg": "max"},
    "random_prefix,one": {"clip_mode": "random_prefix", "per_group": "one"},
}


def make_batch(B: int, T: int, seed: int = 0) -> dict:
    """A realistic batch: see the module docstring. Response_mask is int64 like verl's attention mask."""
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(T // 4, T + 1, (B,), generator=gen)
    mask = (torch.arange(T)[None, :] < lengths[:, None]).long()
    responses = torch.randint(0, VOCAB, (B, T), generator=gen)
    is_boundary = torch.rand(B, T, generator=gen) < 0.05
    responses[is_boundary] = torch.tensor(BOUNDARY_IDS)[torch.randint(0, 2, (int(is_boundary.sum()),), generator=gen)]
    entropy = torch.rand(B, T, generator=gen).pow(3) * 4  # skewed towards low entropy, like real policies
    groups = B // GROUP
    kind = torch.rand(groups, generator=gen)  # 30% all-success, 20% all-fail, 50% mixed
    p = torch.where(kind < 0.3, 1.0, torch.where(kind < 0.5, 0.0, 0.5)).repeat_interleave(GROUP)
    success = torch.rand(B, generator=gen) < p
    success |= p == 1.0
    rewards = torch.zeros(B, T)
    rewards[torch.arange(B), lengths - 1] = success.float()
    uid = np.array([f"prompt-{i // GROUP}-{seed}" for i in range(B)], dtype=object)
    return dict(responses=responses, mask=mask, entropy=entropy, success=success, rewards=rewards, uid=uid)


def run_baseline(batch: dict) -> None:
    from verl import DataProto
    from verl.trainer.ppo.ray_trainer import compute_advantage

    data = DataProto.from_dict(
        tensors={"token_level_rewards": batch["rewards"], "response_mask": batch["mask"]},
        non_tensors={"uid": batch["uid"]},
    )
    compute_advantage(data, adv_estimator="grpo")


def run_selection(batch: dict, config: EchoConfig):
    group_ids = group_ids_from_uids(batch["uid"])
    return select_echo_clips(
        batch["responses"], batch["mask"], batch["entropy"], batch["success"], group_ids, BOUNDARY_IDS, config, step=3
    )


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def peak_extra_mib(fn) -> float:
    """Peak resident memory above the current level while fn() runs (Linux; nan elsewhere)."""
    try:
        gc.collect()
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current VmRSS
        before = _rss_kib("VmRSS")
        fn()
        return (_rss_kib("VmHWM") - before) / 1024
    except OSError:
        return float("nan")


def memory_in_child(B: int, T: int, configs: list[str]) -> dict[str, float]:
    """Peak extra MiB of one call per variant, measured in a fresh child process (see the docstring)."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", PYTHONWARNINGS="ignore")
    cmd = [sys.executable, "-m", "benchmarks.bench_selection", "--memory-child", f"{B}x{T}", "--configs", *configs]
    try:
        lines = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True, timeout=600).stdout
    except (subprocess.SubprocessError, OSError) as err:
        print(f"memory measurement failed: {err}", file=sys.stderr)
        return {}
    return {name: float(v) for name, v in (line.rsplit(" ", 1) for line in lines.splitlines() if line.startswith("MEM "))
            for name in [name[4:]]}


def memory_child(B: int, T: int, configs: list[str]) -> None:
    batch = make_batch(B, T)
    cfgs = {name: EchoConfig(**CONFIGS[name]) for name in configs}
    run_baseline(batch)
    print(f"MEM baseline {peak_extra_mib(lambda: run_baseline(batch)):.1f}")
    for name, cfg in cfgs.items():
        run_selection(batch, cfg)
        print(f"MEM {name} {peak_extra_mib(lambda: run_selection(batch, cfg)):.1f}")


def bench(B: int, T: int, reps: int, configs: list[str]) -> list[tuple]:
    batch = make_batch(B, T)
    cfgs = {name: EchoConfig(**CONFIGS[name]) for name in configs}
    run_baseline(batch)  # warm-up (imports, allocator)
    for cfg in cfgs.values():
        run_selection(batch, cfg)
    times = {"baseline": []} | {name: [] for name in cfgs}
    cpu = {name: [] for name in times}
    for _ in tqdm(range(reps), desc=f"B={B} T={T}", leave=False):
        for name in times:  # interleaved: every repetition times every variant once
            start, start_cpu = time.perf_counter(), time.process_time()
            run_baseline(batch) if name == "baseline" else run_selection(batch, cfgs[name])
            times[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    base = statistics.median(times["baseline"])
    base_cpu = statistics.median(cpu["baseline"])
    memory = memory_in_child(B, T, configs)
    rows = [(B, T, "baseline (verl grpo)", B, base * 1e3, 1.0, 1.0, 1.0, memory.get("baseline", float("nan")))]
    for name, cfg in cfgs.items():
        med = statistics.median(times[name])
        paired = statistics.median(t / b for t, b in zip(times[name], times["baseline"]))
        eligible = int(run_selection(batch, cfg).eligible.sum())
        cpu_ratio = statistics.median(cpu[name]) / base_cpu
        rows.append((B, T, name, eligible, med * 1e3, med / base, paired, cpu_ratio, memory.get(name, float("nan"))))
    return rows


def compare_threads(B: int, T: int, reps: int, threads: int) -> tuple[float, float, float]:
    """(median ms with one thread as shipped, median ms on `threads` threads, median per-repetition ratio many/one)."""
    import contextlib
    from unittest import mock

    from echorl_verl import selection

    batch, cfg = make_batch(B, T), EchoConfig()
    bypass = mock.patch.object(selection, "_single_thread_on_cpu", lambda device: contextlib.nullcontext())
    variants = {"one": contextlib.nullcontext(), "many": bypass}
    times = {name: [] for name in variants}
    for _ in tqdm(range(reps + 1), desc=f"B={B} T={T} threads", leave=False):
        for name, guard in variants.items():  # interleaved; the first repetition is a warm-up
            with guard:
                start = time.perf_counter()
                run_selection(batch, cfg)
                times[name].append(time.perf_counter() - start)
    one, many = times["one"][1:], times["many"][1:]
    return statistics.median(one) * 1e3, statistics.median(many) * 1e3, statistics.median(m / o for m, o in zip(many, one))


def main_compare_threads(sizes: list[str], reps: int, threads: int) -> None:
    load_before = os.getloadavg()[0]
    rows = [(size, *compare_threads(*(int(x) for x in size.lower().split("x")), reps, threads)) for size in sizes]
    print(f"\nselect_echo_clips (default config): its CPU path on one torch thread (as shipped) vs {threads} threads")
    print(f"{reps} interleaved repetitions; machine load average (1 min) before / after: {load_before:.1f} / "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"{'BxT':>10} {'1 thread ms':>12} {f'{threads} threads ms':>14} {'ratio':>6} {'paired':>7}")
    for size, one, many, paired in rows:
        print(f"{size:>10} {one:>12.1f} {many:>14.1f} {many / one:>6.2f} {paired:>7.2f}")
    print("ratio = median with threads / median with one thread: > 1 means the one-thread guard pays")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["512x4096", "1024x8192"], help="BxT batch sizes")
    parser.add_argument("--reps", type=int, default=15, help="interleaved repetitions (median is reported)")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads of the process (the baseline uses them; select_echo_clips runs its CPU path on one)")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--compare-threads", action="store_true",
                        help="time selection on one thread (as shipped) against --threads threads instead")
    parser.add_argument("--memory-child", metavar="BxT", help=argparse.SUPPRESS)  # internal: see memory_in_child
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.compare_threads:
        main_compare_threads(args.sizes, args.reps, args.threads)
        return
    configs = ["default"] + [c for c in args.configs if c != "default"]
    if args.memory_child:
        memory_child(*(int(x) for x in args.memory_child.lower().split("x")), configs)
        return
    load_before = os.getloadavg()[0]
    rows = []
    for size in args.sizes:
        B, T = (int(x) for x in size.lower().split("x"))
        rows += bench(B, T, args.reps, configs)
    print("\nEchoClip selection (group_ids_from_uids + select_echo_clips) vs verl compute_advantage(grpo)")
    print(f"{args.threads} torch threads, {args.reps} interleaved repetitions; 'rows' = rows processed "
          f"(baseline: all; selection: the eligible ones)")
    print(f"machine load average (1 min) before / after: {load_before:.1f} / {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} cores (busy cores slow multi-threaded ops; select_echo_clips runs its CPU path on one thread)")
    print(f"{'B':>5} {'T':>5}  {'variant':<22} {'rows':>5} {'median ms':>10} {'ratio':>6} {'paired':>7} "
          f"{'cpu-time':>8} {'peak extra MiB':>15}")
    for B, T, name, n, ms, ratio, paired, cpu_ratio, mem in rows:
        print(f"{B:>5} {T:>5}  {name:<22} {n:>5} {ms:>10.1f} {ratio:>6.2f} {paired:>7.2f} {cpu_ratio:>8.2f} {mem:>15.1f}")
    worst = max(r[5] for r in rows if r[2] == "default")
    print(f"\nworst default ratio (median selection / median baseline): {worst:.2f} (goal <= 4)")


if __name__ == "__main__":
    main()
