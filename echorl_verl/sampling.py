"""DAPO dynamic sampling that keeps EchoRL's input.

verl's ReplayBuffer drops every group whose filter metric has zero spread, all-success groups included,
before the old-policy pass. EchoRL learns from exactly those groups, so with echo on (and
`echo.dapo_keep_all_success`) the buffer drops only the zero-spread groups whose shared value is below
the success threshold (the all-fail ones); the all-success groups reach the trainer, where their RL
advantage is 0 and their EchoClips give the signal.

This overrides one private method of verl's ReplayBuffer (`_dapo_filtered_keys`, which returns the
filtered uids and a `{shared value: group count}` Counter). If a verl upgrade renamed it, DAPO would again
drop every all-success group and nothing would fail, so `keep_all_success_groups` checks the hook and its
return shape and raises instead. The success decision is the filter's own metric (the start-up check
`echorl_verl.preflight.check_echo` refuses an `echo.success_key` that differs from it).
"""

from __future__ import annotations

import inspect
from collections import Counter

from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer

HOOK = "_dapo_filtered_keys"


class EchoReplayBuffer(ReplayBuffer):
    """verl's sync ReplayBuffer; `_dapo_filtered_keys` spares groups whose shared metric is a success."""

    success_threshold: float = 0.5

    def _dapo_filtered_keys(self, partition_id: str) -> tuple[set[str], Counter]:
        filtered, counts = super()._dapo_filtered_keys(partition_id)
        if not (isinstance(filtered, set) and isinstance(counts, Counter)):
            raise TypeError(
                f"verl's ReplayBuffer.{HOOK} returned ({type(filtered).__name__}, {type(counts).__name__}), not "
                "(set of uids, Counter); echo.dapo_keep_all_success supports verl==0.9.1 (or set it to false)"
            )
        kept = {uid for uid in filtered if self._group_value(partition_id, uid) >= self.success_threshold}
        return filtered - kept, Counter({value: n for value, n in counts.items() if value < self.success_threshold})

    def _group_value(self, partition_id: str, uid: str) -> float:
        """The metric value a filtered group shares (verl caches it per partition while classifying)."""
        return float(self._dapo_classification_cache[partition_id][uid])


def check_hook() -> None:
    """Raise unless verl's ReplayBuffer still has the hook with the signature EchoReplayBuffer overrides."""
    method = getattr(ReplayBuffer, HOOK, None)
    if method is None or list(inspect.signature(method).parameters) != ["self", "partition_id"]:
        raise RuntimeError(
            f"echo.dapo_keep_all_success overrides verl's ReplayBuffer.{HOOK}(self, partition_id), which this verl "
            "does not have: DAPO would drop every all-success group and EchoRL would see none. Pin verl==0.9.1 or "
            "set echo.dapo_keep_all_success=false"
        )


def keep_all_success_groups(buffer: ReplayBuffer, success_threshold: float) -> ReplayBuffer:
    """Turn verl's built ReplayBuffer into an EchoReplayBuffer in place (same state, one method changed).

    verl builds the buffer with many trainer-derived arguments (`PPOTrainer._build_replay_buffer`);
    switching the class of the built object keeps all of them without copying that code.
    """
    check_hook()
    if type(buffer) is not ReplayBuffer:
        raise TypeError(
            f"echo.dapo_keep_all_success needs verl's built-in sync ReplayBuffer, got {type(buffer).__name__}; "
            "set echo.dapo_keep_all_success=false with a custom sampler"
        )
    if not isinstance(getattr(buffer, "_dapo_classification_cache", None), dict):
        raise RuntimeError(
            "echo.dapo_keep_all_success reads verl's ReplayBuffer._dapo_classification_cache, which this verl's "
            "buffer does not have; pin verl==0.9.1 or set echo.dapo_keep_all_success=false"
        )
    buffer.__class__ = EchoReplayBuffer
    buffer.success_threshold = success_threshold
    return buffer
