"""Peak memory and wall time of a whole process tree: a command, or a process already running.

    python -m benchmarks.peak_rss [--interval 0.5] [--json FILE] -- COMMAND [ARGS...]

Why: a verl run is many processes (the driver, Ray's GCS and raylet, the trainer worker, the vLLM server
and its engine core, the agent-loop and reward workers); `/usr/bin/time` and `ru_maxrss` see one of them.
This runs COMMAND and, every --interval seconds, sums the resident set size (RSS) of it and all its
descendants; it reports the peak of that sum, the process count at the peak, the wall time and the
command's exit status (its own exit status is the command's). RSS counts a page shared by several
processes (libraries, the Ray object store, shared-memory weight buckets) once per process, so the sum is
an upper bound on what the tree holds; the machine's load average at start and end is printed along.
`TreeSampler` does the same from Python for a process that the caller started (benchmarks/bench_rollout.py).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time

import psutil


def tree_rss(root: psutil.Process) -> tuple[int, int]:
    """(RSS sum in bytes, number of processes) of `root` and its live descendants; 0 when it is gone."""
    try:
        procs = [root] + root.children(recursive=True)
    except psutil.Error:
        return 0, 0
    total, count = 0, 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
            count += 1
        except psutil.Error:  # ended between the listing and the read
            pass
    return total, count


class TreeSampler:
    """Samples `tree_rss(pid)` on a thread every `interval` s until `stop()`; keeps the peak."""

    def __init__(self, pid: int, interval: float = 0.5):
        self.root = psutil.Process(pid)
        self.interval = interval
        self.peak_bytes, self.peak_procs, self.samples = 0, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            total, count = tree_rss(self.root)
            self.samples += 1
            if total > self.peak_bytes:
                self.peak_bytes, self.peak_procs = total, count
            self._stop.wait(self.interval)

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join()
        return {"peak_rss_gib": self.peak_bytes / 2**30, "procs_at_peak": self.peak_procs, "samples": self.samples}


def load_average() -> str:
    """The 1/5/15-minute load averages and the core count, as one string."""
    return "load %.2f %.2f %.2f on %d cores" % (*os.getloadavg(), os.cpu_count() or 0)


def measure(cmd: list[str], interval: float = 0.5, **popen_kwargs) -> dict:
    """Run `cmd` to its end; its exit status, wall time, peak tree RSS and the load before and after."""
    load_start = load_average()
    t0 = time.time()
    proc = subprocess.Popen(cmd, **popen_kwargs)
    sampler = TreeSampler(proc.pid, interval)
    rc = proc.wait()
    return {"cmd": cmd, "rc": rc, "wall_s": time.time() - t0, **sampler.stop(),
            "load_start": load_start, "load_end": load_average()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between samples (default 0.5)")
    parser.add_argument("--json", default=None, help="also write the result as JSON to this file")
    parser.add_argument("cmd", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    args = parser.parse_args(argv)
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd or args.interval <= 0:
        parser.error("give a command after `--` and an --interval > 0")
    result = measure(cmd, args.interval)
    print(f"[peak_rss] rc={result['rc']} wall {result['wall_s']:.1f} s, peak RSS of the process tree "
          f"{result['peak_rss_gib']:.2f} GiB ({result['procs_at_peak']} processes at the peak, "
          f"{result['samples']} samples); {result['load_start']} at start, {result['load_end']} at end",
          file=sys.stderr)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
    return result["rc"]


if __name__ == "__main__":
    sys.exit(main())
