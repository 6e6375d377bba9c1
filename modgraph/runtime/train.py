"""A graph's plan run to the end (``modgraph train``): its jobs as processes here, or as Ray tasks.

The local executor is here: a link starts once its two nodes are done, up to ``--jobs`` processes
at once, each GPU held by one job; :func:`train_graph` plans, checks the shared registry, and hands
the jobs to this executor or to Ray's (``ray_executor``).
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from contextlib import contextmanager
from typing import Callable

from modgraph.errors import ConfigError, RegistryMismatchError
from modgraph.runtime.jobs import (RETRIES, Job, JobResult, error_line, free_endpoint, job_figures, plan_jobs,
                                   run_processes, stop)
from modgraph.runtime.launch import usable_cores
from modgraph.runtime.plan import GraphSpec, make_plan
from modgraph.storage.registry_id import (ID_ENV, check_plugin_majors, check_registry_id, ensure_registry_id,
                                          read_registry_id)


# -- the local executor ---------------------------------------------------------------------------
def local_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def default_jobs(gpus: int) -> int:
    """Jobs at once by default: one per GPU, else one per core."""
    return gpus or usable_cores()


class _Machine:
    """This machine's process slots and GPUs, each GPU held by one job at a time."""

    def __init__(self, slots: int, gpus: int):
        self.slots, self.free, self.gpus, self.total_gpus = slots, slots, list(range(gpus)), gpus
        self.cancelled = False
        self._cond = threading.Condition()

    @contextmanager
    def take(self, processes: int, gpus: int):
        cost = min(processes, self.slots)  # a job bigger than the machine runs alone
        with self._cond:
            self._cond.wait_for(lambda: self.cancelled or (self.free >= cost and len(self.gpus) >= gpus))
            if self.cancelled:
                raise KeyboardInterrupt
            self.free -= cost
            taken, self.gpus = self.gpus[:gpus], self.gpus[gpus:]
        try:
            yield taken
        finally:
            with self._cond:
                self.free += cost
                self.gpus += taken
                self._cond.notify_all()

    def cancel(self) -> None:
        with self._cond:
            self.cancelled = True
            self._cond.notify_all()


def _run_local_job(job: Job, registry_id: str, machine: _Machine, running: set) -> JobResult:
    gpus = job.gpus if job.gpus is not None else min(1, machine.total_gpus)
    if gpus * job.nodes > machine.total_gpus:
        return JobResult(job.id, "failed", error=f"asks for {gpus * job.nodes} GPU(s); this machine has "
                                                 f"{machine.total_gpus}")
    result = JobResult(job.id, "failed")

    def started(process) -> None:
        running.add(process)
        if machine.cancelled:  # Ctrl-C came between the take and the start
            stop(process)

    with machine.take(job.nproc * job.nodes, gpus * job.nodes) as taken:
        env = {**job.env(registry_id), "CUDA_VISIBLE_DEVICES": ",".join(map(str, taken))}
        result.where = "local" + (f" gpu {env['CUDA_VISIBLE_DEVICES']}" if taken else "")
        for result.tries in range(1, RETRIES + 2):
            start, result.started = time.monotonic(), time.time()
            code, output = run_processes(job.commands(free_endpoint()), env, started)
            result.seconds = time.monotonic() - start
            if code == 0 or machine.cancelled:
                break
    if machine.cancelled and code:
        result.status = "interrupted"
    elif code == 0:
        result.status = "done"
    else:
        result.error, result.output = error_line(output, code), output[-4000:]
    return result


def run_local(jobs: list[Job], registry_id: str, slots: int | None = None,
              report: Callable[[JobResult], None] = lambda r: None) -> list[JobResult]:
    """Run the jobs as processes here, up to ``slots`` processes at once; a link once its nodes are done.

    Ctrl-C stops every running job (each leaves the registry as it was) and raises KeyboardInterrupt
    with the results so far in its ``args[0]``.
    """
    gpus = local_gpus()
    machine = _Machine(slots or default_jobs(gpus), gpus)
    running: set = set()
    results: dict[str, JobResult] = {}
    done = {job.id: threading.Event() for job in jobs}

    def one(job: Job) -> JobResult:
        for need in job.needs:
            done[need].wait()
            if results[need].status != "done":
                return JobResult(job.id, "interrupted" if machine.cancelled else "skipped",
                                 error=f"{need} did not finish")
        try:
            return _run_local_job(job, registry_id, machine, running)
        except KeyboardInterrupt:
            return JobResult(job.id, "interrupted")
        except Exception as exc:  # the runner's own trouble (no free port, a file): reported, the rest go on
            return JobResult(job.id, "failed", error=f"{type(exc).__name__}: {exc}")

    def finished(job: Job) -> None:
        try:
            results[job.id] = one(job)
            report(results[job.id])
        finally:
            done[job.id].set()

    pool = ThreadPoolExecutor(max_workers=max(1, len(jobs)))  # threads only wait; the machine decides what runs
    futures = {}
    for job in jobs:
        futures[pool.submit(finished, job)] = job
    pending = set(futures)
    try:
        while pending:
            _, pending = wait(pending, return_when=FIRST_COMPLETED)
    except KeyboardInterrupt:
        machine.cancel()
        for process in list(running):
            threading.Thread(target=stop, args=(process,), daemon=True).start()
        pool.shutdown(wait=True)
        raise KeyboardInterrupt([results.get(job.id) or JobResult(job.id, "interrupted") for job in jobs]) from None
    pool.shutdown(wait=True)
    for future in futures:
        future.result()
    return [results[job.id] for job in jobs]


# -- the shared registry, checked -------------------------------------------------------------------
def check_plugins(mg) -> None:
    """Refuse a registry whose nodes another major version of a plugin installed here wrote."""
    nodes = {}
    for name in mg.registry.node_names():
        record = mg.registry.node_record(name)
        nodes[name] = (record.plugin, record.plugin_version)
    installed = {m.distribution: m.distribution_version for m in mg.available_modalities().values()}
    check_plugin_majors(nodes, installed)


def check_job_registry(mg) -> None:
    """A job's checks before it trains, when ``modgraph train`` started it (``MODGRAPH_REGISTRY_ID`` set)."""
    expected = os.environ.get(ID_ENV)
    if not expected:
        return
    check_registry_id(mg.registry.root, expected)
    check_plugins(mg)


# -- the command ------------------------------------------------------------------------------------
def train_graph(mg, spec: GraphSpec, registry_arg=None, data_root_arg=None, *, jobs: int | None = None,
                ray_address: str | None = None, dry_run: bool = False,
                report: Callable[[JobResult], None] = lambda r: None) -> dict:
    """Plan the graph, then run its jobs here (``jobs`` at once) or on Ray (``ray_address``: "" for a local Ray).

    Returns the plan, the jobs and, unless ``dry_run``, one result per job (up-to-date ones included).
    """
    if jobs is not None and ray_address is not None:
        raise ConfigError("--jobs is for the local executor; on Ray each job takes the resources its spec asks")
    plan = make_plan(mg, spec, registry_arg, data_root_arg)
    todo = plan_jobs(plan, spec)
    skipped = [JobResult(job["id"], "up to date") for job in plan["up_to_date"]]
    out = {"plan": plan, "jobs": todo, "results": skipped}
    if dry_run or not todo:
        return out
    check_plugins(mg)
    registry_id = ensure_registry_id(plan["registry"])
    if read_registry_id(mg.registry.root) != registry_id:  # the runner itself sees the same folder
        raise RegistryMismatchError(f"registry {mg.registry.root} is not {plan['registry']}")
    def reported(result: JobResult) -> None:
        if result.status == "done":
            result.figures = job_figures(mg.registry, result.id)
        report(result)

    if ray_address is None:
        out["results"] = run_local(todo, registry_id, jobs, reported) + skipped
    else:
        from modgraph.runtime.ray_executor import run_ray

        out["results"] = run_ray(todo, registry_id, ray_address, reported) + skipped
    return out
