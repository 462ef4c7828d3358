"""A code-sandbox runner on a sandbox-fusion service, through verl's own client.

For machines where the local sandbox (``code_sandbox.py``) cannot isolate programs (no root or
``unshare``), or to move code execution off the training nodes. The runner has the local one's
interface (``run(program, stdin, limits) -> RunResult``): an unreachable service or one that reports
its own failure raises :class:`SandboxUnavailable` (counted as an infrastructure failure, see
``infra.py``), never a result that would score 0 as a wrong answer.
"""

from __future__ import annotations

import time

from echorl_verl.rewards.runner import RunResult, Runner, SandboxLimits, SandboxUnavailable


def sandbox_fusion_runner(url: str, memory_limit_mb: int = 1024) -> Runner:
    """A runner that executes Python programs on the sandbox-fusion service at ``url`` (``.../run_code``).

    Uses ``verl.utils.reward_score.sandbox_fusion.utils.call_sandbox_api`` (which retries gateway
    timeouts); the memory limit is the smaller of ``memory_limit_mb`` and the run's own.
    """
    from verl.utils.reward_score.sandbox_fusion.utils import call_sandbox_api

    def run(program: str, stdin: str, limits: SandboxLimits) -> RunResult:
        start = time.monotonic()
        response, error = call_sandbox_api(
            sandbox_fusion_url=url,
            code=program,
            stdin=stdin,
            compile_timeout=limits.cpu_s,
            run_timeout=limits.cpu_s,
            memory_limit_mb=min(memory_limit_mb, limits.memory_mb),
            language="python",
        )
        wall = time.monotonic() - start
        if response is None:
            raise SandboxUnavailable(f"sandbox-fusion at {url}: {error}")
        if response.get("status") == "SandboxError":
            raise SandboxUnavailable(f"sandbox-fusion at {url}: {response.get('message', response)}")
        run_result = response.get("run_result") or {}
        timed_out = run_result.get("status") == "TimeLimitExceeded"
        code = run_result.get("return_code")
        return RunResult(
            returncode=code if isinstance(code, int) else -1,
            stdout=run_result.get("stdout") or "",
            stderr=run_result.get("stderr") or str(response.get("message", "")),
            timed_out=timed_out,
            wall_s=wall,
        )

    return run
