"""The feature cache: where data and cached features live, and how a split is cached and read.

A modality's features for a split are computed once and written under the cache folder as
safetensors shards with a manifest; a split too large for memory is then read lazily, as
:class:`~modgraph.features.shards.ShardedRows`. The public surface: :func:`load_split` (and
:func:`open_cache`, :func:`cache_folder`), the locations (:func:`default_data_root`,
:func:`default_cache_dir`, :func:`in_memory_limit`), :func:`concatenate_chunks`,
:func:`fit_statistics`, :func:`normalized`, and the shard file format (:func:`write_shard`,
:func:`read_header`, :func:`read_tensor`) that the confidence cache of ``targets`` reuses.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from filelock import FileLock
from safetensors.torch import save

from modgraph.storage.atomic import atomic_path
from modgraph.errors import ConfigError, FeatureCacheError
from modgraph.features.shards import Shard, ShardedRows, is_rows, pread_exact
from modgraph.modality import FeatureSet, Modality
from modgraph.runtime.progress import Progress, phase
from modgraph.storage.journal import TEMPORARY, remove
from modgraph.storage.safe_io import open_regular, parse_json, read_bounded

__all__ = ["CACHE_FORMAT", "TensorEntry", "cache_folder", "concatenate_chunks", "default_cache_dir",
           "default_data_root", "fit_statistics", "forget_features", "in_memory_limit", "load_split", "normalized",
           "open_cache", "read_header", "read_tensor", "write_shard"]

CACHE_FORMAT = "2"  # a folder of shards and a manifest
FEATURE_MANIFEST = "manifest.json"
SHARD_BYTES = 64 << 20  # features of a split computed in one go are cut into shards of about this size
DEFAULT_IN_MEMORY_MB = 1024  # larger splits are read lazily (MODGRAPH_FEATURES_IN_MEMORY_MB overrides)
MAX_SHARD_HEADER = 100_000_000  # bytes of a shard's header or of the manifest (both are read whole)
_NUMPY_DTYPES = {"F32": np.float32, "I64": np.int64, "BOOL": np.bool_}


def default_data_root() -> Path:
    """``MODGRAPH_DATA``, else the user config's data root (``modgraph config``), else a user cache folder."""
    from modgraph.runtime.user_config import configured

    env = os.environ.get("MODGRAPH_DATA") or configured("data-root")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("modgraph")) / "data"


def default_cache_dir() -> Path:
    env = os.environ.get("MODGRAPH_CACHE")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("modgraph")) / "features"


def in_memory_limit() -> int:
    """Bytes of features a split may have and still be loaded whole into memory."""
    raw = os.environ.get("MODGRAPH_FEATURES_IN_MEMORY_MB")
    try:
        mb = float(raw) if raw else DEFAULT_IN_MEMORY_MB
    except ValueError:
        raise ConfigError(f"MODGRAPH_FEATURES_IN_MEMORY_MB must be a number of megabytes, not {raw!r}") from None
    return int(mb * (1 << 20))


def _digest(modality: Modality, root: Path, split: str, version: str) -> str:
    key = f"{version}|{modality.cache_key()}|{Path(root).resolve()}|{split}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def cache_folder(modality: Modality, root: Path, split: str, cache_dir: Path) -> Path:
    return Path(cache_dir) / f"{modality.name}-{split}-{_digest(modality, root, split, CACHE_FORMAT)}"


def forget_features(name: str, cache_dir: Path | None = None) -> list[Path]:
    """Delete every cached split of modality ``name`` (all versions, options and data roots); return what went.

    ``add-modality --rebuild-features`` calls it. Entries are ``<name>-<split>-<digest>``
    (folders, their ``.lock`` files, and format-1 ``.safetensors`` files); names hold no ``-``, so no
    other modality's entries match.
    """
    import shutil

    from modgraph.modality import NAME_PATTERN

    if not NAME_PATTERN.match(name):
        raise ConfigError(f"{name!r} is not a modality name; nothing was deleted from the feature cache")
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    gone = sorted(p for split in ("train", "test") for p in cache_dir.glob(f"{name}-{split}-*"))
    for path in gone:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    return gone


# -- shard files ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class TensorEntry:
    """Where one tensor of a safetensors file lies: dtype, shape and absolute byte range."""

    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int


def read_header(path: str | Path) -> tuple[dict[str, TensorEntry], dict[str, str]]:
    """The tensors and metadata of a safetensors file, from its header alone.

    Parsed here rather than by ``safe_open``, which does not tell where a tensor's bytes lie:
    :class:`ShardedRows` reads rows at those offsets. Raises :class:`FeatureCacheError` when
    the file is shorter than its header says (a shard that was cut short is never trusted).
    """
    path = Path(path)
    try:
        with open_regular(path, "feature cache shard", FeatureCacheError) as fh:
            (size,) = struct.unpack("<Q", fh.read(8))
            if size > MAX_SHARD_HEADER:
                raise ValueError("header too large")
            header = parse_json(fh.read(size), f"feature cache shard {path}", FeatureCacheError, MAX_SHARD_HEADER)
            file_size = os.fstat(fh.fileno()).st_size
    except (OSError, ValueError, struct.error, UnicodeDecodeError) as exc:
        raise FeatureCacheError(f"feature cache shard {path} is unreadable ({exc}); it will be rebuilt") from None
    metadata = header.pop("__metadata__", None) or {}
    base = 8 + size
    entries = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        entries[name] = TensorEntry(info["dtype"], tuple(info["shape"]), base + begin, base + end)
    if entries and max(e.end for e in entries.values()) > file_size:
        raise FeatureCacheError(f"feature cache shard {path} is truncated; it will be rebuilt")
    return entries, metadata


def read_tensor(path: str | Path, entry: TensorEntry) -> torch.Tensor:
    """One whole tensor of a shard, read into memory (small tensors: labels, origins)."""
    out = np.empty(entry.shape, dtype=_NUMPY_DTYPES[entry.dtype])
    fd = os.open(str(path), os.O_RDONLY)
    try:
        pread_exact(fd, memoryview(out.reshape(-1).view(np.uint8)), entry.start, str(path))
    finally:
        os.close(fd)
    return torch.from_numpy(out)


def write_shard(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """Write a shard atomically: a reader (or a resumed build) sees a whole shard or none."""
    data = save({k: v.contiguous() for k, v in tensors.items()}, metadata=metadata)  # save_file would leave
    with atomic_path(path) as tmp:  # a .tmpXXXXXX of its own behind if killed
        tmp.write_bytes(data)


def _x_entry(path: Path, entries: dict[str, TensorEntry], row_shape: tuple[int, ...] | None) -> TensorEntry:
    """The ``x`` tensor of a shard: float32 rows, shaped like the other shards' rows (``row_shape``, if known)."""
    entry = entries.get("x")
    if entry is None or entry.dtype != "F32":
        raise FeatureCacheError(f"feature cache shard {path} holds no float32 'x' tensor; it will be rebuilt")
    if row_shape is not None and entry.shape[1:] != row_shape:
        raise FeatureCacheError(f"feature cache shard {path} has rows shaped {entry.shape[1:]}, "
                                f"the others {row_shape}; delete the cache folder to rebuild it")
    return entry


# -- reading a built cache ---------------------------------------------------------------------
def open_cache(folder: Path, in_memory_bytes: int | None = None) -> FeatureSet | None:
    """The split cached in ``folder``, or None when it is missing, unfinished or damaged.

    Labels, origins and groups are read into memory; the rows themselves are loaded whole
    when they take at most ``in_memory_bytes``, else left on disk as :class:`ShardedRows`.
    """
    try:
        manifest = parse_json(read_bounded(folder / FEATURE_MANIFEST, MAX_SHARD_HEADER, "feature cache manifest",
                                           FeatureCacheError), "feature cache manifest", FeatureCacheError,
                              MAX_SHARD_HEADER)
        if manifest.get("format") != CACHE_FORMAT:
            return None
        store, ys, origins, augmented, groups = _read_shards([folder / name for name in manifest["shards"]])
        if len(store) != manifest["rows"]:
            return None
    except (OSError, ValueError, KeyError, TypeError, FeatureCacheError):
        return None
    limit = in_memory_limit() if in_memory_bytes is None else in_memory_bytes
    x = store.load() if store.nbytes <= limit else store
    return FeatureSet(x=x, y=torch.cat(ys), origin=torch.cat(origins), augmented=torch.cat(augmented),
                      groups=groups)


def _read_shards(paths: list[Path]) -> tuple[ShardedRows, list, list, list, dict[str, list]]:
    """The rows of these shards (left on disk) and their labels, origins, flags and groups (read).

    Each header is read once; a truncated shard fails here, before any row is read.
    """
    shards, row_shape, ys, origins, augmented, groups = [], None, [], [], [], {}
    for path in paths:
        entries, meta = read_header(path)
        x = _x_entry(path, entries, row_shape)
        row_shape = x.shape[1:]
        shards.append(Shard(str(path), x.shape[0], x.start))
        ys.append(read_tensor(path, entries["y"]))
        origins.append(read_tensor(path, entries["origin"]))
        augmented.append(read_tensor(path, entries["augmented"]))
        for key, values in parse_json(meta.get("groups", "{}"), f"feature cache shard {path}: groups",
                                      FeatureCacheError, MAX_SHARD_HEADER).items():
            groups.setdefault(key, []).extend(values)
    if row_shape is None:
        raise FeatureCacheError("a feature store needs at least one shard")
    return ShardedRows(shards, row_shape), ys, origins, augmented, groups


def _shard_rows(path: Path, key: str, index: int) -> int | None:
    """Rows of a finished shard written for this cache key and chunk, else None (rebuild it)."""
    try:
        entries, meta = read_header(path)
    except FeatureCacheError:
        return None
    if meta.get("key") != key or meta.get("chunk") != str(index) or "x" not in entries:
        return None
    return entries["x"].shape[0]


# -- building -----------------------------------------------------------------------------------
def _shard_tensors(features: FeatureSet, origin_offset: int) -> dict[str, torch.Tensor]:
    return {"x": torch.as_tensor(features.x).detach().to("cpu", torch.float32), "y": features.y.long().cpu(),
            "origin": features.origin.long().cpu() + origin_offset, "augmented": features.augmented.bool().cpu()}


def _check_chunk(modality: Modality, features: FeatureSet, index: int) -> None:
    shape = tuple(features.x.shape[1:])
    if shape != tuple(modality.input_shape):
        raise ConfigError(f"{modality.name}: feature chunk {index} has rows shaped {shape}, the modality declares "
                          f"{tuple(modality.input_shape)} (a plugin bug)")
    if len(features) and (int(features.origin.min()) < 0 or int(features.origin.max()) >= len(features)):
        raise ConfigError(f"{modality.name}: feature chunk {index} has origins outside 0..{len(features) - 1}; "
                          f"origins count rows within their chunk (a plugin bug)")


def _write_manifest(folder: Path, key: str, names: list[str], rows: int) -> None:
    with atomic_path(folder / FEATURE_MANIFEST) as tmp:
        tmp.write_text(json.dumps({"format": CACHE_FORMAT, "key": key, "shards": names, "rows": rows}))


def _build_chunked(modality: Modality, chunks, folder: Path, key: str, desc: str, progress: bool) -> None:
    names = [f"shard-{i:05d}.safetensors" for i in range(len(chunks))]
    done = [_shard_rows(folder / name, key, i) for i, name in enumerate(names)]
    built = sum(r is not None for r in done)
    rows = 0
    with Progress(len(chunks), desc, progress, unit="shard", initial=built) as report:
        report.say(f"{len(chunks)} shard(s)" + (f", {built} already built" if built else ""))
        for i, (make, name) in enumerate(zip(chunks, names)):
            if done[i] is None:
                with phase(f"{desc}: shard {i + 1} of {len(chunks)}", progress, summary=False):
                    features = make()
                _check_chunk(modality, features, i)
                groups = {k: list(v) for k, v in features.groups.items()}
                write_shard(folder / name, _shard_tensors(features, rows),
                            {"key": key, "chunk": str(i), "groups": json.dumps(groups)})
                done[i] = len(features)
                report.update()
                if report.passed_tenth():
                    report.log(f"{100 * report.n // report.total}%", detail=f"{report.n}/{report.total} shards, ")
            rows += done[i]
    _write_manifest(folder, key, names, rows)


def _write_whole(features: FeatureSet, folder: Path, key: str) -> None:
    """A split computed in one go, cut into shards of about ``SHARD_BYTES``."""
    row_bytes = max(1, 4 * features.x[0].numel()) if len(features) else 1
    per_shard = max(1, SHARD_BYTES // row_bytes)
    names, tensors = [], _shard_tensors(features, 0)
    for i, start in enumerate(range(0, max(1, len(features)), per_shard)):
        name = f"shard-{i:05d}.safetensors"
        part = {k: v[start:start + per_shard] for k, v in tensors.items()}
        groups = {k: list(v[start:start + per_shard]) for k, v in features.groups.items()}
        write_shard(folder / name, part, {"key": key, "chunk": str(i), "groups": json.dumps(groups)})
        names.append(name)
    _write_manifest(folder, key, names, len(features))


def concatenate_chunks(chunks) -> FeatureSet:
    """Every chunk in one in-memory FeatureSet, origins offset as the cache does."""
    parts, rows = [], 0
    for make in chunks:
        f = make()
        parts.append((f, rows))
        rows += len(f)
    keys = parts[0][0].groups.keys() if parts else []
    return FeatureSet(x=torch.cat([f.x for f, _ in parts]), y=torch.cat([f.y for f, _ in parts]),
                      origin=torch.cat([f.origin + offset for f, offset in parts]),
                      augmented=torch.cat([f.augmented for f, _ in parts]),
                      groups={k: [v for f, _ in parts for v in f.groups[k]] for k in keys})


def load_split(modality: Modality, root: Path, split: str, download: bool = False,
               cache_dir: Path | None = None, use_cache: bool = True, progress: bool = False,
               in_memory_bytes: int | None = None) -> FeatureSet:
    """The split's features, from the cache when it is complete, else computed and cached.

    A modality that gives its features in chunks (``Modality.feature_chunks``) is cached
    chunk by chunk, so an interrupted build resumes with the first unfinished shard.
    Concurrent builds of one split wait for each other on a file lock.
    """
    if not use_cache:
        chunks = modality.feature_chunks(Path(root), split, download=download)
        return modality.load_features(Path(root), split, download=download) if chunks is None \
            else concatenate_chunks(chunks)
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    folder = cache_folder(modality, Path(root), split, cache_dir)
    cached = open_cache(folder, in_memory_bytes)
    if cached is not None:
        return cached
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):
        cached = open_cache(folder, in_memory_bytes)  # another process may have built it meanwhile
        if cached is not None:
            return cached
        for stale in folder.iterdir():  # left by a build that was killed mid-write
            if TEMPORARY.match(stale.name):
                remove(stale)
        key = f"{CACHE_FORMAT}|{modality.cache_key()}|{split}"
        desc = f"{modality.name} {split} feature cache"
        chunks = modality.feature_chunks(Path(root), split, download=download)
        if chunks is not None and len(chunks) > 1:
            _build_chunked(modality, chunks, folder, key, desc, progress)
            built = open_cache(folder, in_memory_bytes)
            if built is None:
                raise FeatureCacheError(f"the feature cache {folder} could not be read back after it was built; "
                                        f"delete the folder and run the command again")
            return built
        with phase(f"{modality.name}: computing its {split} features (kept in the feature cache)", progress):
            features = modality.load_features(Path(root), split, download=download) if chunks is None \
                else concatenate_chunks(chunks)
        _write_whole(features, folder, key)
        return features


def fit_statistics(modality: Modality, x) -> dict[str, list[float]]:
    """Normalisation statistics of training features, streamed when they are read lazily."""
    return modality.fit_normalization_stream(x.chunks()) if is_rows(x) else modality.fit_normalization(x)


def normalized(modality: Modality, x, stats: dict[str, list[float]]):
    """Model inputs from raw features; lazily (per batch read) for features left on disk."""
    if is_rows(x):
        return x.map(lambda batch: modality.normalize(batch, stats))
    return modality.normalize(x, stats)
