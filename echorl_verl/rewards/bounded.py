"""Run a function in persistent worker processes with a hard wall-clock deadline per call.

Why: verl 0.9.1's reward managers call ``compute_score`` through ``loop.run_in_executor``, i.e.
in a worker THREAD. math-verify's timeouts use ``signal.alarm``, which only works in the main
thread (it raises ValueError elsewhere), and a sympy computation stuck inside C code cannot be
interrupted by a signal anyway. So the math check runs in a separate python interpreter
(``python -m echorl_verl.rewards._worker``, a fresh process, not a fork); the caller waits at
most ``timeout_s`` for the answer and otherwise kills that worker (a new one starts on the next
call). This works from any thread, any event loop, inside Ray actors.

Bound per call: ``timeout_s`` of wall time from sending the request to giving up. Not counted:
waiting for a free worker when all ``size`` workers are busy (threads queue), and starting a
worker (about 1 s, once per worker unless one was killed; bounded by ``START_TIMEOUT_S``).
"""

from __future__ import annotations

import atexit
import collections
import json
import os
import select
import subprocess
import sys
import threading
import time
from pathlib import Path

START_TIMEOUT_S = 60.0
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


class CallTimeout(Exception):
    """The worker did not answer within the deadline (it has been killed)."""


class WorkerError(Exception):
    """The worker died, could not start, or the function raised (message says which)."""


class _Worker:
    """One child interpreter speaking the JSON-lines protocol of ``_worker.py``."""

    def __init__(self, target: str, preload: tuple[str, ...]):
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "echorl_verl.rewards._worker", target, *preload],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # a Ctrl-C to the trainer's group does not hit it mid-call
        )
        self._buf = b""
        ready = self._read_line(START_TIMEOUT_S)
        if ready is None or not json.loads(ready).get("ready"):
            self.kill()
            raise WorkerError(f"worker for {target} did not start (exit code {self.proc.poll()})")

    def _read_line(self, timeout_s: float) -> str | None:
        """One line from the child's stdout within ``timeout_s``; None on timeout or EOF."""
        deadline = time.monotonic() + timeout_s
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                return None
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return None
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line.decode()

    def call(self, args: list, timeout_s: float):
        try:
            self.proc.stdin.write((json.dumps({"args": args}) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as e:
            raise WorkerError(f"worker died: {e}") from e
        line = self._read_line(timeout_s)
        if line is None:
            alive = self.proc.poll() is None
            self.kill()
            if alive:
                raise CallTimeout(f"no answer within {timeout_s:g} s")
            raise WorkerError(f"worker died (exit code {self.proc.returncode})")
        reply = json.loads(line)
        if not reply["ok"]:
            raise WorkerError(reply["error"])
        return reply["value"]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            try:
                pipe.close()
            except OSError:
                pass


class _FairSlots:
    """A FIFO-fair counting semaphore (direct hand-off to the longest waiter).

    ``threading.Semaphore`` lets a thread that just released re-acquire before the woken
    waiter runs; with more threads than workers some calls starved for the whole run (25 s
    measured in ``benchmarks/check_reward_agreement.py``). Here a freed slot goes to the
    first waiter in line.
    """

    def __init__(self, n: int):
        self._free = n
        self._lock = threading.Lock()
        self._waiters: collections.deque[threading.Event] = collections.deque()

    def __enter__(self):
        with self._lock:
            if self._free > 0 and not self._waiters:
                self._free -= 1
                return self
            ticket = threading.Event()
            self._waiters.append(ticket)
        ticket.wait()  # the releaser handed its slot to us
        return self

    def __exit__(self, *exc):
        with self._lock:
            if self._waiters:
                self._waiters.popleft().set()
            else:
                self._free += 1


class BoundedPool:
    """Up to ``size`` workers running ``target`` (``"module:function"``; JSON args and result).

    Thread-safe. ``call(*args, timeout_s=...)`` returns the function's value or raises
    :class:`CallTimeout` / :class:`WorkerError`. A process that forks gets its own pool
    (workers are never shared across processes).
    """

    def __init__(self, target: str, size: int, preload: tuple[str, ...] = ()):
        self.target, self.size, self.preload = target, size, preload
        self._slots = _FairSlots(size)
        self._idle: list[_Worker] = []
        self._lock = threading.Lock()
        self._pid = os.getpid()
        atexit.register(self.close)

    def call(self, *args, timeout_s: float):
        with self._slots:
            with self._lock:
                worker = self._idle.pop() if self._idle else None
            if worker is None or worker.proc.poll() is not None:
                worker = _Worker(self.target, self.preload)
            try:
                result = worker.call(list(args), timeout_s)
            except CallTimeout:
                raise  # that worker was killed: not returned to the pool
            except WorkerError:
                if worker.proc.poll() is None:  # the function raised; the worker is fine
                    with self._lock:
                        self._idle.append(worker)
                raise
            with self._lock:
                self._idle.append(worker)
            return result

    def close(self) -> None:
        if os.getpid() != self._pid:
            return
        with self._lock:
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.kill()


_POOLS: dict[str, BoundedPool] = {}
_POOLS_LOCK = threading.Lock()


def get_pool(target: str, preload: tuple[str, ...] = (), size: int | None = None) -> BoundedPool:
    """The process-wide pool for ``target`` (created on first use; a fresh one after a fork).

    Default size: ``$ECHORL_REWARD_WORKERS`` or min(4, number of CPUs).
    """
    with _POOLS_LOCK:
        pool = _POOLS.get(target)
        if pool is None or pool._pid != os.getpid():
            if size is None:
                size = int(os.environ.get("ECHORL_REWARD_WORKERS", min(4, os.cpu_count() or 1)))
            pool = _POOLS[target] = BoundedPool(target, size, preload)
        return pool
