"""Data-parallel training under torchrun: the process group, each rank's share of a batch, rank 0's word.

Single-process runs pass through every function here unchanged. Under torchrun (``WORLD_SIZE`` > 1)
each process trains a DistributedDataParallel copy on its share of every global batch; only rank 0 writes.
"""

from __future__ import annotations

import atexit
import os
from contextlib import contextmanager

import torch
from torch import nn

from modgraph.errors import ConfigError

# Other ranks draw different noise (reparameterisation, augmentation) from rank 0.
_RANK_SEED_STRIDE = 1_000_003


def _initialized() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def world_size() -> int:
    if _initialized():
        return torch.distributed.get_world_size()
    return int(os.environ.get("WORLD_SIZE") or 1)


def rank() -> int:
    if _initialized():
        return torch.distributed.get_rank()
    return int(os.environ.get("RANK") or 0)


def is_main() -> bool:
    """True in a single process and in rank 0, the one process that writes and prints."""
    return rank() == 0


def launched() -> bool:
    """Whether this process is one of several data-parallel ranks (torchrun sets ``WORLD_SIZE``)."""
    return world_size() > 1


def local_device(device: torch.device) -> torch.device:
    """The GPU of this rank on its machine (``cuda:LOCAL_RANK``) when torchrun started it; else ``device``."""
    if device.type != "cuda" or device.index is not None or "LOCAL_RANK" not in os.environ or not launched():
        return device
    local = int(os.environ["LOCAL_RANK"])
    count = torch.cuda.device_count()
    if local >= count:
        raise ConfigError(f"torchrun started more processes on this machine than it has GPUs ({count}); "
                          f"use --nproc {count} (one process per GPU) or --device cpu")
    return torch.device("cuda", local)


def setup(device: torch.device) -> torch.device:
    """Join the process group once (nccl for CUDA, gloo for CPU); the device this rank trains on."""
    if not launched():
        return device
    device = local_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not _initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        torch.distributed.init_process_group(backend=backend, device_id=device if device.type == "cuda" else None)
        atexit.register(_leave)
    elif device.type == "cpu" and torch.distributed.get_backend() == "nccl":
        raise ConfigError("the process group uses nccl (GPUs) but --device is cpu; use --device cuda or auto")
    return device


def _leave() -> None:
    if _initialized():
        torch.distributed.destroy_process_group()


def _comm_device() -> torch.device:
    # nccl moves only CUDA tensors; gloo is given CPU ones.
    if torch.distributed.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def barrier() -> None:
    if _initialized() and world_size() > 1:
        torch.distributed.barrier()


@contextmanager
def main_process_first():
    """Rank 0 runs the block first (building a cache, downloading), the others after it finished."""
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()


def share(batch: torch.Tensor, rank_: int | None = None, world: int | None = None) -> torch.Tensor | None:
    """This rank's contiguous share of one global batch (sizes differ by at most one row).

    In a single process the batch itself. With several ranks, None (on every rank alike, so
    all take the same number of steps) when the batch cannot give each rank two rows: a
    batch of one row breaks batch-norm statistics.
    """
    world = world_size() if world is None else world
    if world == 1:
        return batch
    if len(batch) < 2 * world:
        return None
    return batch.tensor_split(world)[rank() if rank_ is None else rank_]


def batch_shares(batch_size: int, *orders: torch.Tensor):
    """For each global batch of ``batch_size`` positions of ``orders``, this rank's share of each."""
    n = len(orders[0])
    for start in range(0, n, batch_size):
        shares = [share(order[start:start + batch_size]) for order in orders]
        if shares[0] is not None:
            yield tuple(shares)


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` under DistributedDataParallel when several ranks train it (rank 0's weights to start).

    The global random generator of every other rank is reseeded, so ranks draw different
    noise; the batch order comes from a separate generator seeded alike on every rank.
    """
    if not launched():
        return model
    if not _initialized():
        setup(device)
    if rank():
        torch.manual_seed(torch.initial_seed() + _RANK_SEED_STRIDE * rank())
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


@torch.no_grad()
def sync_buffers(model: nn.Module) -> None:
    """Rank 0's buffers (batch-norm running statistics) on every rank, before validation."""
    if not launched():
        return
    for buffer in model.buffers():
        torch.distributed.broadcast(buffer, src=0)


def agree(value: float) -> float:
    """Rank 0's ``value`` on every rank, so every rank keeps the same best checkpoint."""
    if not launched():
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=_comm_device())
    torch.distributed.broadcast(tensor, src=0)
    return tensor.item()
