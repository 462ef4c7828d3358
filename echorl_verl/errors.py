"""One line for a failure that crossed Ray: the worker's own exception, not Ray's wrapper.

Why: an exception raised inside a Ray actor reaches the driver as `ray.exceptions.RayTaskError` (or one of its
per-type subclasses) whose text is the remote traceback; the useful line is the original exception's type and
first message line, kept in the wrapper's `cause`. Both the driver's last line (main_ppo) and the trainer's
diagnosis of a dead rollout engine print it.
"""

from __future__ import annotations


def failure_line(err: BaseException) -> str:
    """`Type: first line` of what failed, looking through Ray's wrappers (`err.cause`) to the original exception."""
    while getattr(err, "cause", None) is not None and err.cause is not err:  # ray.exceptions.RayTaskError
        err = err.cause
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}".rstrip(": ")
