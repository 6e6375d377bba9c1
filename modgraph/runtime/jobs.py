"""The jobs of ``modgraph train``: a plan's command lines with resources, run as processes, and how each ended.

Both executors (here: ``train``; a cluster: ``ray_executor``) run a job through :func:`run_processes`
and report it as a :class:`JobResult`; :func:`summary_lines` prints them as one table.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Callable

from modgraph.errors import NotInRegistryError
from modgraph.runtime.plan import GraphSpec
from modgraph.storage.registry_id import ID_ENV

RETRIES = 1  # a failed job runs once more before it is reported
STOP_GRACE_S = 20.0  # after Ctrl-C a job has this long to stop on SIGINT before it is killed


@dataclass
class Job:
    """One command of the plan with what it asks of each machine it runs on."""

    id: str
    argv: list[str]  # ``modgraph SUBCOMMAND ...`` as plan prints it
    needs: list[str] = field(default_factory=list)
    cpus: int = 1
    gpus: int | None = None  # None: 1 where there are GPUs, else 0 (settled by the executor)
    nodes: int = 1

    @property
    def nproc(self) -> int:
        """Processes per machine (``--nproc N`` among the job's arguments)."""
        for i, arg in enumerate(self.argv):
            if arg == "--nproc" and i + 1 < len(self.argv) and self.argv[i + 1].isdigit():
                return int(self.argv[i + 1])
            if arg.startswith("--nproc=") and arg[8:].isdigit():
                return int(arg[8:])
        return 1

    def env(self, registry_id: str) -> dict[str, str]:
        """What each of its processes gets besides the worker's environment: the registry id and its threads."""
        return {ID_ENV: registry_id, "MODGRAPH_NUM_THREADS": str(max(1, self.cpus // self.nproc))}

    def commands(self, endpoint: str | None = None) -> list[list[str]]:
        """One command line per machine; several machines meet at ``endpoint`` (torchrun's rendezvous)."""
        base = [sys.executable, "-m", "modgraph", *self.argv[1:]]
        if self.nodes == 1:
            return [base]
        return [[*base, "--nnodes", str(self.nodes), "--node-rank", str(rank), "--rdzv-endpoint", str(endpoint)]
                for rank in range(self.nodes)]


@dataclass
class JobResult:
    """How one job ended: done, failed, skipped (a job it needs failed), interrupted, or up to date."""

    id: str
    status: str
    where: str = ""
    seconds: float = 0.0
    started: float = 0.0  # time.time() when its (last) try started
    figures: dict[str, float] = field(default_factory=dict)
    error: str = ""
    tries: int = 0
    output: str = ""  # the end of what its processes printed, for a failure


class JobFailed(Exception):
    """A job's processes ended with an error; the message is their one-line error (Ray retries on it)."""


# -- from a plan to jobs ------------------------------------------------------------------------
def plan_jobs(plan: dict, spec: GraphSpec) -> list[Job]:
    """The plan's jobs in order (nodes, then links) with the resources the spec asks for each."""
    links = {f"link:{link.source}--{link.target}": link for link in spec.links}
    jobs = []
    for stage in plan["stages"]:
        for job in stage["jobs"]:
            asked = (spec.modalities[job["modality"]] if job["kind"] == "add-modality" else links[job["id"]]).resources
            jobs.append(Job(job["id"], job["argv"], list(job.get("needs", [])), asked.cpus, asked.gpus, asked.nodes))
    return jobs


# -- a job's processes ------------------------------------------------------------------------
def error_line(output: str, returncode: int) -> str:
    """The one line that says why a job failed: its last ``Error`` line, else its last line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error")]
    return (errors or lines or [f"exit code {returncode}"])[-1][:300]


def stop(process: subprocess.Popen) -> None:
    """Ctrl-C for one job: SIGINT to its process group (torchrun's ranks too), SIGKILL if it lingers."""
    for sig, grace in ((signal.SIGINT, STOP_GRACE_S), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(process.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        try:
            process.wait(grace)
            return
        except subprocess.TimeoutExpired:
            continue


def run_processes(commands: list[list[str]], env: dict[str, str],
                  started: Callable[[subprocess.Popen], None] = lambda p: None) -> tuple[int, str]:
    """Run a job's processes (one per machine it spans) to the end: the first non-zero exit code and the output.

    Each process leads its own session, so a terminal's Ctrl-C reaches the runner only, which stops
    its jobs in order (:func:`stop`); output goes to files, never a pipe that could fill.
    """
    processes, logs = [], []
    try:
        for command in commands:
            log = tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace")
            logs.append(log)
            processes.append(subprocess.Popen(command, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
                                              stdin=subprocess.DEVNULL, start_new_session=True))
            started(processes[-1])
        codes = [process.wait() for process in processes]
    except BaseException:
        for process in processes:
            stop(process)
        raise
    finally:
        output = []
        for log in logs:
            log.seek(0)
            output.append(log.read()[-20_000:])
            log.close()
    return next((code for code in codes if code), 0), "\n".join(output)


def free_endpoint(host: str = "127.0.0.1") -> str:
    """A rendezvous endpoint on this machine: ``host:port`` with a port free right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return f"{host}:{s.getsockname()[1]}"


# -- what a job measured ------------------------------------------------------------------------
def job_figures(registry, job_id: str) -> dict[str, float]:
    """The test figures a finished job stored: a node's two accuracies, or each direction's accuracy of a link."""
    kind, _, name = job_id.partition(":")
    try:
        if kind == "node":
            metrics = registry.node_record(name).metrics
            return {key: metrics[key] for key in ("recognizer_accuracy", "reconstruction_accuracy")
                    if isinstance(metrics.get(key), (int, float))}
        source, _, target = name.partition("--")
        figures = {}
        for a, b in ((source, target), (target, source)):
            if registry.edge_path(a, b).exists():
                value = registry.edge_record(a, b).metrics.get("accuracy")
                if isinstance(value, (int, float)):
                    figures[f"{a}->{b}"] = value
        return figures
    except NotInRegistryError:
        return {}


def figures_text(figures: dict[str, float]) -> str:
    short = {"recognizer_accuracy": "recognizer", "reconstruction_accuracy": "VAE"}
    return ", ".join(f"{short.get(k, k)} {100 * v:.2f}%" for k, v in figures.items())


def summary_lines(results: list[JobResult]) -> list[str]:
    """One row per job: job, where it ran, time, the figures it measured or its one-line error."""
    rows = [("job", "where", "time", "figures / error")]
    for r in results:
        time_text = f"{r.seconds:.1f}s" if r.seconds else "-"
        what = figures_text(r.figures) if r.status == "done" else f"{r.status.upper()}: {r.error}".rstrip(": ")
        if r.status == "done" and r.tries > 1:
            what += f" (after {r.tries - 1} retry)"
        rows.append((r.id, r.where or "-", time_text, what))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return ["  ".join([*(cell.ljust(w) for cell, w in zip(row[:3], widths)), row[3]]).rstrip() for row in rows]


def dry_run_lines(jobs: list[Job], on_ray: bool) -> list[str]:
    """What would run where: each job's resources and command line."""
    lines = []
    for job in jobs:
        gpus = "default" if job.gpus is None else job.gpus
        where = (f"ray task(s): {job.nodes} x (num_cpus={job.cpus}, num_gpus={gpus})" if on_ray
                 else f"local: {job.nproc * job.nodes} process(es), gpus {gpus}")
        after = f", after {', '.join(job.needs)}" if job.needs else ""
        lines.append(f"{job.id}  [{where}{after}]")
        lines.append(f"  {shlex.join(job.argv)}"
                     + (f" --nnodes {job.nodes} --node-rank R --rdzv-endpoint HOST:PORT" if job.nodes > 1 else ""))
    return lines
