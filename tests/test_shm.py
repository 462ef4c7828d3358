"""The run's shared-memory leftovers (echorl_verl/shm.py): only this run's, only unused ones, on real /dev/shm."""

import os
import time
from multiprocessing import resource_tracker, shared_memory

import pytest

from echorl_verl import shm

# with the training runs (pytest.ini): a run's clean-up removes any unused segment written since its start
pytestmark = [pytest.mark.skipif(not os.path.isdir(shm.SHM_DIR), reason="no /dev/shm on this platform"),
              pytest.mark.training_runs]


def _segment(name: str, size: int = 4096) -> shared_memory.SharedMemory:
    segment = shared_memory.SharedMemory(name=name, create=True, size=size)
    resource_tracker.unregister(segment._name, "shared_memory")  # as vLLM does: nobody unlinks it at exit
    return segment


def test_only_unused_segments_of_the_run_are_removed(tmp_path):
    tag = f"{os.getpid()}_{time.time_ns()}"
    old = _segment(f"psm_old_{tag}")
    old.close()
    os.utime(os.path.join(shm.SHM_DIR, f"psm_old_{tag}"), (time.time() - 3600,) * 2)  # before the run
    started = time.time()
    in_use = _segment(f"psm_used_{tag}")            # still mapped by a live process (this one)
    left = _segment(f"verl_weights_left_{tag}")     # the run's, no longer mapped: a leftover
    left.close()
    other = _segment(f"other_{tag}")                # not a name the run's libraries make
    other.close()
    try:
        found = [os.path.basename(p) for p in shm.leftovers(started)]
        assert f"verl_weights_left_{tag}" in found
        assert not {f"psm_old_{tag}", f"psm_used_{tag}", f"other_{tag}"} & set(found)
        removed, freed = shm.remove_leftovers(started)
        assert removed >= 1 and freed >= 4096
        names = set(os.listdir(shm.SHM_DIR))
        assert f"verl_weights_left_{tag}" not in names
        assert {f"psm_old_{tag}", f"psm_used_{tag}", f"other_{tag}"} <= names
    finally:
        in_use.close()
        for name in (f"psm_old_{tag}", f"psm_used_{tag}", f"other_{tag}", f"verl_weights_left_{tag}"):
            try:
                os.unlink(os.path.join(shm.SHM_DIR, name))
            except FileNotFoundError:
                pass


def test_the_next_attempt_cleans_up_after_a_killed_one(tmp_path, capsys):
    tag = f"{os.getpid()}_{time.time_ns()}"
    (tmp_path / shm.STATE_FILE).write_text('{"started": %f, "pid": 999999999}' % (time.time() - 1))
    left = _segment(f"psm_killed_{tag}")
    left.close()
    shm.begin_run(str(tmp_path))
    assert f"psm_killed_{tag}" not in os.listdir(shm.SHM_DIR)
    assert "left in /dev/shm by the previous attempt (pid 999999999)" in capsys.readouterr().out
    # a previous attempt whose driver still runs is left alone
    (tmp_path / shm.STATE_FILE).write_text('{"started": %f, "pid": %d}' % (time.time() - 1, os.getpid()))
    alive = _segment(f"psm_alive_{tag}")
    alive.close()
    try:
        shm.begin_run(str(tmp_path))
        assert f"psm_alive_{tag}" in os.listdir(shm.SHM_DIR)
    finally:
        os.unlink(os.path.join(shm.SHM_DIR, f"psm_alive_{tag}"))


def test_a_zombie_driver_counts_as_gone():
    """A killed driver that its parent has not reaped yet is a zombie: its attempt's leftovers are garbage."""
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    child.kill()
    time.sleep(0.5)  # dead, not reaped: a zombie
    try:
        assert not shm._pid_alive(child.pid)
        assert shm._pid_alive(os.getpid())
    finally:
        child.wait()
