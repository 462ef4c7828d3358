"""DAPO dynamic sampling with echo: all-success groups survive the zero-variance filter, the rest do not."""

from collections import Counter

import pytest

from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer

from echorl_verl.sampling import EchoReplayBuffer, keep_all_success_groups


def test_only_all_success_groups_are_spared(monkeypatch):
    shared = {"a": 1.0, "b": 0.0, "c": None, "d": 1.0}  # verl's cache: shared metric value, None = mixed group

    def verl_filter(self, partition_id):  # what verl's own method returns for that cache
        dropped = {uid for uid, value in shared.items() if value is not None}
        return dropped, Counter(shared[uid] for uid in dropped)

    monkeypatch.setattr(ReplayBuffer, "_dapo_filtered_keys", verl_filter)
    buffer = ReplayBuffer.__new__(ReplayBuffer)
    buffer._dapo_classification_cache = {"train": shared}
    keep_all_success_groups(buffer, success_threshold=0.5)
    assert type(buffer) is EchoReplayBuffer
    dropped, counts = buffer._dapo_filtered_keys("train")
    assert dropped == {"b"}
    assert counts == Counter({0.0: 1})


def test_custom_samplers_are_refused():
    class Custom(ReplayBuffer):
        pass

    with pytest.raises(TypeError, match="dapo_keep_all_success=false"):
        keep_all_success_groups(Custom.__new__(Custom), 0.5)
