"""echorl_verl.errors.failure_line: the worker's own exception through Ray's real wrappers."""

import ray.exceptions

from echorl_verl.errors import failure_line


class EngineDeadError(RuntimeError):
    pass


def wrapped(err: BaseException) -> BaseException:
    """What ray.get raises on the driver when an actor method raised `err` (Ray's own wrapper classes)."""
    return ray.exceptions.RayTaskError("vLLMHttpServer.clear_kv_cache", "Traceback (most recent call last): ...",
                                       err).as_instanceof_cause()


def test_looks_through_ray_to_the_first_line_of_the_cause():
    err = wrapped(EngineDeadError("EngineCore encountered an issue.\nSee stack trace for the root cause."))
    assert isinstance(err, ray.exceptions.RayTaskError) and isinstance(err, EngineDeadError)
    assert failure_line(err) == "EngineDeadError: EngineCore encountered an issue."


def test_nested_wrappers_and_bare_exceptions():
    assert failure_line(wrapped(wrapped(ValueError("bad row 3")))) == "ValueError: bad row 3"
    assert failure_line(KeyError()) == "KeyError"
    assert failure_line(TimeoutError("  \n")) == "TimeoutError"
