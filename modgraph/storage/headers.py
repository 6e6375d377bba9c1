"""Registry file headers read and rewritten without torch: the 8-byte length, then JSON.

``graph``, ``route`` and ``card`` answer from headers alone, so reading one must not import torch.
A node's header also records where its data was (``data.root``): a hint for ``eval`` and ``serve``
on this machine, removed from a copy that leaves it (:func:`shareable_bytes`).
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

from modgraph.storage.safe_io import MAX_HEADER, open_regular, parse_json

_DTYPES = {"F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U64", "U32", "U16", "U8", "BOOL"}


def _parse(data: bytes, size: int, what: str) -> dict:
    """The header JSON of a safetensors file of ``size`` bytes whose start is ``data``, checked."""
    if len(data) < 8:
        raise ValueError(f"truncated: {size} bytes")
    (length,) = struct.unpack("<Q", data[:8])
    if length > MAX_HEADER or length > size - 8 or len(data) < 8 + length:
        raise ValueError(f"it declares a {length:,}-byte header, more than it can hold")
    header = parse_json(data[8:8 + length], f"registry file {what}: header")  # nesting and size bounded
    if not isinstance(header, dict):
        raise ValueError(f"its header is not a JSON object ({what})")
    meta = header.get("__metadata__") or {}
    if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise ValueError("its metadata is not a table of strings")
    for name, info in header.items():
        if name == "__metadata__":
            continue
        ok = (isinstance(info, dict) and info.get("dtype") in _DTYPES and isinstance(info.get("shape"), list)
              and isinstance(info.get("data_offsets"), list) and len(info["data_offsets"]) == 2
              and all(isinstance(v, int) and v >= 0 for v in [*info["shape"], *info["data_offsets"]])
              and info["data_offsets"][0] <= info["data_offsets"][1] <= size - 8 - length)
        if not ok:
            raise ValueError(f"tensor {name[:40]!r} is described wrongly in its header")
    return header


def _head(path: Path) -> tuple[bytes, int]:
    with open_regular(path) as fh:  # never a link, and a FIFO swapped in is refused, not waited on
        size = os.fstat(fh.fileno()).st_size
        first = fh.read(8)
        if len(first) < 8:
            return first, size
        (length,) = struct.unpack("<Q", first)
        return first + fh.read(min(length, MAX_HEADER)), size


def metadata_of(data: bytes, size: int, what: str) -> dict[str, str]:
    """The string metadata of a safetensors file of ``size`` bytes from its first bytes ``data`` (a stream's)."""
    return dict(_parse(data, size, what).get("__metadata__") or {})


def file_metadata(path: Path) -> dict[str, str]:
    """The string metadata of a safetensors file, read without loading tensors (or torch).

    Raises ``ValueError`` (or ``OSError``) for a file that is not a well-formed safetensors file.
    """
    data, size = _head(Path(path))
    return dict(_parse(data, size, str(path)).get("__metadata__") or {})


def shareable_bytes(path: Path) -> bytes:
    """The bytes of a registry file with the local hint ``data.root`` removed from its header."""
    with open_regular(path) as fh:
        data = fh.read()
    header = _parse(data, len(data), str(path))
    (length,) = struct.unpack("<Q", data[:8])
    meta = header.get("__metadata__") or {}
    try:
        stored = parse_json(meta.get("data", "{}"), f"registry file {path}: header field 'data'")
    except ValueError:
        return data
    if not isinstance(stored, dict) or "root" not in stored:
        return data
    stored.pop("root")
    header["__metadata__"] = {**meta, "data": json.dumps(stored)}
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)  # safetensors pads its header to 8 bytes
    return struct.pack("<Q", len(text)) + text + data[8 + length:]


def trained_data_root(headers: list[dict]) -> Path | None:
    """The first ``data.root`` among node headers that is a folder here, or None."""
    for meta in headers:
        data = meta.get("data")
        root = data.get("root") if isinstance(data, dict) else None
        if isinstance(root, str) and root and Path(root).is_dir():
            return Path(root)
    return None
