"""A run's shared-memory segments (/dev/shm) are removed when it ends, also when it fails or was killed.

vLLM's engine talks to its workers through `multiprocessing.shared_memory` ring buffers (`psm_*`, 160 MB and
240 MB for a small model) and verl's weight sync fills a `verl_weights_*` bucket when CUDA IPC is not
available. Ray ends those processes without letting them unlink their segments, so every run left ~400 MB
in /dev/shm (a RAM-backed file system), and a hung weight sync another 2 GiB.

The rule, applied by the driver (`echorl_verl.main_ppo`) when the run ends, and at the start of the next
attempt in the same RUN_DIR for an attempt that was killed: a segment is the run's leftover when its name
matches `PATTERNS`, it belongs to this user, it was written after the run started, and no live process has
it open or mapped. A segment in use, another user's, or older than the run is never touched.
"""

from __future__ import annotations

import fnmatch
import json
import os
import time

SHM_DIR = "/dev/shm"
PATTERNS = ("psm_*", "verl_weights_*", "sem.mp-*")
#: written in RUN_DIR when a run starts: its start time and the driver's pid, for the next attempt
STATE_FILE = ".echorl_shm.json"
#: file times come from the kernel's coarse clock, which may lag time.time() by a few milliseconds
MTIME_SLACK_S = 1.0


def _in_use() -> set[str]:
    """Names under /dev/shm that a live process (one we may inspect) has open or mapped."""
    used: set[str] = set()
    prefix = SHM_DIR + "/"
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/maps", encoding="utf-8", errors="replace") as maps:
                for line in maps:
                    at = line.find(prefix)
                    if at >= 0:
                        used.add(line[at + len(prefix):].split()[0])
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith(prefix):
                    used.add(target[len(prefix):].split()[0])
        except OSError:  # the process ended meanwhile, or is not ours to read
            continue
    return used


def _written_since(since: float, shm_dir: str = SHM_DIR) -> list[str]:
    """Names of this user's segments matching PATTERNS, written at or after `since`."""
    try:
        names = os.listdir(shm_dir)
    except OSError:
        return []
    candidates = []
    uid = os.getuid()
    for name in names:
        if not any(fnmatch.fnmatch(name, pattern) for pattern in PATTERNS):
            continue
        try:
            info = os.stat(os.path.join(shm_dir, name))
        except OSError:
            continue
        if info.st_uid == uid and info.st_mtime >= since - MTIME_SLACK_S:
            candidates.append(name)
    return candidates


def leftovers(since: float, shm_dir: str = SHM_DIR) -> list[str]:
    """Paths of this user's segments matching PATTERNS, written at or after `since`, that no process uses."""
    candidates = _written_since(since, shm_dir)
    if not candidates:
        return []
    used = _in_use()
    return [os.path.join(shm_dir, name) for name in sorted(candidates) if name not in used]


def remove_leftovers(since: float, shm_dir: str = SHM_DIR) -> tuple[int, int]:
    """Unlink `leftovers(since)`; returns (segments removed, bytes freed)."""
    removed = freed = 0
    for path in leftovers(since, shm_dir):
        try:
            size = os.stat(path).st_size
            os.unlink(path)
        except OSError:
            continue
        removed += 1
        freed += size
    return removed, freed


def _pid_alive(pid: int) -> bool:
    """True for a running process; a zombie (killed, not yet reaped by its parent) is dead."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def begin_run(run_dir: str | None) -> float:
    """Mark the start of a run; first clean up after an earlier attempt in `run_dir` whose driver is gone.

    Returns the start time to pass to `end_run`.
    """
    started = time.time()
    if run_dir:
        state = os.path.join(run_dir, STATE_FILE)
        try:
            with open(state, encoding="utf-8") as handle:
                previous = json.load(handle)
        except (OSError, ValueError):
            previous = None
        if previous and not _pid_alive(int(previous.get("pid", 0))):
            removed, freed = remove_leftovers(float(previous["started"]))
            if removed:
                print(f"[echorl] removed {removed} shared-memory segments ({freed / 2**20:.0f} MiB) left in "
                      f"{SHM_DIR} by the previous attempt (pid {previous['pid']})", flush=True)
        os.makedirs(run_dir, exist_ok=True)
        with open(state, "w", encoding="utf-8") as handle:
            json.dump({"started": started, "pid": os.getpid()}, handle)
    return started


def end_run(started: float, wait_s: float = 10.0) -> None:
    """Remove what the run left in /dev/shm; waits up to `wait_s` for processes that are still ending."""
    deadline = time.time() + wait_s
    while time.time() < deadline and len(leftovers(started)) < len(_written_since(started)):
        time.sleep(0.5)
    removed, freed = remove_leftovers(started)
    if removed:
        print(f"[echorl] removed {removed} shared-memory segments ({freed / 2**20:.0f} MiB) the run left in "
              f"{SHM_DIR}", flush=True)
