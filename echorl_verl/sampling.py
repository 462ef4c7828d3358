"""DAPO dynamic sampling that keeps EchoRL's input.

verl's ReplayBuffer drops every group whose filter metric has zero spread, all-success groups included,
before the old-policy pass. EchoRL learns from exactly those groups, so with echo on (and
`echo.dapo_keep_all_success`) the buffer drops only the zero-spread groups whose shared value is below
the success threshold (the all-fail ones); the all-success groups reach the trainer, where their RL
advantage is 0 and their EchoClips give the signal.
"""

from __future__ import annotations

from collections import Counter

from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer


class EchoReplayBuffer(ReplayBuffer):
    """verl's sync ReplayBuffer; `_dapo_filtered_keys` spares groups whose shared metric is a success."""

    success_threshold: float = 0.5

    def _dapo_filtered_keys(self, partition_id: str) -> tuple[set[str], Counter]:
        filtered, counts = super()._dapo_filtered_keys(partition_id)
        shared = self._dapo_classification_cache[partition_id]
        kept = {uid for uid in filtered if shared[uid] >= self.success_threshold}
        return filtered - kept, Counter({value: n for value, n in counts.items() if value < self.success_threshold})


def keep_all_success_groups(buffer: ReplayBuffer, success_threshold: float) -> ReplayBuffer:
    """Turn verl's built ReplayBuffer into an EchoReplayBuffer in place (same state, one method changed).

    verl builds the buffer with many trainer-derived arguments (`PPOTrainer._build_replay_buffer`);
    switching the class of the built object keeps all of them without copying that code.
    """
    if type(buffer) is not ReplayBuffer:
        raise TypeError(
            f"echo.dapo_keep_all_success needs verl's built-in sync ReplayBuffer, got {type(buffer).__name__}; "
            "set echo.dapo_keep_all_success=false with a custom sampler"
        )
    buffer.__class__ = EchoReplayBuffer
    buffer.success_threshold = success_threshold
    return buffer
