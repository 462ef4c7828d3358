"""Shared test helpers: verl's real Hydra config (ours, which extends verl's ppo_trainer), a tiny HF model, and
real recipe runs (`PROFILE=cpu` on the toy): to their end, or watched (their output, processes and /dev/shm
segments) so that a test can kill them or see them fail."""

import os
import subprocess
import sys
import time

import torch

CONFIG_DIR = os.path.join(os.path.dirname(__file__), "..", "echorl_verl", "configs")


def compose_config(overrides=()):
    """Compose echo_ppo_trainer.yaml (verl's ppo_trainer + echo) exactly as `python -m echorl_verl.main_ppo` would."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=os.path.abspath(CONFIG_DIR), version_base=None):
        return compose(config_name="echo_ppo_trainer", overrides=list(overrides))


def tiny_qwen2(vocab_size=64, seed=0):
    """A real transformers Qwen2 causal LM, small enough for gradient tests (about 30k parameters)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        attn_implementation="eager",
    )
    model = Qwen2ForCausalLM(config).to(torch.float64)
    model.eval()  # no dropout: gradients must be comparable bit for bit across splits
    return model


def toy_cache_dir(name):
    """Where toy builds are cached between test sessions ($ECHORL_CACHE, default ~/.cache/echorl_verl)."""
    return os.path.join(os.path.expanduser(os.environ.get("ECHORL_CACHE", "~/.cache/echorl_verl")), name)


def shared_benchmarks_dir():
    """The project's real benchmark rows (verl format): $ECHORL_BENCHMARKS, else ../shared/data/benchmarks
    beside the checkout (where CI puts it), else /work/shared/data/benchmarks."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for candidate in (os.environ.get("ECHORL_BENCHMARKS"), os.path.join(repo, "..", "shared", "data", "benchmarks"),
                      "/work/shared/data/benchmarks"):
        if candidate and os.path.exists(os.path.join(candidate, "math_eval_suite.parquet")):
            return os.path.abspath(candidate)
    return os.path.join(repo, "..", "shared", "data", "benchmarks")  # absent: the tests that need it skip


# ------------------------------------------------------------------------------ real recipe runs (PROFILE=cpu)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = os.path.join(REPO, ".venv", "bin", "python") if os.path.exists(os.path.join(REPO, ".venv")) else sys.executable
#: the demo's toy model, built once per machine (the `toy_dir` fixture builds it)
TOY = toy_cache_dir("toy-default")
#: the sizes of every recipe run in the tests: 16 prompts x 8 rollouts, two PPO mini-batches, 2 steps
SIZES = {"TRAIN_BATCH": "16", "MINI_BATCH": "8", "TOTAL_STEPS": "2"}


def python_json(code, env_extra=None, unset=("VERL_PLATFORM", "VERL_USE_EXTERNAL_MODULES"), timeout=300):
    """Run `code` (dedented) in a fresh interpreter from the repo root, with this environment less `unset` plus
    `env_extra`; it must exit 0 and print one JSON line last, which is returned."""
    import json
    import textwrap

    env = {k: v for k, v in os.environ.items() if k not in unset}
    env.update(env_extra or {})
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def clean_env(**extra):
    """This process's environment without the settings a recipe reads (VERL_*, ECHORL_*, PROFILE, ...), plus `extra`."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("VERL_", "ECHORL_")) and k not in ("PROFILE", "RAY_ADDRESS", "ENTRY", "SEED")}
    env.update(HF_HUB_OFFLINE="1", PYTHON=PYTHON, **extra)
    return env


def recipe_env(run_dir, **env):
    """The environment of `PROFILE=cpu bash recipes/<script>` on the toy with SIZES; `env` wins."""
    return clean_env(PROFILE="cpu", RUN_DIR=str(run_dir), TOY_DIR=TOY, **{**SIZES, **env})


def recipe_command(script, *overrides):
    return ["bash", os.path.join(REPO, "recipes", script), "trainer.val_before_train=False", *overrides]


def steps_of(run_dir):
    """{step: metrics} of every attempt of a run, through the report's own reader."""
    from echorl_verl.report.runlog import load_run

    steps = {}
    for row in load_run(str(run_dir)).records.itertuples():
        steps.setdefault(int(row.step), {})[row.metric] = float(row.value)
    return steps


def logged_steps(path):
    """The steps of the complete lines of one metrics file (verl's file logger writes a line per step)."""
    import json

    with open(path, "rb") as fh:
        return [json.loads(line)["step"] for line in fh if line.endswith(b"\n")]


def finished_run(run_dir, stdout=""):
    """What the tests read of a run that ended: its folder, {step: metrics}, stdout and resolved config."""
    import yaml

    return {"dir": run_dir, "steps": steps_of(run_dir), "stdout": stdout,
            "config": yaml.safe_load(open(os.path.join(run_dir, "resolved_config.yaml")))}


def run_recipe(run_dir, script, *overrides, timeout=900, **env):
    """`PROFILE=cpu bash recipes/<script> overrides...` to its end; it must exit 0."""
    proc = subprocess.run(recipe_command(script, *overrides), env=recipe_env(run_dir, **env),
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return finished_run(run_dir, proc.stdout)


# ------------------------------------------------------------------------------ a run's processes and /dev/shm
#: the shared-memory segments a vLLM run writes (vLLM's ring buffers, verl's weight bucket)
SHM_PATTERNS = ("psm_*", "verl_weights_*")


def process_identity(pid):
    """(pid, start time in clock ticks): tells a process apart from a later one that got the same pid; None if gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(pid), int(fields[19])) if fields[0] != "Z" else None  # a zombie has ended


def parent_of(pid):
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as fh:
            return int(fh.read().rsplit(")", 1)[1].split()[1])
    except OSError:
        return None


def descendants(root):
    """Identities of the live processes below pid `root` (its children, theirs, ...)."""
    children = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and (parent := parent_of(name)) is not None:
            children.setdefault(parent, []).append(int(name))
    found, todo = set(), list(children.get(root, []))
    while todo:
        pid = todo.pop()
        if (identity := process_identity(pid)) is not None:
            found.add(identity)
        todo.extend(children.get(pid, []))
    return found


def still_alive(identities):
    """The processes of `identities` that still run (same pid, same start time), with their command lines."""
    out = []
    for pid, start in sorted(identities):
        if process_identity(pid) == (pid, start):
            out.append((pid, command_line(pid)))
    return out


def command_line(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace").strip()[:160]
    except OSError:
        return ""


def processes_in(run_dir):
    """Live processes (pid, command line) that work in `run_dir` (their cwd: the driver, Ray's daemons and
    workers, vLLM's engine all start there) or name it on their command line; this process aside."""
    run_dir = os.path.realpath(run_dir)
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid() or process_identity(name) is None:
            continue
        try:
            cwd = os.path.realpath(os.readlink(f"/proc/{name}/cwd"))
        except OSError:
            cwd = ""
        cmd = command_line(name)
        if cwd == run_dir or cwd.startswith(run_dir + os.sep) or run_dir in cmd:
            out.append((int(name), cmd))
    return out


def shm_segments():
    """Names of this user's segments in /dev/shm that match SHM_PATTERNS."""
    import fnmatch

    try:
        names = os.listdir("/dev/shm")
    except OSError:
        return set()
    out = set()
    for name in names:
        try:
            mine = os.stat(os.path.join("/dev/shm", name)).st_uid == os.getuid()
        except OSError:
            continue
        if mine and any(fnmatch.fnmatch(name, pattern) for pattern in SHM_PATTERNS):
            out.add(name)
    return out


class WatchedRecipe:
    """A recipe run started in its own session (so its process group can be killed as one), its output read
    line by line with arrival times, and, sampled while it runs, every process below it and every
    shared-memory segment that appeared."""

    def __init__(self, run_dir, script, *overrides, **env):
        import threading

        self.run_dir = run_dir
        self.shm_before = shm_segments()
        self.started = time.time()
        self.proc = subprocess.Popen(recipe_command(script, *overrides), env=recipe_env(run_dir, **env),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace",
                                     start_new_session=True)
        self.lines = {"stdout": [], "stderr": []}  # stream -> [(time.monotonic(), line)]
        self.processes, self.segments = set(), set()
        self.ended_at = None
        self._readers = [threading.Thread(target=self._read, args=(name,), daemon=True) for name in self.lines]
        for reader in self._readers:
            reader.start()

    def _read(self, name):
        for line in getattr(self.proc, name):
            self.lines[name].append((time.monotonic(), line.rstrip("\n")))

    def sample(self):
        self.processes |= descendants(self.proc.pid)
        self.segments |= shm_segments() - self.shm_before

    def wait_for(self, condition, what, timeout=600):
        """Sample every 0.2 s until `condition()` holds; fails when the run ends or `timeout` passes first."""
        deadline = time.monotonic() + timeout
        while not condition():
            self.sample()
            assert self.proc.poll() is None, f"the run ended (exit {self.proc.returncode}) before {what}\n{self.tail()}"
            assert time.monotonic() < deadline, f"no {what} within {timeout} s\n{self.tail()}"
            time.sleep(0.2)
        self.sample()

    def wait(self, timeout=900):
        """Wait for the run's end (sampling meanwhile); returns its exit code."""
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            self.sample()
            if time.monotonic() > deadline:
                self.kill_group()
                raise AssertionError(f"the run did not end within {timeout} s\n{self.tail()}")
            time.sleep(0.5)
        self.ended_at = time.monotonic()
        for reader in self._readers:
            reader.join(timeout=30)
        return self.proc.returncode

    def kill_group(self):
        """SIGKILL to the run's whole process group (what a scheduler or `kill -9 -PGID` does)."""
        import signal

        os.killpg(self.proc.pid, signal.SIGKILL)

    def first(self, text):
        """Arrival time of the first output line (either stream) that contains `text`; None if none did."""
        times = [t for stream in self.lines.values() for t, line in stream if text in line]
        return min(times) if times else None

    def last_stderr_line(self):
        lines = [line for _, line in self.lines["stderr"] if line.strip()]
        return lines[-1] if lines else ""

    def tail(self, n=40):
        return "\n".join(line for _, line in sorted(self.lines["stdout"] + self.lines["stderr"])[-n:])
