"""Guards for files modgraph did not write itself: names, links, special files and sizes.

A registry may come from someone else (``import``, a shared folder), so nothing in it is
trusted: names become paths only when they are modality names, only regular files are
opened, and every size is bounded before anything is allocated.
"""

from __future__ import annotations

import os
import re
import stat
import struct
from pathlib import Path

from modgraph.errors import ConfigError, RegistryCorruptError

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,31}$")  # a modality name: a graph node and a file name
MAX_REGISTRY_FILE = 4 << 30  # bytes: far above any model modgraph trains
MAX_HEADER = 16 << 20  # bytes of a safetensors JSON header
MAX_PARAMETERS = 500_000_000  # a module rebuilt from a header (about 2 GB of fp32 weights)


def check_name(name: str, what: str = "modality") -> str:
    """``name`` if it is a modality name (so it names a file inside the registry), else a one-line error."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        shown = repr(name)[:60]
        raise ConfigError(f"{shown} is not a {what} name (lower-case letters, digits and _, starting with a letter, "
                          f"at most 32 characters); see modgraph graph for the registry's modalities")
    return name


def real_folder(path: Path) -> Path:
    """``path`` if it is not a symbolic link (a registry's folders never are; a link could lead anywhere)."""
    if path.is_symlink():
        raise RegistryCorruptError(f"{path} is a symbolic link; modgraph does not follow links inside a registry "
                                   f"(replace it with the folder it points to)")
    return path


def regular_file(path: Path, max_bytes: int = MAX_REGISTRY_FILE) -> os.stat_result:
    """The file's status if it is a regular file (not a link, FIFO or device) of at most ``max_bytes``."""
    info = os.lstat(path)  # FileNotFoundError passes through: callers say what is missing
    if not stat.S_ISREG(info.st_mode):
        kind = "a symbolic link" if stat.S_ISLNK(info.st_mode) else "not a regular file"
        raise RegistryCorruptError(f"registry file {path} is {kind}; remove it (modgraph reads only regular files)")
    if info.st_size > max_bytes:
        raise RegistryCorruptError(f"registry file {path} is {info.st_size:,} bytes, more than the "
                                   f"{max_bytes:,} a registry file may hold; remove it")
    return info


def check_safetensors_header(path: Path, size: int) -> None:
    """Refuse a safetensors file whose declared header is larger than the file or than MAX_HEADER."""
    with open(path, "rb") as fh:
        head = fh.read(8)
    if len(head) < 8:
        raise RegistryCorruptError(f"registry file {path} is unreadable (truncated: {size} bytes); delete it and "
                                   f"retrain it")
    (length,) = struct.unpack("<Q", head)
    if length > MAX_HEADER or length > size - 8:
        raise RegistryCorruptError(f"registry file {path} is unreadable (it declares a {length:,}-byte header, "
                                   f"more than it can hold); delete it and retrain it")


def follow_umask(path: Path) -> None:
    """Give a file written by safetensors (always 0600) the permissions the umask allows, like any new file."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)


def check_parameters(build, path: Path, what: str) -> None:
    """Refuse a header whose config would build a module larger than MAX_PARAMETERS (built on ``meta``, free)."""
    import torch

    with torch.device("meta"):
        module = build()
    count = sum(p.numel() for p in module.parameters())
    if count > MAX_PARAMETERS:
        raise RegistryCorruptError(f"registry file {path} describes a {what} of {count:,} parameters, more than "
                                   f"the {MAX_PARAMETERS:,} modgraph loads; delete it")
