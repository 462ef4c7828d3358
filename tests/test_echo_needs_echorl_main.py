"""`algorithm.adv_estimator=echo` through verl's own entry point stops at start-up with one line naming the fix.

Before, `python -m verl.trainer.main_ppo algorithm.adv_estimator=echo` trained the baseline (the estimator
returned the base estimator's advantages and no echo loss was installed), and nothing said so.
"""

import os
import signal
import subprocess
import sys

import pytest

import verl
from echorl_verl.advantage import USE_ECHORL_MAIN, stop_echo_in_verl_main
from echorl_verl.cpu.overrides import cpu_overrides

VERL_DIR = os.path.dirname(verl.__file__)
PY = "/venv/bin/python"


@pytest.mark.parametrize("argv", [
    [PY, "-m", "verl.trainer.main_ppo", "algorithm.adv_estimator=echo"],
    [PY, "-u", "-m", "verl.trainer.main_ppo", "data.train_batch_size=8", "+algorithm.adv_estimator='echo'"],
    [PY, os.path.join(VERL_DIR, "trainer", "main_ppo.py"), "++algorithm.adv_estimator=echo"],
])
def test_verls_entry_points_asked_for_echo_stop(argv, capsys):
    with pytest.raises(SystemExit) as stop:
        stop_echo_in_verl_main(argv, VERL_DIR)
    assert stop.value.code == 2
    assert capsys.readouterr().err == f"echorl_verl: {USE_ECHORL_MAIN}\n"


@pytest.mark.parametrize("argv", [
    [PY, "-m", "echorl_verl.main_ppo", "algorithm.adv_estimator=echo", "echo.base_estimator=grpo"],  # our route
    [PY, "-m", "verl.trainer.main_ppo", "algorithm.adv_estimator=grpo"],  # verl's own, without echo
    [PY, "-m", "verl.trainer.main_ppo", "algorithm.adv_estimator=echo_like"],
    [PY, "my_script.py", "algorithm.adv_estimator=echo"],  # not verl's entry point
    [PY, "-c", "import verl"],
])
def test_other_processes_are_left_alone(argv):
    stop_echo_in_verl_main(argv, VERL_DIR)


def test_verls_own_main_ppo_with_echo_stops_before_ray(toy, tmp_path):
    """A CPU run of verl's own main_ppo that would otherwise start Ray and train: one line, exit code 2, seconds."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VERL_", "ECHORL_")) and k != "RAY_ADDRESS"}
    env.update(VERL_PLATFORM="cpu", HF_HUB_OFFLINE="1")
    overrides = cpu_overrides(1) + [
        f"actor_rollout_ref.model.path={toy['model']}", f"data.train_files={toy['train']}", f"data.val_files={toy['val']}",
        "data.train_batch_size=4", "actor_rollout_ref.actor.ppo_mini_batch_size=4", "actor_rollout_ref.rollout.n=2",
        "trainer.n_gpus_per_node=1", "trainer.nnodes=1", "trainer.total_training_steps=1", "trainer.logger=[console]",
        "algorithm.adv_estimator=echo",
    ]
    proc = subprocess.Popen([sys.executable, "-m", "verl.trainer.main_ppo", *overrides], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the stop failed: the run went on (Ray, training)
        out, err = proc.communicate()
    assert proc.returncode == 2, out[-2000:] + err[-3000:]
    assert err.strip().splitlines()[-1] == f"echorl_verl: {USE_ECHORL_MAIN}"
    assert err.count("echorl_verl:") == 1
    assert "ray init kwargs" not in out + err and "Started a local Ray instance" not in out + err
