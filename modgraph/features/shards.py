"""A lazy, tensor-like view of float32 rows that lie in files at known byte offsets.

:class:`ShardedRows` reads only the rows a batch asks for (positioned reads, no memory map),
so memory is bounded by the batch. The feature cache (:mod:`modgraph.features.cache`) makes them.
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch

from modgraph.errors import FeatureCacheError

_MAX_OPEN_FILES = 64
# Linux reads at most this many bytes in one call; longer reads are split.
_MAX_READ = 0x7FFFF000


def pread_exact(fd: int, buffer: memoryview, offset: int, path: str) -> None:
    """Fill ``buffer`` from ``offset`` of an open file, or fail naming the file."""
    done, total = 0, len(buffer)
    while done < total:
        n = os.preadv(fd, [buffer[done:done + _MAX_READ]], offset + done)
        if n <= 0:
            raise FeatureCacheError(f"feature cache shard {path} ended early (read {done} of {total} bytes); "
                                    f"delete it and run the command again to rebuild it")
        done += n


@dataclass(frozen=True)
class Shard:
    """The ``x`` rows of one shard file: how many, and the byte offset of the first."""

    path: str
    rows: int
    offset: int


class _OpenFiles:
    """File descriptors of the shards read so far (at most a few dozen open at once)."""

    def __init__(self):
        self.fds: OrderedDict[str, int] = OrderedDict()
        self.pid = os.getpid()

    def get(self, path: str) -> int:
        if self.pid != os.getpid():  # a forked worker opens its own
            self.fds, self.pid = OrderedDict(), os.getpid()
        fd = self.fds.get(path)
        if fd is None:
            try:
                fd = os.open(path, os.O_RDONLY)
            except OSError as exc:
                raise FeatureCacheError(f"feature cache shard {path} is gone ({exc}); run the command again "
                                        f"to rebuild the cache") from None
            self.fds[path] = fd
            while len(self.fds) > _MAX_OPEN_FILES:
                os.close(self.fds.popitem(last=False)[1])
        else:
            self.fds.move_to_end(path)
        return fd

    def close(self) -> None:
        if self.pid == os.getpid():
            for fd in self.fds.values():
                os.close(fd)
        self.fds.clear()

    def __del__(self):
        try:
            self.close()
        except OSError:
            pass


class ShardedRows:
    """Rows of float32 features spread over shard files, indexed like a tensor.

    ``len(x)``, ``x.shape``, ``x[i]``, ``x[a:b]``, ``x[long_tensor]`` and ``x[bool_mask]``
    behave as on the tensor the shards hold, reading only the rows asked for. ``take``
    (a subset of rows), ``map`` (a function applied to every batch read, such as
    normalisation) and ``to(device)`` return new views without reading anything.
    """

    def __init__(self, shards: list[Shard], row_shape: tuple[int, ...], index: np.ndarray | None = None,
                 transforms: tuple[Callable[[torch.Tensor], torch.Tensor], ...] = (),
                 device: torch.device | str = "cpu", files: _OpenFiles | None = None):
        self.shards = list(shards)
        self.row_shape = tuple(int(d) for d in row_shape)
        self.row_bytes = 4 * math.prod(self.row_shape)
        self._starts = np.cumsum([0] + [s.rows for s in self.shards]).astype(np.int64)
        self._index = index
        self._transforms = tuple(transforms)
        self.device = torch.device(device)
        self._files = files if files is not None else _OpenFiles()

    # -- what a tensor answers --------------------------------------------------------------
    def __len__(self) -> int:
        return int(self._starts[-1]) if self._index is None else len(self._index)

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self), *self.row_shape))

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    @property
    def ndim(self) -> int:
        return 1 + len(self.row_shape)

    def dim(self) -> int:
        return self.ndim

    @property
    def nbytes(self) -> int:
        """Bytes the rows would take in memory (nothing is held)."""
        return len(self) * self.row_bytes

    def __repr__(self) -> str:
        return (f"ShardedRows(shape={tuple(self.shape)}, shards={len(self.shards)}, device={self.device}"
                f"{', mapped' if self._transforms else ''})")

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_files"] = None  # descriptors do not cross processes
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._files = _OpenFiles()

    # -- views ------------------------------------------------------------------------------
    def _view(self, **changes) -> "ShardedRows":
        args = dict(shards=self.shards, row_shape=self.row_shape, index=self._index,
                    transforms=self._transforms, device=self.device, files=self._files)
        args.update(changes)
        return ShardedRows(**args)

    def take(self, rows) -> "ShardedRows":
        """The view of some rows (positions in this view), in the order given; nothing is read."""
        return self._view(index=self._base_rows(self._positions(rows)))

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> "ShardedRows":
        """A view whose batches pass through ``fn`` (which must keep the row shape)."""
        return self._view(transforms=self._transforms + (fn,))

    def to(self, device=None, *args, **kwargs) -> "ShardedRows":
        """A view whose batches land on ``device`` (dtype requests other than float32 are refused)."""
        if isinstance(device, torch.dtype):
            device, args = None, (device, *args)
        dtype = kwargs.get("dtype") or next((a for a in args if isinstance(a, torch.dtype)), None)
        if dtype is not None and dtype != torch.float32:
            raise TypeError(f"ShardedRows holds float32 rows; convert batches to {dtype} after indexing")
        device = kwargs.get("device", device)
        return self if device is None or torch.device(device) == self.device else self._view(device=device)

    def cpu(self) -> "ShardedRows":
        return self.to("cpu")

    def float(self) -> "ShardedRows":
        return self

    # -- reading ----------------------------------------------------------------------------
    def __getitem__(self, key) -> torch.Tensor:
        if isinstance(key, tuple):  # x[rows, ...]: read the rows, then index within them
            rows = self[key[0]]
            return rows[(slice(None), *key[1:])] if rows.dim() == self.ndim else rows[key[1:]]
        if isinstance(key, (int, np.integer)):
            return self._read_positions(self._positions([int(key)]))[0]
        return self._read_positions(self._positions(key))

    def __iter__(self) -> Iterator[torch.Tensor]:
        for batch in self.chunks():
            yield from batch

    def chunks(self, rows: int | None = None) -> Iterator[torch.Tensor]:
        """Consecutive batches of rows (about 64 MB each by default), transformed like indexing."""
        rows = rows or max(1, (64 << 20) // max(1, self.row_bytes))
        for start in range(0, len(self), rows):
            yield self[start:start + rows]

    def load(self) -> torch.Tensor:
        """Every row in one tensor: only for data known to fit in memory."""
        return self[:]

    def _positions(self, key) -> np.ndarray:
        n = len(self)
        if isinstance(key, slice):
            return np.arange(*key.indices(n), dtype=np.int64)
        if isinstance(key, torch.Tensor):
            key = key.detach().cpu()
            if key.dtype == torch.bool:
                if key.shape != (n,):
                    raise IndexError(f"a boolean mask of shape {tuple(key.shape)} does not index {n} rows")
                key = key.nonzero().flatten()
            key = key.numpy()
        positions = np.asarray(key)
        if positions.dtype == np.bool_:
            if positions.shape != (n,):
                raise IndexError(f"a boolean mask of shape {positions.shape} does not index {n} rows")
            positions = np.flatnonzero(positions)
        if positions.size and not np.issubdtype(positions.dtype, np.integer):
            raise IndexError(f"rows are indexed by integers, slices or masks, not {positions.dtype}")
        positions = positions.astype(np.int64).reshape(-1)
        if positions.size:
            low, high = positions.min(), positions.max()
            if low < -n or high >= n:
                raise IndexError(f"row {high if high >= n else low} is out of range for {n} rows")
            positions = np.where(positions < 0, positions + n, positions)
        return positions

    def _base_rows(self, positions: np.ndarray) -> np.ndarray:
        return positions if self._index is None else self._index[positions]

    def _read_positions(self, positions: np.ndarray) -> torch.Tensor:
        x = self._read_rows(self._base_rows(positions))
        if self.device.type != "cpu":
            x = x.to(self.device, non_blocking=False)
        for fn in self._transforms:
            x = fn(x)
        return x

    def _read_rows(self, rows: np.ndarray) -> torch.Tensor:
        """Rows of the shards, in the order asked: one positioned read per run of consecutive rows."""
        out = np.empty((len(rows), *self.row_shape), dtype=np.float32)
        if not len(rows):
            return torch.from_numpy(out)
        order = np.argsort(rows, kind="stable")
        ordered = rows[order]
        in_order = bool((order == np.arange(len(rows))).all())
        buffer = out if in_order else np.empty_like(out)
        flat = buffer.reshape(len(rows), -1).view(np.uint8)
        shard_of = np.searchsorted(self._starts, ordered, side="right") - 1
        breaks = np.flatnonzero((np.diff(ordered) != 1) | (np.diff(shard_of) != 0)) + 1
        for begin, end in zip(np.r_[0, breaks], np.r_[breaks, len(ordered)]):
            s = int(shard_of[begin])
            shard = self.shards[s]
            offset = shard.offset + int(ordered[begin] - self._starts[s]) * self.row_bytes
            pread_exact(self._files.get(shard.path), memoryview(flat[begin:end].reshape(-1)), offset, shard.path)
        if not in_order:
            out[order] = buffer
        return torch.from_numpy(out)


def is_rows(x) -> bool:
    """Whether ``x`` is a lazy :class:`ShardedRows` rather than a tensor."""
    return isinstance(x, ShardedRows)
