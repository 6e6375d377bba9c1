"""Guards for files modgraph did not write itself: names, links, special files and sizes.

A registry may come from someone else (``import``, a shared folder), so nothing in it is
trusted: names become paths only when they are modality names, only regular files are
opened, and every size is bounded before anything is allocated.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
import struct
from itertools import accumulate
from pathlib import Path

from modgraph.errors import ConfigError, ModgraphError, RegistryCorruptError

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,31}$")  # a modality name: a graph node and a file name
MAX_REGISTRY_FILE = 4 << 30  # bytes: far above any model modgraph trains
MAX_HEADER = 16 << 20  # bytes of a safetensors JSON header
MAX_PARAMETERS = 500_000_000  # a module rebuilt from a header (about 2 GB of fp32 weights)
MAX_SMALL_FILE = 1 << 20  # bytes of a journal, a manifest, a plan spec or an options file
MAX_JSON_DEPTH = 64  # nested arrays and objects in any JSON or TOML modgraph parses (its own files use 5)
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
_STRINGS = {"json": re.compile(r'"(?:[^"\\]++|\\.)*+"', re.S),
            "toml": re.compile(r'"""(?:[^\\]|\\.)*?"""|\'\'\'.*?\'\'\'|"(?:[^"\\\n]++|\\.)*+"|\'[^\'\n]*+\'|#[^\n]*+',
                               re.S)}
_BRACKETS = re.compile(r"[^\[\]{}]++")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


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
    with open_regular(path) as fh:
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


def open_regular(path: str | Path, what: str = "registry file", error: type[ModgraphError] = RegistryCorruptError,
                 follow: bool = False):
    """``path`` opened for reading (binary) if it is a regular file, else one ``error`` line.

    Checked before opening (opening a device may act on it) and again on the open file; opened
    without blocking, so a FIFO swapped in meanwhile is refused, never waited on, and without
    following a link unless ``follow`` (a file a user names may be a link to a regular file; a
    file inside a registry may not). A missing file raises ``FileNotFoundError``.
    """
    refusal = f"{what} {path} is not a regular file; modgraph reads only regular files (no FIFO, device or folder)"
    linked = f"{what} {path} is a symbolic link; modgraph does not follow links here"
    try:
        info = os.stat(path) if follow else os.lstat(path)
        if not stat.S_ISREG(info.st_mode):
            raise error(linked if stat.S_ISLNK(info.st_mode) else refusal)
        fd = os.open(path, _OPEN_FLAGS & ~os.O_NOFOLLOW if follow else _OPEN_FLAGS)
    except FileNotFoundError:
        raise
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # replaced by a link since the check
            raise error(linked) from None
        raise error(f"{what} {path} is unreadable ({exc.strerror or exc}); check its permissions") from None
    fh = os.fdopen(fd, "rb")
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        fh.close()
        raise error(refusal)
    return fh


def read_bounded(path: str | Path, max_bytes: int = MAX_SMALL_FILE, what: str = "registry file",
                 error: type[ModgraphError] = RegistryCorruptError, follow: bool = False) -> bytes:
    """The bytes of ``path`` if it is a regular file (:func:`open_regular`) of at most ``max_bytes``, else one
    ``error`` line; never more than ``max_bytes`` + 1 bytes are read, whatever the file claims."""
    with open_regular(path, what, error, follow) as fh:
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise error(f"{what} {path} is larger than the {max_bytes:,} bytes modgraph reads")
    return data


def _depth(text: str, syntax: str) -> int:
    """How deeply arrays and objects nest in ``text`` (brackets inside strings and comments do not count)."""
    brackets = _BRACKETS.sub("", _STRINGS[syntax].sub("", text))
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0)


def _nesting(value) -> int:
    """How deeply lists and dicts nest in a parsed value (walked without recursion)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def parse_json(text: str | bytes, where: str, error: type[ModgraphError] = RegistryCorruptError,
               max_bytes: int = MAX_HEADER):
    """``text`` parsed as JSON, refusing more than ``max_bytes`` or nesting deeper than ``MAX_JSON_DEPTH``.

    Every failure is one ``error`` line that starts with ``where`` (say "registry file X: field 'config'").
    """
    return _parse(text, "json", where, error, max_bytes)


def parse_toml(text: str | bytes, where: str, error: type[ModgraphError] = ConfigError,
               max_bytes: int = MAX_SMALL_FILE) -> dict:
    """``text`` parsed as TOML, bounded like :func:`parse_json`."""
    return _parse(text, "toml", where, error, max_bytes)


def load_bounded(path: str | Path, what: str, error: type[ModgraphError] = ConfigError,
                 max_bytes: int = MAX_SMALL_FILE):
    """A JSON (``.json``) or TOML (any other suffix) file a user names (a link to a regular file is followed),
    read with :func:`read_bounded`, parsed bounded."""
    data = read_bounded(path, max_bytes, what, error, follow=True)
    syntax = "json" if Path(path).suffix.lower() == ".json" else "toml"
    return _parse(data, syntax, f"{what} {path}", error, max_bytes)


def _parse(text: str | bytes, syntax: str, where: str, error: type[ModgraphError], max_bytes: int):
    if len(text) > max_bytes:
        raise error(f"{where} is larger than the {max_bytes:,} bytes modgraph parses")
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        if _depth(text, syntax) > MAX_JSON_DEPTH:
            raise error(f"{where} nests arrays or tables deeper than {MAX_JSON_DEPTH} levels; modgraph refuses it")
        if syntax == "json":
            return json.loads(text)
        import tomllib

        parsed = tomllib.loads(text)
        if _nesting(parsed) > MAX_JSON_DEPTH:  # dotted keys (a.b.c = 1) nest without brackets
            raise error(f"{where} nests tables deeper than {MAX_JSON_DEPTH} levels; modgraph refuses it")
        return parsed
    except UnicodeDecodeError as exc:
        raise error(f"{where} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except RecursionError:
        raise error(f"{where} nests too deeply; modgraph refuses it") from None
    except ValueError as exc:  # JSONDecodeError and TOMLDecodeError
        first = " ".join(str(exc).split())[:200]
        raise error(f"{where} is not valid {syntax} ({first})") from None
