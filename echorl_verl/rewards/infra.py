"""Infrastructure failures of the reward: counted, reported per row, and bounded.

A reward that could not be computed (the code sandbox did not start, sandbox-fusion is unreachable)
is not a wrong answer. verl needs a number for every row, so such a row scores 0 but carries
``infra_error=1.0`` in the reward's extra info, and every one is counted here. When more than
``max_infra_errors`` (default :data:`MAX_INFRA_ERRORS`) of the last :data:`WINDOW` calls of one
reward worker process failed this way, :func:`count_call` raises :class:`InfrastructureError` and the
run stops (verl's reward loop does not catch it): a run must not go on learning from rewards it never
computed. The window makes a rare blip of a remote service harmless over a long run, while a sandbox
that is broken outright stops the run after ``max_infra_errors + 1`` calls.

Set the bound with ``+reward.custom_reward_function.reward_kwargs.max_infra_errors=N`` (0: stop at the
first failure).
"""

from __future__ import annotations

import collections
import os
import threading

MAX_INFRA_ERRORS = 10
WINDOW = 1000


class InfrastructureError(RuntimeError):
    """Too many rewards of this process could not be computed; the message says why and what to do."""


class _Counter:
    """Thread-safe (verl's reward managers call the reward function from executor threads)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.recent: collections.deque[bool] = collections.deque(maxlen=WINDOW)
        self.total = 0

    def add(self, failed: bool) -> int:
        """Record one call; return the failures among the last WINDOW calls."""
        with self.lock:
            self.recent.append(failed)
            self.total += failed
            return sum(self.recent)


_COUNTER = _Counter()


def count_call(error: str, max_infra_errors: int = MAX_INFRA_ERRORS) -> None:
    """Record one reward call (``error`` "" or why it could not be computed); raise past the bound."""
    failures = _COUNTER.add(bool(error))
    if error and failures > max_infra_errors:
        raise InfrastructureError(
            f"{failures} of the last {len(_COUNTER.recent)} code rewards in reward worker pid {os.getpid()} could not "
            f"be computed (more than max_infra_errors={max_infra_errors}); the run is stopped so that it does not learn "
            f"from rewards it never computed. Last failure: {error}. Fix the sandbox (run "
            "`python -c 'from echorl_verl.rewards.code_sandbox import self_test; print(self_test())'` on this node), "
            "or raise the bound: +reward.custom_reward_function.reward_kwargs.max_infra_errors=N"
        )


def failures_so_far() -> int:
    """Infrastructure failures in this process since it started (for logs and tests)."""
    with _COUNTER.lock:
        return _COUNTER.total
