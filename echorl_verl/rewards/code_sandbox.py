"""Run untrusted (model-written) Python in a sandbox: ``run_program(program, stdin, limits)``.

Every run is a fresh ``python -I`` interpreter started with ``subprocess`` (never a fork of the
caller), in a new session, with a private temporary directory that is deleted afterwards.

Isolation modes (``isolation_mode()`` says which one this machine gets):

``namespaces`` (root and ``unshare`` works; the normal case on our machines and containers):
    ``unshare --net --pid --fork --kill-child --mount --mount-proc`` starts ``sandbox_child.py
    init`` as PID 1 of new network, PID and mount namespaces. The network namespace has only a
    down loopback device (no network at all); /tmp, /var/tmp, /dev/shm and /run/lock are
    replaced by small private tmpfs mounts (``tmpfs_mb`` each) and the program runs in
    /tmp/work on one of them, so nothing it writes reaches the host disk; the program runs as a fresh uid/gid picked at random from 2,000,000,000 up (no
    supplementary groups), so it can write only its own work directory and tmpfs, cannot
    signal any process of ours, and RLIMIT_NPROC, which counts per uid and is NOT enforced for
    root, counts only this run's processes: a fork bomb stops at ``limits.nproc``. When the
    program ends or is killed, PID 1 exits and the kernel kills every process left in the PID
    namespace (also ones that called setsid()).
``rlimits`` (fallback when not root or no ``unshare``; a warning is logged once):
    resource limits, socket creation patched to fail, process group killed on timeout. The
    program runs as our own user: it can write where we can and its processes count toward our
    RLIMIT_NPROC. Use sandbox-fusion (``sandbox_fusion_url``) on such machines.

Limits in both modes: RLIMIT_CPU (``cpu_s``), RLIMIT_AS (``memory_mb``), RLIMIT_FSIZE
(``fsize_mb``, also caps stdout/stderr, which go to files), RLIMIT_NPROC (``nproc``),
RLIMIT_NOFILE 256, no core files, and a wall-clock limit (``wall_s``) after which the whole
process group is SIGKILLed. Worst-case memory of one run is ``nproc * memory_mb``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from functools import lru_cache
from pathlib import Path

logger = logging.getLogger(__name__)

_CHILD = str(Path(__file__).with_name("sandbox_child.py"))
_FIRST_SANDBOX_UID = 2_000_000_000
_OUTPUT_CAP = 8 << 20  # bytes of stdout/stderr read back
# what the unprivileged program needs to read: the interpreter, the venv, the child script
_EXPOSE = sorted({os.path.realpath(p) for p in (sys.base_prefix, sys.prefix, os.path.dirname(_CHILD))})


@dataclasses.dataclass(frozen=True)
class SandboxLimits:
    """Limits of one run. Seconds, MiB, process count."""

    cpu_s: int = 10
    wall_s: float = 20.0
    memory_mb: int = 1024
    fsize_mb: int = 32
    nproc: int = 32
    tmpfs_mb: int = 64


@dataclasses.dataclass
class RunResult:
    """Outcome of one run. ``returncode`` is 128+signal when killed by a signal."""

    returncode: int
    stdout: str
    stderr: str
    timed_out: bool
    wall_s: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out


@lru_cache(maxsize=1)
def isolation_mode() -> str:
    """``"namespaces"`` or ``"rlimits"`` (see module docstring); probed once per process.

    ``$ECHORL_SANDBOX`` = ``namespaces`` / ``rlimits`` forces a mode (``namespaces`` where it cannot
    work raises). The chosen mode is checked by running ``print('ok')`` in it: a sandbox that
    cannot run anything would score every program 0, so that raises RuntimeError instead.
    """
    forced = os.environ.get("ECHORL_SANDBOX", "").strip()
    if forced not in ("", "namespaces", "rlimits"):
        raise RuntimeError(f"ECHORL_SANDBOX must be 'namespaces' or 'rlimits', got {forced!r}")
    mode = "rlimits"
    if forced != "rlimits" and os.geteuid() == 0 and shutil.which("unshare"):
        probe = subprocess.run(
            ["unshare", "--net", "--pid", "--fork", "--kill-child", "--mount", "--mount-proc", "true"],
            capture_output=True,
            timeout=30,
        )
        mode = "namespaces" if probe.returncode == 0 else "rlimits"
    if forced == "namespaces" and mode != "namespaces":
        raise RuntimeError("ECHORL_SANDBOX=namespaces, but this process is not root or `unshare` fails here")
    if mode == "rlimits":
        logger.warning(
            "echorl code sandbox: no root/unshare here, falling back to rlimits only (weaker: the program "
            "runs as this user). Prefer a sandbox-fusion service (sandbox_fusion_url) on this machine."
        )
    check = _run(mode, "print('ok')", "", SandboxLimits(cpu_s=10, wall_s=60))
    if check.stdout != "ok\n":
        raise RuntimeError(
            f"the {mode} code sandbox cannot run a trivial program (exit code {check.returncode}): "
            f"{check.stderr.strip()[-500:]}"
        )
    return mode


def _clean_env() -> dict[str, str]:
    """A minimal environment: no credentials or cluster settings leak into the program."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "HOME": "/tmp/work",
        "PYTHONHASHSEED": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
        "OMP_NUM_THREADS": "1",  # numeric libraries would start one thread per core, each counting in nproc
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }


def _kill_uid(uid: int, within_s: float = 5.0) -> None:
    """SIGKILL every process of the sandbox uid and wait until the kernel has removed them.

    After PID 1 of the namespace dies the kernel kills the rest asynchronously (a fork bomb's
    processes are still listed, dying, for ~0.1 s): return only when none is left.
    """
    deadline = time.monotonic() + within_s
    while True:
        left = 0
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    if os.stat(f"/proc/{entry}").st_uid == uid:
                        left += 1
                        os.kill(int(entry), signal.SIGKILL)
                except (FileNotFoundError, ProcessLookupError, PermissionError):
                    pass
        if not left or time.monotonic() > deadline:
            if left:
                logger.error("echorl code sandbox: %d processes of uid %d still alive after %.0f s", left, uid, within_s)
            return
        time.sleep(0.02)


def _read_capped(path: str) -> str:
    with open(path, "rb") as f:
        return f.read(_OUTPUT_CAP).decode("utf-8", "replace")


def run_program(program: str, stdin: str = "", limits: SandboxLimits = SandboxLimits()) -> RunResult:
    """Run ``program`` (Python source, as ``__main__``) with ``stdin``; never raises for bad code.

    The program's working directory is a fresh empty directory (``/tmp/work`` in namespaces
    mode); its stdout/stderr are captured to files outside it (capped by ``fsize_mb``).
    Raises OSError only when the sandbox itself fails (no disk space, mounts refused).
    """
    return _run(isolation_mode(), program, stdin, limits)


def _run(mode: str, program: str, stdin: str, limits: SandboxLimits) -> RunResult:
    base = tempfile.mkdtemp(prefix="echorl_sbx_")  # mode 700, ours: the program cannot enter it
    try:
        work = os.path.join(base, "work")
        os.mkdir(work, 0o700)
        with open(os.path.join(work, "prog.py"), "w", encoding="utf-8", errors="surrogatepass") as f:
            f.write(program)
        with open(os.path.join(base, "stdin"), "w", encoding="utf-8", errors="replace") as f:
            f.write(stdin)
        uid = random.randrange(_FIRST_SANDBOX_UID, _FIRST_SANDBOX_UID + 100_000_000)
        cfg = {**dataclasses.asdict(limits), "uid": uid, "workdir": work, "env": _clean_env(), "expose": _EXPOSE}
        cfg_path = os.path.join(work, "sandbox.json")
        with open(cfg_path, "w") as f:
            json.dump(cfg, f)
        if mode == "namespaces":
            cmd = ["unshare", "--net", "--pid", "--fork", "--kill-child", "--mount", "--mount-proc",
                   sys.executable, "-I", _CHILD, "init", cfg_path]  # fmt: skip
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        else:
            cmd = [sys.executable, "-I", _CHILD, "run", cfg_path]
            env = {**_clean_env(), "HOME": work}
        start = time.monotonic()
        with (
            open(os.path.join(base, "stdin"), "rb") as fin,
            open(os.path.join(base, "stdout"), "wb") as fout,
            open(os.path.join(base, "stderr"), "wb") as ferr,
        ):
            proc = subprocess.Popen(
                cmd, stdin=fin, stdout=fout, stderr=ferr, cwd=work, env=env, start_new_session=True, close_fds=True
            )
            timed_out = False
            try:
                proc.wait(timeout=limits.wall_s)
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)  # the whole group: unshare, PID 1, children
                except ProcessLookupError:
                    pass
                proc.wait()
                if mode == "namespaces":
                    _kill_uid(uid)
        wall = time.monotonic() - start
        stderr = _read_capped(os.path.join(base, "stderr"))
        if mode == "namespaces" and proc.returncode == 125 and stderr.startswith("sandbox init failed"):
            raise OSError(stderr.strip())
        return RunResult(
            returncode=proc.returncode if proc.returncode >= 0 else 128 - proc.returncode,
            stdout=_read_capped(os.path.join(base, "stdout")),
            stderr=stderr,
            timed_out=timed_out,
            wall_s=wall,
        )
    finally:
        shutil.rmtree(base, ignore_errors=True)
