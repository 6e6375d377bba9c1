"""Atomic file writes: a reader sees the old file or the new one, never a partial one.

The registry, the feature cache and its manifest all write through :func:`atomic_path`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A hidden temporary path next to ``path`` to write to; on a clean exit it is fsynced and renamed to ``path``.

    The temporary file (``.<name>.<pid>.<ns>.tmp``, so concurrent writers never share one)
    is removed whatever happens; an exception from the body or the rename propagates.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
    try:
        yield tmp
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
