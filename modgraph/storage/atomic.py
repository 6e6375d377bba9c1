"""Atomic file writes: a reader sees the old file or the new one, never a partial one.

The registry, the feature cache and its manifest all write through :func:`atomic_path`; files a
user names as outputs through :mod:`modgraph.storage.outputs`, which is built on it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


def temporary_path(path: str | Path) -> Path:
    """A hidden temporary name beside ``path``, unique to this process and moment (``.<name>.<pid>.<ns>.tmp``).

    The name keeps at most 48 characters of ``path``'s (192 bytes even in four-byte characters),
    so a long file name never makes a temporary name the file system refuses.
    """
    path = Path(path)
    return path.with_name(f".{path.name[:48]}.{os.getpid()}.{time.monotonic_ns()}.tmp")


def fsync_file(path: str | Path) -> None:
    """Flush a written file to disk before it is renamed into place."""
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


@contextmanager
def atomic_path(path: str | Path, before_rename: Callable[[], object] | None = None) -> Iterator[Path]:
    """A hidden temporary path next to ``path`` to write to; on a clean exit it is fsynced and renamed to ``path``.

    The temporary file (``.<name>.<pid>.<ns>.tmp``, so concurrent writers never share one)
    is removed whatever happens; an exception from the body, ``before_rename`` (called just
    before the rename: a last check of the target) or the rename propagates.
    """
    path = Path(path)
    tmp = temporary_path(path)
    try:
        yield tmp
        fsync_file(tmp)
        if before_rename is not None:
            before_rename()
        os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            tmp.unlink()
