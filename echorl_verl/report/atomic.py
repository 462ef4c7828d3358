"""Output files appear whole or not at all: write to a temporary file beside the target, then os.replace."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable


def _tmp_beside(path: str, suffix: str) -> str:
    folder = os.path.dirname(os.path.abspath(path)) or "."
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=suffix + ".tmp", dir=folder)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the mode a plain open() would
    return tmp


def write_text(path: str, text: str) -> None:
    """Write `text` to `path` atomically (an older file stays untouched if anything fails)."""
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)

    write_all({path: write})


def write_all(writers: dict[str, Callable[[str], object]]) -> None:
    """Write several files all-or-nothing (as far as a file system allows).

    writers: {target path: fn(tmp_path)} where fn writes the whole file to tmp_path. Every file is first
    written to its temporary name; only when all succeeded are they renamed into place. On any error
    the temporaries are removed and no target changes.
    """
    tmps: dict[str, str] = {}
    try:
        for path, write in writers.items():
            tmps[path] = _tmp_beside(path, os.path.splitext(path)[1])
            write(tmps[path])
        for path, tmp in tmps.items():
            os.replace(tmp, path)
    finally:
        for tmp in tmps.values():
            if os.path.exists(tmp):
                os.remove(tmp)
