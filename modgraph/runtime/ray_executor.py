"""The plan's jobs as Ray tasks (``modgraph train --ray``): Ray places them, retries them, orders them.

Each job is a task with the CPUs and GPUs its spec asks for; a link's task takes its nodes' tasks
as arguments, so Ray starts it when both have finished. Ray is imported only when a run starts
(``pip install 'modgraph[ray]'``).
"""

from __future__ import annotations

import time
from typing import Callable

from modgraph.errors import ConfigError
from modgraph.runtime.jobs import (RETRIES, Job, JobFailed, JobResult, STOP_GRACE_S, error_line, free_endpoint,
                                   run_processes)


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError("--ray needs Ray: pip install 'modgraph[ray]' (on every machine of the cluster)") from None
    return ray


def run_job_task(commands: list[list[str]], env: dict[str, str], *needs) -> dict:
    """The body of one job's task on a worker; ``needs`` (its nodes' results) only order it after them."""
    import ray

    gpus = ray.get_gpu_ids()
    if gpus:
        env = {**env, "CUDA_VISIBLE_DEVICES": ",".join(str(g) for g in gpus)}
    where = ray.util.get_node_ip_address() + (f" gpu {env['CUDA_VISIBLE_DEVICES']}" if gpus else "")
    start, started = time.monotonic(), time.time()
    code, output = run_processes(commands, env)
    if code:
        raise JobFailed(error_line(output, code))
    return {"where": where, "seconds": time.monotonic() - start, "started": started}


def rendezvous_task() -> str:
    """Where a multi-machine job's first machine listens: this worker's address and a free port."""
    import ray

    return free_endpoint(ray.util.get_node_ip_address())


def _default_gpus(ray) -> int:
    return 1 if ray.cluster_resources().get("GPU", 0) > 0 else 0


def _submit(ray, job: Job, registry_id: str, gpus: int, needs: list) -> tuple[list, object]:
    """The task(s) of one job and their placement group: one task, or one per machine for a job spanning
    several (a placement group spread over the cluster, removed when the job ends)."""
    options = dict(num_cpus=job.cpus, num_gpus=gpus, max_retries=RETRIES, retry_exceptions=[JobFailed])
    task = ray.remote(run_job_task)
    env = job.env(registry_id)
    if job.nodes == 1:
        return [task.options(**options).remote(job.commands(), env, *needs)], None
    from ray.util.placement_group import placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    group = placement_group([{"CPU": job.cpus, "GPU": gpus} if gpus else {"CPU": job.cpus}] * job.nodes,
                            strategy="SPREAD")
    ray.get(group.ready())
    place = [PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=i) for i in range(job.nodes)]
    endpoint = ray.get(ray.remote(rendezvous_task).options(num_cpus=0, scheduling_strategy=place[0]).remote())
    commands = job.commands(endpoint)
    # Machines of one job retry together or not at all: a lone rank cannot rejoin a rendezvous.
    options.update(max_retries=0, retry_exceptions=False)
    return [task.options(**options, scheduling_strategy=place[i]).remote([commands[i]], env, *needs)
            for i in range(job.nodes)], group


def _failure(ray, exc) -> str:
    cause = getattr(exc, "cause", None)
    if isinstance(cause, JobFailed):
        return str(cause)
    if isinstance(exc, ray.exceptions.TaskCancelledError):
        return "cancelled"
    return " ".join(str(exc).split())[:300]


def run_ray(jobs: list[Job], registry_id: str, address: str,
            report: Callable[[JobResult], None] = lambda r: None) -> list[JobResult]:
    """Hand every job to Ray at once and collect what each did; Ctrl-C cancels the tasks still running.

    ``address``: "" joins ``RAY_ADDRESS`` when it is set, else starts a Ray on this machine.
    """
    ray = _import_ray()
    if not ray.is_initialized():
        ray.init(address=address or None, include_dashboard=False, log_to_driver=False)
    gpus = _default_gpus(ray)
    refs: dict[str, list] = {}
    groups: dict[str, object] = {}
    for job in jobs:  # nodes before links, so a link's needs are submitted already
        needs = [ref for need in job.needs for ref in refs[need]]
        refs[job.id], groups[job.id] = _submit(ray, job, registry_id, gpus if job.gpus is None else job.gpus, needs)
    results: dict[str, JobResult] = {}
    pending, ended = [ref for job in jobs for ref in refs[job.id]], set()
    try:
        while len(results) < len(jobs):
            if pending:
                ready, pending = ray.wait(pending, num_returns=1)
                ended.update(ready)
            for job in jobs:  # in plan order: a link after the nodes it needs, so a failed node makes it "skipped"
                if (job.id not in results and all(ref in ended for ref in refs[job.id])
                        and all(need in results for need in job.needs)):
                    results[job.id] = _result(ray, job, refs[job.id], results)
                    if groups[job.id] is not None:
                        ray.util.remove_placement_group(groups[job.id])
                    report(results[job.id])
    except KeyboardInterrupt:
        for ref in pending:
            ray.cancel(ref)  # raises KeyboardInterrupt in the task, which stops its processes
        ray.wait(pending, num_returns=len(pending), timeout=STOP_GRACE_S + 10)
        raise KeyboardInterrupt([results.get(job.id) or JobResult(job.id, "interrupted") for job in jobs]) from None
    return [results[job.id] for job in jobs]


def _result(ray, job: Job, refs: list, results: dict[str, JobResult]) -> JobResult:
    failed = [need for need in job.needs if results[need].status != "done"]
    try:
        outcomes = ray.get(refs)
    except ray.exceptions.RayError as exc:
        if failed:
            return JobResult(job.id, "skipped", error=f"{failed[0]} did not finish")
        return JobResult(job.id, "failed", error=_failure(ray, exc), tries=RETRIES + 1)
    return JobResult(job.id, "done", where=", ".join(o["where"] for o in outcomes),
                     seconds=max(o["seconds"] for o in outcomes), started=min(o["started"] for o in outcomes), tries=1)
