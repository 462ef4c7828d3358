"""The interface every code-sandbox runner shares: its limits, its result, and "could not run" as an error.

Both runners (the local sandbox in ``code_sandbox.py`` and the service client in ``sandbox_fusion.py``)
implement ``Runner`` and import it from here, so neither imports the other for the types; only
``code_sandbox.runner_for`` chooses between them.
"""

from __future__ import annotations

import dataclasses
from typing import Callable


class SandboxUnavailable(RuntimeError):
    """The sandbox could not run the program (it never started, the service is unreachable): not the model's fault."""


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


#: ``run(program, stdin, limits) -> RunResult``; raises SandboxUnavailable when it could not run the program.
Runner = Callable[[str, str, SandboxLimits], RunResult]
