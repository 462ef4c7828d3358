"""Output files appear whole or not at all: the package's one atomic-write helper.

Every file is written to a temporary name beside its target, flushed to disk, and only then renamed over
the target with `os.replace` (atomic on POSIX). A failure or Ctrl-C at any point leaves no temporary file
and every older target untouched. Used by data_prep's parquet writer, the reports and the study harness.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Callable


def _tmp_beside(path: str) -> str:
    """An empty temporary file in `path`'s folder (created if missing), with the mode open() would give."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600
    return tmp


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(writers: dict[str, Callable[[str], object]]) -> None:
    """Write several files all-or-nothing (as far as a file system allows).

    writers: {target path: fn(tmp_path)}, fn writes the whole file to tmp_path. Every file is written to
    its temporary name first; only when all succeeded are they renamed into place. On any error (or
    KeyboardInterrupt) the temporaries are removed, no target changes, and the error propagates.
    """
    tmps: dict[str, str] = {}
    try:
        for path, write in writers.items():
            tmps[path] = _tmp_beside(path)
            write(tmps[path])
            _fsync(tmps[path])
        for path, tmp in tmps.items():
            os.replace(tmp, path)
    finally:
        for tmp in tmps.values():
            if os.path.exists(tmp):
                os.remove(tmp)


def write_text(path: str, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically."""
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)

    write_all({path: write})


@contextlib.contextmanager
def build_lock(output_dir: str):
    """Hold an exclusive lock on `output_dir`/.build.lock: two processes never build the same cached folder at
    once (the toy build, the SmolLM2 conversion: test sessions and runs share the cache)."""
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, ".build.lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
