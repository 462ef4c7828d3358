"""Advantage mode's fold on top of verl's own advantage step (single- and multi-turn), the `echo` estimator
name through verl's compute_advantage (always a stop, never the baseline), and its registration through the
plugin. verl's own main_ppo asked for echo: tests/test_echo_needs_echorl_main.py."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from verl import DataProto
from verl.trainer.ppo import core_algos
from verl.trainer.ppo.ray_trainer import compute_advantage

from echorl_verl.advantage import USE_ECHORL_MAIN, fold_into_advantages
from echorl_verl.config import EchoConfig, EchoConfigError


def batch(scores, lengths, uids, seed=0):
    """A DataProto like the trainer builds: the score sits on the last response token."""
    T = max(lengths)
    mask = torch.zeros(len(scores), T)
    rewards = torch.zeros(len(scores), T)
    for i, (s, n) in enumerate(zip(scores, lengths)):
        mask[i, :n] = 1
        rewards[i, n - 1] = s
    data = DataProto.from_dict(tensors={"token_level_rewards": rewards, "response_mask": mask})
    data.non_tensor_batch["uid"] = np.array(uids, dtype=object)
    return data


SCORES = [1.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0]  # group a all-success, b mixed, c all-fail (size 2 each + ...)
UIDS = ["a", "a", "a", "b", "b", "c", "c", "c"]
LENGTHS = [3, 5, 4, 2, 6, 3, 3, 1]


def test_all_success_group_has_zero_grpo_advantage():
    """The degeneration EchoRL exists for: verl's grpo gives the all-success group exactly 0."""
    config = OmegaConf.create({"adv_estimator": "grpo", "norm_adv_by_std_in_grpo": True})
    out = compute_advantage(batch(SCORES, LENGTHS, UIDS), adv_estimator="grpo", config=config)
    assert torch.all(out.batch["advantages"][:3] == 0)
    assert torch.any(out.batch["advantages"][3:5] != 0)


def _verl_v1_advantages(keys, scores, lengths, uids):
    """verl's v1 advantage step (trainer/ppo/v1/utils.py), which the trainer runs with the base estimator's name."""
    from verl.trainer.ppo.v1.utils import compute_advantage_for_multi_trajectories

    out = compute_advantage_for_multi_trajectories(batch(scores, lengths, uids), batch_keys=keys, adv_estimator="grpo",
                                                   num_repeat=1, norm_adv_by_std_in_grpo=True,
                                                   config=OmegaConf.create({}))
    return out.batch["advantages"], out.batch["response_mask"]


@pytest.mark.parametrize("turns", ["single", "multi"])
def test_advantage_mode_is_verls_advantages_plus_the_fold(turns):
    """advantages = base (verl's own step, multi-trajectory GRPO path included) + a * clip mask, exactly."""
    if turns == "single":  # keys {uid}_{session}_{index}: one output per session
        keys = [f"{u}_{i}_0" for i, u in enumerate(UIDS)]
    else:  # rows 0/1 and 5/6 are two outputs (turns) of one session each
        keys = ["a_0_0", "a_0_1", "a_1_0", "b_0_0", "b_1_0", "c_0_0", "c_0_1", "c_1_0"]
    base, response_mask = _verl_v1_advantages(keys, SCORES, LENGTHS, UIDS)
    clip = torch.zeros(8, 6)
    clip[0, :2] = 1
    clip[2, :4] = 1
    clip[2, 5] = 1  # beyond row 2's response (4 tokens): never folded
    echo = EchoConfig(coef=0.01)
    folded, value = fold_into_advantages(base, response_mask, clip, echo)
    # default value: coef * response tokens / clip tokens, so the token-mean gradient matches loss mode
    assert value == pytest.approx(0.01 * sum(LENGTHS) / 6)
    torch.testing.assert_close(folded, base + value * clip * response_mask, rtol=0, atol=0)
    assert torch.equal(folded[3:], base[3:])
    if turns == "multi":  # verl's session path: both turns of session a_0 carry the final turn's advantage
        assert torch.equal(base[0, :3], base[1, :3] * 0 + base[1, 0])


def test_advantage_mode_with_explicit_value():
    clip = torch.zeros(8, 6)
    clip[1, :5] = 1
    base, mask = _verl_v1_advantages([f"{u}_{i}_0" for i, u in enumerate(UIDS)], SCORES, LENGTHS, UIDS)
    folded, value = fold_into_advantages(base, mask, clip, EchoConfig(mode="advantage", advantage_value=0.3))
    assert value == 0.3 and torch.allclose(folded[1, :5] - base[1, :5], torch.full((5,), 0.3))
    with pytest.raises(ValueError, match="shape"):
        fold_into_advantages(base, mask, clip[:, :3], EchoConfig())


@pytest.mark.parametrize("mode", ["loss", "advantage"])
def test_the_echo_estimator_reached_by_verl_stops_instead_of_training_the_baseline(mode):
    """Before: in loss mode verl's compute_advantage with adv_estimator=echo returned grpo's advantages."""
    config = OmegaConf.create({"adv_estimator": "echo", "echo": {"base_estimator": "grpo", "mode": mode}})
    with pytest.raises(EchoConfigError) as err:
        compute_advantage(batch(SCORES, LENGTHS, UIDS), adv_estimator="echo", config=config)
    assert str(err.value) == USE_ECHORL_MAIN and "python -m echorl_verl.main_ppo" in USE_ECHORL_MAIN
    assert "\n" not in USE_ECHORL_MAIN


def test_plain_import_verl_registers_echo_in_a_fresh_process():
    code = (
        "import verl\n"
        "from verl.trainer.ppo.core_algos import ADV_ESTIMATOR_REGISTRY, get_adv_estimator_fn\n"
        "import sys\n"
        "assert 'echorl_verl.plugin' in sys.modules, 'plugin not loaded by import verl'\n"
        "print(get_adv_estimator_fn('echo').__module__)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "VERL_USE_EXTERNAL_PLUGINS"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("echorl_verl.advantage")


def test_disabling_verl_plugins_really_disables_it():
    """Proves the previous test measures the entry point, not an import done by the test itself."""
    code = "import verl\nfrom verl.trainer.ppo.core_algos import ADV_ESTIMATOR_REGISTRY\nprint('echo' in ADV_ESTIMATOR_REGISTRY)\n"
    env = dict(os.environ, VERL_USE_EXTERNAL_PLUGINS="none")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_registry_entry_is_ours():
    assert core_algos.get_adv_estimator_fn("echo").__module__ == "echorl_verl.advantage"


def test_a_broken_plugin_is_loud_although_verl_swallows_it():
    """verl logs plugin import errors at DEBUG only; ours must still reach stderr."""
    code = (
        "import sys, importlib.abc\n"
        "class Breaker(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name == 'echorl_verl.advantage':\n"
        "            raise ImportError('simulated breakage')\n"
        "sys.meta_path.insert(0, Breaker())\n"
        "import verl\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0  # verl itself carries on ...
    assert "[echorl_verl] plugin registration FAILED" in out.stderr  # ... but the failure is visible
    assert "simulated breakage" in out.stderr
