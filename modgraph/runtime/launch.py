"""Starting a modgraph command in N local processes through torchrun (``--nproc N``), on one machine or several.

Nothing here imports torch until a launch runs, so ``modgraph --help`` stays fast.
"""

from __future__ import annotations

import os

from modgraph.errors import ConfigError, ModgraphError


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, where the system has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return os.cpu_count() or 1


def under_torchrun() -> bool:
    """Whether torchrun (or ``--nproc``) started this process as one of several ranks."""
    return int(os.environ.get("WORLD_SIZE") or 1) > 1


def env_rank() -> int:
    """This process's rank as torchrun set it (0 outside torchrun), read without importing torch."""
    return int(os.environ.get("RANK") or 0)


def torchrun_args(nproc: int, args: list[str], nnodes: int = 1, node_rank: int = 0,
                  endpoint: str | None = None) -> list[str]:
    """torchrun's arguments for ``modgraph ARGS`` in ``nproc`` processes on this machine.

    With ``nnodes`` > 1 this machine is node ``node_rank`` of several that meet at ``endpoint``
    (``HOST:PORT``, where node 0 listens: torchrun's static rendezvous).
    """
    if nnodes == 1:
        return ["--standalone", f"--nproc-per-node={nproc}", "-m", "modgraph", *args]
    check_rendezvous(nnodes, node_rank, endpoint)
    return [f"--nnodes={nnodes}", f"--node-rank={node_rank}", f"--rdzv-endpoint={endpoint}",
            f"--nproc-per-node={nproc}", "-m", "modgraph", *args]


def check_rendezvous(nnodes: int, node_rank: int, endpoint: str | None) -> None:
    """Several machines need where to meet and each its own rank below ``nnodes``."""
    if endpoint is None:
        raise ConfigError(f"--nnodes {nnodes} needs --rdzv-endpoint HOST:PORT, where node 0 listens (the same on "
                          f"every machine)")
    host, sep, port = endpoint.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"--rdzv-endpoint must be HOST:PORT, not {endpoint!r}")
    if not 0 <= node_rank < nnodes:
        raise ConfigError(f"--node-rank must be 0 to {nnodes - 1} with --nnodes {nnodes}, not {node_rank}")


def check_gpus(nproc: int, device: str | None) -> None:
    """Before launching: ``nproc`` processes on GPUs need that many GPUs (one each) and CUDA at all.

    Checked here, once, rather than by every rank after the launch (N tracebacks).
    """
    import torch

    from modgraph.learning.training import resolve_device

    if resolve_device(device).type != "cuda":  # --device cuda without CUDA raises here
        return
    count = torch.cuda.device_count()
    if nproc > count:
        raise ConfigError(f"--nproc {nproc} starts one process per GPU, but this machine has {count} GPU(s); "
                          f"use --nproc {count} or fewer, or --device cpu")


def run_torchrun(nproc: int, args: list[str], nnodes: int = 1, node_rank: int = 0, endpoint: str | None = None) -> None:
    """Run ``modgraph ARGS`` in ``nproc`` local processes (of ``nnodes`` machines') and wait for them all.

    Each rank prints its own error; a failure ends in one line here, not in torchrun's report.
    """
    import logging

    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, usable_cores() // nproc)))  # ranks share the cores out
    try:
        run(parse_args(torchrun_args(nproc, args, nnodes, node_rank, endpoint)))
    except ChildFailedError as exc:
        ranks = ", ".join(str(r) for r in sorted(exc.failures))
        raise ModgraphError(f"rank(s) {ranks} of the {nproc} processes started by --nproc failed; "
                            f"their messages above say why") from None
    except SignalException:
        raise KeyboardInterrupt from None
