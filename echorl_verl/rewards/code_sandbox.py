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

"The program failed" and "we could not run it" are kept apart: the child tells the parent through a
pipe that it is about to run the program; a run that never got there (``unshare`` failed, a mount
was refused, the interpreter could not start) raises :class:`SandboxUnavailable`, never a
``RunResult`` that would score 0 as a wrong answer. ``self_test()`` runs a trivial program the
way the reward does (here or on sandbox-fusion) and says what failed and how to fix it.
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
import uuid
from functools import lru_cache
from pathlib import Path

from echorl_verl.rewards.runner import RunResult, Runner, SandboxLimits, SandboxUnavailable

logger = logging.getLogger(__name__)

_CHILD = os.path.realpath(Path(__file__).with_name("sandbox_child.py"))
_FIRST_SANDBOX_UID = 2_000_000_000
_OUTPUT_CAP = 8 << 20  # bytes of stdout/stderr read back
_STARTED = b"started"  # what the child writes to the status pipe just before it runs the program
LOCAL_FIX = (
    "the local sandbox needs root and a working `unshare` (mount, PID and network namespaces); where those are "
    "unavailable, set ECHORL_SANDBOX=rlimits (weaker isolation) or use a sandbox-fusion service: "
    "+reward.custom_reward_function.reward_kwargs.sandbox_fusion_url=http://HOST:8080/run_code"
)


def _interpreter() -> tuple[str, str]:
    """``(binary, argv0)`` that start this interpreter, with this venv, inside the sandbox.

    ``sys.executable`` keeps the path it was started by, which may pass through a symbolic link under a
    directory the sandbox covers (a venv reached through a link under /tmp, a fresh tmpfs inside). So the
    binary is its real path (under the real base prefix, which is exposed), and ``argv0`` is its name in the
    real directory of ``sys.executable``: Python finds ``pyvenv.cfg`` next to ``argv[0]``, so the venv's
    packages stay importable without any link having to exist inside the sandbox.
    """
    binary = os.path.realpath(sys.executable)
    argv0 = os.path.join(os.path.realpath(os.path.dirname(sys.executable)), os.path.basename(sys.executable))
    return binary, argv0


def _outermost(paths) -> list[str]:
    """The paths none of which lies inside another (a directory bound read-only cannot take a mount point)."""
    paths = sorted(set(paths))
    return [p for p in paths if not any(p != q and p.startswith(q.rstrip("/") + "/") for q in paths)]


# what the unprivileged program needs to read: the interpreter, the venv, the child script
_EXPOSE = _outermost(
    os.path.realpath(p)
    for p in (sys.base_prefix, sys.prefix, os.path.dirname(_CHILD), os.path.dirname(_interpreter()[0]))
)


@lru_cache(maxsize=1)
def isolation_mode() -> str:
    """``"namespaces"`` or ``"rlimits"`` (see module docstring); probed once per process.

    ``$ECHORL_SANDBOX`` = ``namespaces`` / ``rlimits`` forces a mode (``namespaces`` where it cannot
    work raises SandboxUnavailable). Whether the mode can run a program is ``self_test()``'s job.
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
        raise SandboxUnavailable(
            f"ECHORL_SANDBOX=namespaces, but this process is not root or `unshare` is missing or fails here; {LOCAL_FIX}"
        )
    if mode == "rlimits":
        logger.warning(
            "echorl code sandbox: no root/unshare here, falling back to rlimits only (weaker: the program "
            "runs as this user). Prefer a sandbox-fusion service (sandbox_fusion_url) on this machine."
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
    Raises SandboxUnavailable when the sandbox could not run the program at all.
    """
    mode = isolation_mode()
    try:
        return _run(mode, program, stdin, limits)
    except OSError as e:  # no disk space for the run's files, no processes left, ...
        raise SandboxUnavailable(f"the {mode} code sandbox failed: {e!r}") from e


def _command(mode: str, cfg_path: str, work: str) -> tuple[list[str], str | None, dict[str, str]]:
    """``(argv, executable, env)`` of the sandbox's first process (``executable`` None: ``argv[0]``)."""
    binary, argv0 = _interpreter()
    if mode == "namespaces":  # PID 1 needs only the standard library: the bare binary will do
        cmd = ["unshare", "--net", "--pid", "--fork", "--kill-child", "--mount", "--mount-proc",
               binary, "-I", _CHILD, "init", cfg_path]  # fmt: skip
        return cmd, None, {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    return [argv0, "-I", _CHILD, "run", cfg_path], binary, {**_clean_env(), "HOME": work}


def _started(status_fd: int) -> bool:
    """Did the child report (on the status pipe) that it reached the program? Every writer is gone by now."""
    os.set_blocking(status_fd, False)
    try:
        return os.read(status_fd, 64) == _STARTED
    except BlockingIOError:
        return False


def _run(mode: str, program: str, stdin: str, limits: SandboxLimits) -> RunResult:
    base = tempfile.mkdtemp(prefix="echorl_sbx_")  # mode 700, ours: the program cannot enter it
    status_r, status_w = os.pipe()
    try:
        work = os.path.join(base, "work")
        os.mkdir(work, 0o700)
        with open(os.path.join(work, "prog.py"), "w", encoding="utf-8", errors="surrogatepass") as f:
            f.write(program)
        with open(os.path.join(base, "stdin"), "w", encoding="utf-8", errors="replace") as f:
            f.write(stdin)
        uid = random.randrange(_FIRST_SANDBOX_UID, _FIRST_SANDBOX_UID + 100_000_000)
        binary, argv0 = _interpreter()
        cfg = {**dataclasses.asdict(limits), "uid": uid, "workdir": work, "env": _clean_env(), "expose": _EXPOSE,
               "python": binary, "argv0": argv0, "status_fd": status_w}  # fmt: skip
        cfg_path = os.path.join(work, "sandbox.json")
        with open(cfg_path, "w") as f:
            json.dump(cfg, f)
        cmd, executable, env = _command(mode, cfg_path, work)
        start = time.monotonic()
        with (
            open(os.path.join(base, "stdin"), "rb") as fin,
            open(os.path.join(base, "stdout"), "wb") as fout,
            open(os.path.join(base, "stderr"), "wb") as ferr,
        ):
            proc = subprocess.Popen(
                cmd, executable=executable, stdin=fin, stdout=fout, stderr=ferr, cwd=work, env=env,
                start_new_session=True, close_fds=True, pass_fds=(status_w,),
            )  # fmt: skip
            os.close(status_w)
            status_w = -1
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
        returncode = proc.returncode if proc.returncode >= 0 else 128 - proc.returncode
        stderr = _read_capped(os.path.join(base, "stderr"))
        if not _started(status_r):
            raise SandboxUnavailable(
                f"the {mode} code sandbox did not start the program (exit code {returncode}"
                f"{', wall-clock limit reached' if timed_out else ''}): {stderr.strip()[-1000:] or '(no stderr)'}"
            )
        return RunResult(
            returncode=returncode,
            stdout=_read_capped(os.path.join(base, "stdout")),
            stderr=stderr,
            timed_out=timed_out,
            wall_s=wall,
        )
    finally:
        os.close(status_r)
        if status_w >= 0:
            os.close(status_w)
        shutil.rmtree(base, ignore_errors=True)


def runner_for(sandbox_fusion_url: str | None = None, memory_limit_mb: int = 1024) -> Runner:
    """The runner the code reward uses: sandbox-fusion at ``sandbox_fusion_url`` when given, else this machine's sandbox."""
    if sandbox_fusion_url:
        from echorl_verl.rewards.sandbox_fusion import sandbox_fusion_runner

        return sandbox_fusion_runner(sandbox_fusion_url, memory_limit_mb)
    return run_program


def self_test(sandbox_fusion_url: str | None = None) -> str:
    """Run a trivial program through the runner the code reward uses; return which sandbox passed.

    Raises SandboxUnavailable saying what failed (the sandbox's stderr or the service's answer) and the fix.
    Call it at start-up wherever code is scored: a sandbox that cannot run anything would otherwise turn
    every code reward into an infrastructure failure.
    """
    token = f"echorl-self-test-{uuid.uuid4().hex}"
    if sandbox_fusion_url:
        where = f"sandbox-fusion at {sandbox_fusion_url}"
        fix = f"check that the service is up and reachable from every node (POST {sandbox_fusion_url})"
    else:
        fix = LOCAL_FIX
        try:
            where = f"the local {isolation_mode()} code sandbox"
        except SandboxUnavailable as e:
            raise SandboxUnavailable(f"code sandbox self-test: {e}") from e
    try:
        result = runner_for(sandbox_fusion_url)(f"print({token!r})", "", SandboxLimits(cpu_s=10, wall_s=60))
    except SandboxUnavailable as e:
        raise SandboxUnavailable(f"code sandbox self-test: {where} cannot run print(): {e}. Fix: {fix}") from e
    if not result.ok or result.stdout.strip() != token:
        raise SandboxUnavailable(
            f"code sandbox self-test: {where} ran print() with exit code {result.returncode}"
            f"{' (timed out)' if result.timed_out else ''}, stdout {result.stdout[-200:]!r}, "
            f"stderr {result.stderr.strip()[-1000:]!r}. Fix: {fix}"
        )
    return where
