"""Every file a user names as an output (export, history -o, card -o, translate -o, --sheet, plugins' files).

Only a regular file is ever replaced: devices, FIFOs, sockets, folders and links to them are
refused in one line, found with lstat/stat so that nothing that could block is ever opened; the
file is written beside its target, fsynced and renamed into place (:mod:`modgraph.storage.atomic`).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from modgraph.errors import ModgraphError, OutputPathError, printable
from modgraph.storage.atomic import atomic_path

MAX_NAME_BYTES = 255  # the longest file name Linux, macOS and Windows file systems take

_NOT_REGULAR = ((stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"))


def _kind(mode: int) -> str | None:
    """What a file of ``mode`` is when it is not a regular file (None when it is one)."""
    if stat.S_ISREG(mode):
        return None
    return next((name for is_kind, name in _NOT_REGULAR if is_kind(mode)), "not a regular file")


def check_output(path: str | Path) -> Path:
    """``path`` when it may be written: absent, a regular file, or a link (replaced itself, never
    followed) to a regular file or to nothing. Otherwise one :class:`OutputPathError` line.

    Only ``lstat``/``stat`` look at the path: a FIFO or a device is never opened.
    """
    path = Path(path)
    shown = printable(path)
    if path.name in ("", ".", ".."):
        raise OutputPathError(f"will not write {shown}: it names a folder; give a file name")
    if len(os.fsencode(path.name)) > MAX_NAME_BYTES:
        raise OutputPathError(f"will not write {shown}: the file name is {len(os.fsencode(path.name))} bytes "
                              f"long, more than file systems take ({MAX_NAME_BYTES}); give a shorter name")
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return path
    except OSError as exc:  # a parent that is a file (ENOTDIR), a loop of links...
        raise OutputPathError(f"will not write {shown}: {exc.strerror or exc}") from None
    kind, link = _kind(info.st_mode), ""
    if stat.S_ISLNK(info.st_mode):
        try:
            kind, link = _kind(os.stat(path).st_mode), "a link to "
        except OSError:
            kind = None  # a dangling link: the link itself is replaced
    if kind is not None:
        raise OutputPathError(f"will not write {shown}: it is {link}{kind}, not a regular file; "
                              "give the name of a new or regular file")
    return path


@contextmanager
def output_file(path: str | Path) -> Iterator[Path]:
    """A new temporary file beside ``path`` to write; on a clean exit it is fsynced and renamed to ``path``.

    ``path`` is checked (:func:`check_output`) before and again just before the rename; missing
    folders are made. An I/O error is one :class:`ModgraphError` line naming ``path``; the
    temporary file never outlives the call.
    """
    path = check_output(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path, before_rename=lambda: check_output(path)) as tmp:
            # made here, exclusively and not through a link, so the body writes to a regular file of ours
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666))
            yield tmp
    except OSError as exc:
        reason = (exc.strerror or str(exc)).rstrip(".")
        raise ModgraphError(f"could not write {printable(path)}: {reason}") from None


def write_bytes_atomically(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through :func:`output_file`: only a regular file is ever replaced.

    Plugins write their output files (PNG, wav) with this (``modgraph.write_bytes_atomically``).
    """
    with output_file(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)
