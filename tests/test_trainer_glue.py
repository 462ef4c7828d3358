"""The trainer's success decision when echo.success_key is not the reward sum (DAPO: `acc`), read from verl's
per-row `extra_fields` as the agent loop stores them. End to end: the DAPO + EchoRL run of test_recipes_cpu.py."""

import pytest
import torch
from tensordict import TensorDict

from echorl_verl.trainer import infra_error_rows, success_scores


class Wrapped:
    """verl's NonTensorData-like wrapper around a row's extra_fields dict (`.data`)."""

    def __init__(self, data):
        self.data = data


def rows(*infos):
    return [Wrapped({"reward_extra_info": info}) for info in infos]


def test_score_is_the_reward_sum():
    data = TensorDict({"rm_scores": torch.tensor([[0.0, 1.0], [0.0, -0.2]])}, batch_size=2)
    assert success_scores(data, None, "score").tolist() == pytest.approx([1.0, -0.2])


def test_acc_comes_from_the_reward_extra_info_not_the_shaped_score():
    # DAPO's overlong shaping: score 0.8 on a correct answer, -0.1 on a wrong one; acc says what was verified
    data = TensorDict({"rm_scores": torch.tensor([[0.8], [-0.1]])}, batch_size=2)
    extra = rows({"acc": 1.0, "score": 0.8}, {"acc": 0.0, "score": -0.1})
    assert success_scores(data, extra, "acc").tolist() == [1.0, 0.0]
    assert success_scores(data, [{"reward_extra_info": {"acc": 1.0}}, {"reward_extra_info": {"acc": 0.0}}], "acc").tolist() == [1.0, 0.0]


def test_a_missing_field_names_the_row_and_the_fields_there():
    data = TensorDict({"rm_scores": torch.zeros(2, 1)}, batch_size=2)
    with pytest.raises(KeyError, match=r"row 1 has no such reward field; the reward function returned \['score'\]"):
        success_scores(data, rows({"acc": 1.0}, {"score": 1.0}), "acc")


def test_infrastructure_failures_are_counted():
    assert infra_error_rows(rows({"infra_error": 1.0}, {"infra_error": 0.0}, {}, {"infra_error": 1.0})) == 2.0
