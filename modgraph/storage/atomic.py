"""Atomic file writes: a reader sees the old file or the new one, never a partial one.

The registry, the feature cache and its manifest all write through :func:`atomic_path`.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def temporary_path(path: str | Path) -> Path:
    """A hidden temporary name beside ``path``, unique to this process and moment (``.<name>.<pid>.<ns>.tmp``).

    The name keeps at most 100 characters of ``path``'s, so a long file name never makes a
    temporary name the file system refuses.
    """
    path = Path(path)
    return path.with_name(f".{path.name[:100]}.{os.getpid()}.{time.monotonic_ns()}.tmp")


def fsync_file(path: str | Path) -> None:
    """Flush a written file to disk before it is renamed into place."""
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A hidden temporary path next to ``path`` to write to; on a clean exit it is fsynced and renamed to ``path``.

    The temporary file (``.<name>.<pid>.<ns>.tmp``, so concurrent writers never share one)
    is removed whatever happens; an exception from the body or the rename propagates.
    """
    path = Path(path)
    tmp = temporary_path(path)
    try:
        yield tmp
        fsync_file(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_bytes_atomically(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through :func:`atomic_path`; every I/O error is one ``ModgraphError`` naming it.

    Only a regular file is ever replaced (never /dev/null, a FIFO or a folder). Plugins write
    their output files (PNG, wav) with this.
    """
    from modgraph.errors import ModgraphError

    path = Path(path)
    try:
        if path.exists() and not path.is_file():
            raise OSError(errno.EEXIST, "it exists and is not a regular file")
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
    except OSError as exc:
        raise ModgraphError(f"could not write {path}: {(exc.strerror or str(exc)).rstrip('.')}") from None
    return path
