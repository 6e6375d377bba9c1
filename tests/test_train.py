"""``modgraph train``: the plan's jobs run in parallel here and on a local Ray, checked against a sequential run.

Jobs are real ``python -m modgraph`` processes over the toy plugin (installed through the entry-point
group); the sequential reference trains the same spec in this process, one command after another.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import toyplugin
from click.testing import CliRunner

from modgraph.app.cli import main
from modgraph.errors import RegistryMismatchError
from modgraph.runtime.plan import read_spec
from modgraph.runtime.jobs import Job, JobResult, job_figures, plan_jobs, summary_lines
from modgraph.storage.registry import Registry
from modgraph.storage.registry_id import (ID_ENV, check_plugin_majors, check_registry_id, ensure_registry_id,
                                          read_registry_id)

TESTS = Path(__file__).resolve().parent

# Three toy nodes and two links on small budgets; the third link cannot pair (toycolor shares no
# concept with toyimg), so its job fails, is retried once and reported while the others finish.
SPEC = """
args = ["--device", "cpu"]
[modalities.toyimg]
epochs = 3
recognizer_epochs = 3
[modalities.toyaudio]
epochs = 3
recognizer_epochs = 3
[modalities.toycolor]
epochs = 3
recognizer_epochs = 3

[[links]]
source = "toyimg"
target = "toyaudio"
epochs = 3
[[links]]
source = "toyaudio"
target = "toycolor"
pairing = "index"
epochs = 3
"""
FAILING = """
[[links]]
source = "toyimg"
target = "toycolor"
epochs = 3
"""
GOOD = ["node:toyimg", "node:toyaudio", "node:toycolor", "link:toyimg--toyaudio", "link:toyaudio--toycolor"]


def _site(folder: Path) -> Path:
    """The toy plugin as an installed distribution (a dist-info folder) that job processes find on PYTHONPATH."""
    dist_info = folder / f"{toyplugin.DISTRIBUTION.replace('-', '_')}-{toyplugin.__version__}.dist-info"
    dist_info.mkdir(parents=True, exist_ok=True)
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {toyplugin.DISTRIBUTION}\n"
                                        f"Version: {toyplugin.__version__}\n")
    (dist_info / "entry_points.txt").write_text("[modgraph]\ntoy = toyplugin\n")
    return folder


def _job_env(site: Path) -> dict[str, str]:
    return {"MODGRAPH_LOAD_PLUGINS": toyplugin.DISTRIBUTION, "MODGRAPH_NUM_THREADS": "1",
            "PYTHONPATH": os.pathsep.join([str(site), str(TESTS), os.environ.get("PYTHONPATH", "")])}


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    return _site(tmp_path_factory.mktemp("site"))


@pytest.fixture
def toy_jobs(site, toy_data, monkeypatch, tmp_path):
    """The toy plugin installed for this process and every job it starts; the spec written to graph.toml."""
    for key, value in _job_env(site).items():
        monkeypatch.setenv(key, value)
    monkeypatch.syspath_prepend(str(site))
    (tmp_path / "graph.toml").write_text(SPEC + FAILING)
    return tmp_path / "graph.toml"


@pytest.fixture(scope="module")
def sequential(tmp_path_factory, toy_dataset) -> dict[str, dict]:
    """The figures of SPEC trained in this process, one command after another (the reference)."""
    from modgraph.api import ModGraph
    from modgraph.plugins import PluginHost

    folder = tmp_path_factory.mktemp("sequential")
    (folder / "graph.toml").write_text(SPEC)
    spec = read_spec(folder / "graph.toml")
    host = PluginHost(load_entry_points=False)
    host.add_plugin(toyplugin, name="toy", distribution=toyplugin.DISTRIBUTION, version=toyplugin.__version__)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MODGRAPH_NUM_THREADS", "1")
        mg = ModGraph(registry=folder / "registry", data_root=toy_dataset, cache_dir=folder / "cache", device="cpu",
                      progress=False, plugins=host)
        for name, node in spec.modalities.items():
            mg.add_modality(name, node.settings())
        for link in spec.links:
            mg.link(link.source, link.target, link.settings())
    return {job: job_figures(mg.registry, job) for job in GOOD}


def _figures(registry: Path) -> dict[str, dict]:
    return {job: job_figures(Registry(registry), job) for job in GOOD}


def _rows(output: str) -> dict[str, str]:
    return {line.split()[0]: line for line in output.splitlines() if line.split() and ":" in line.split()[0]}


# -- locally, two jobs at once -----------------------------------------------------------------------
def test_two_jobs_at_once_match_a_sequential_run_and_a_failed_job_is_reported(toy_jobs, mg, isolated_env, sequential):
    from modgraph.runtime.train import train_graph

    out = train_graph(mg, read_spec(toy_jobs), jobs=2)
    results = {r.id: r for r in out["results"]}
    failed = results.pop("link:toyimg--toycolor")
    assert (failed.status, failed.tries) == ("failed", 2)  # retried once, then reported
    assert failed.error.startswith("Error: ") and "concept" in failed.error and "\n" not in failed.error
    assert sorted(results) == sorted(GOOD) and all(r.status == "done" and r.where == "local" for r in results.values())
    assert {job: r.figures for job, r in results.items()} == sequential  # to the last digit
    nodes = sorted((results[f"node:{n}"] for n in ("toyimg", "toyaudio", "toycolor")), key=lambda r: r.started)
    assert nodes[1].started < nodes[0].started + nodes[0].seconds  # two ran at once
    assert read_registry_id(isolated_env["registry"]) is not None
    rows = _rows("\n".join(summary_lines(out["results"])))
    assert rows["link:toyimg--toycolor"].endswith(f"FAILED: {failed.error}") and "VAE" in rows["node:toyimg"]


def test_an_interrupted_run_leaves_the_registry_whole_and_resumes(toy_jobs, isolated_env, sequential, tmp_path):
    (tmp_path / "graph.toml").write_text(SPEC)
    registry = isolated_env["registry"]
    runner = subprocess.Popen([sys.executable, "-m", "modgraph", "train", str(toy_jobs), "--jobs", "1"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.monotonic() + 240
    while not (registry / "nodes" / "toyimg.safetensors").exists() and runner.poll() is None:
        assert time.monotonic() < deadline, "the first job did not finish in time"
        time.sleep(0.1)
    runner.send_signal(signal.SIGINT)  # what Ctrl-C sends
    output, _ = runner.communicate(timeout=120)
    assert runner.returncode == 130, output
    assert "run the same modgraph train again" in output
    assert not [p for p in registry.rglob("*") if p.name.endswith(".tmp")]  # no half-written file
    finished = sorted(p.stem for p in (registry / "nodes").glob("*.safetensors"))
    assert "toyimg" in finished and len(finished) < 3

    result = CliRunner().invoke(main, ["train", str(toy_jobs), "--jobs", "2"])
    assert result.exit_code == 0, result.output
    rows = _rows(result.stdout)
    assert "UP TO DATE" in rows["node:toyimg"] and "UP TO DATE" not in rows["link:toyimg--toyaudio"]
    assert _figures(registry) == sequential


def test_dry_run_prints_what_would_run_where_and_writes_nothing(toy_jobs, isolated_env):
    result = CliRunner().invoke(main, ["train", str(toy_jobs), "--dry-run", "--ray"])
    assert result.exit_code == 0, result.output
    assert "node:toyimg  [ray task(s): 1 x (num_cpus=1, num_gpus=default)]" in result.output
    assert "after node:toyaudio, node:toycolor" in result.output
    assert not isolated_env["registry"].exists()


# -- the shared registry, checked ----------------------------------------------------------------------
def test_a_job_given_another_registry_fails_in_one_line(toy_installed, toy_data, isolated_env, monkeypatch):
    planned = ensure_registry_id(isolated_env["registry"])
    assert ensure_registry_id(isolated_env["registry"]) == planned  # written once
    monkeypatch.setenv(ID_ENV, "0" * 32)
    result = CliRunner().invoke(main, ["add-modality", "toycolor", "--epochs", "1"])
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and "this job was planned for registry 000" in result.output
    assert "mount the shared registry there" in result.output
    assert not (isolated_env["registry"] / "nodes").exists()  # refused before training
    with pytest.raises(RegistryMismatchError, match="has no registry id file"):
        check_registry_id(isolated_env["registry"] / "elsewhere", planned)


def test_a_registry_written_by_another_major_plugin_version_is_refused():
    nodes = {"mnist": ("modgraph-vision", "1.4.0"), "toy": ("modgraph-toy", "0.0.1"), "x": ("elsewhere", "9")}
    check_plugin_majors(nodes, {"modgraph-vision": "1.9.2", "modgraph-toy": "0.2"})  # same majors: fine
    with pytest.raises(RegistryMismatchError, match=r"modgraph-vision 1.4.0, but modgraph-vision 2.0.0 is installed"):
        check_plugin_majors(nodes, {"modgraph-vision": "2.0.0"})


def test_jobs_take_the_resources_their_spec_asks(tmp_path):
    (tmp_path / "graph.toml").write_text(SPEC.replace("[modalities.toycolor]\n", "[modalities.toycolor]\n"
                                                      "resources = {cpus = 4, gpus = 1, nodes = 2}\n"
                                                      "args = ['--nproc', '2']\n"))
    spec = read_spec(tmp_path / "graph.toml")
    plan = {"stages": [{"jobs": [{"id": "node:toycolor", "kind": "add-modality", "modality": "toycolor",
                                  "argv": ["modgraph", "add-modality", "toycolor", "--nproc", "2"]}]}]}
    [job] = plan_jobs(plan, spec)
    assert (job.cpus, job.gpus, job.nodes, job.nproc) == (4, 1, 2, 2)
    assert job.env("abc")["MODGRAPH_NUM_THREADS"] == "2"  # 4 cores shared by its 2 processes
    first, second = job.commands("10.0.0.1:29400")
    assert first[-6:] == ["--nnodes", "2", "--node-rank", "0", "--rdzv-endpoint", "10.0.0.1:29400"]
    assert second[-4:-2] == ["--node-rank", "1"]
    assert Job("node:a", ["modgraph", "add-modality", "a"]).gpus is None  # the executor settles it
    done = JobResult("node:a", "done", where="local", seconds=1.25, figures={"recognizer_accuracy": 0.5})
    lines = summary_lines([done, JobResult("link:a--b", "failed", error="Error: no")])
    assert lines[1].split() == ["node:a", "local", "1.2s", "recognizer", "50.00%"]
    assert lines[2].endswith("FAILED: Error: no")


def test_each_gpu_is_held_by_one_job_at_a_time():
    """The local executor's hand-out of GPUs (pretend ones: CI has none)."""
    import threading

    from modgraph.runtime.train import _Machine

    machine, got = _Machine(slots=4, gpus=2), []
    with machine.take(1, 1) as first, machine.take(1, 1) as second:
        assert sorted(first + second) == [0, 1]
        waiting = threading.Thread(target=lambda: got.append(machine.take(1, 1).__enter__()))
        waiting.start()
        waiting.join(0.3)
        assert got == []  # a third job waits for a GPU
    waiting.join(5)
    assert got in ([[0]], [[1]])


# -- one modality across two machines ----------------------------------------------------------------
def test_a_node_trained_on_two_machines_matches_one_process(toy_jobs, isolated_env, toy_dataset, tmp_path):
    """Two launcher processes meet at 127.0.0.1 (gloo), as two machines would, through the runner."""
    from test_distributed import _add_toyimg, _toy_graph

    (tmp_path / "two.toml").write_text('args = ["--device", "cpu"]\n[modalities.toyimg]\nepochs = 10\n'
                                       'recognizer_epochs = 10\nresources = {nodes = 2}\n')
    result = CliRunner().invoke(main, ["train", str(tmp_path / "two.toml")])
    assert result.exit_code == 0, result.output
    record = Registry(isolated_env["registry"]).node_record("toyimg")
    assert record.training["processes"] == 2
    single = _add_toyimg(_toy_graph(tmp_path / "single", str(toy_dataset)))
    # the tolerance tests/test_distributed.py allows two processes against one
    assert record.metrics["reconstruction_accuracy"] >= single["reconstruction_accuracy"] - 0.2
    assert record.metrics["val_loss"] == pytest.approx(single["val_loss"], rel=0.05)


def test_multi_node_options_reach_torchrun(monkeypatch):
    from torch.distributed.run import parse_args

    from modgraph.runtime import launch

    launched = {}
    monkeypatch.setattr(launch, "run_torchrun", lambda *a: launched.update(args=a))
    result = CliRunner().invoke(main, ["link", "a", "b", "--nnodes", "2", "--node-rank", "1", "--rdzv-endpoint",
                                       "10.0.0.1:29400", "--epochs", "2"])
    assert result.exit_code == 0, result.output
    nproc, args, nnodes, rank, endpoint = launched["args"]
    assert (nproc, nnodes, rank, endpoint) == (1, 2, 1, "10.0.0.1:29400") and "--nnodes" not in args
    parsed = parse_args(launch.torchrun_args(nproc, args, nnodes, rank, endpoint))
    assert (parsed.nnodes, parsed.node_rank, parsed.rdzv_endpoint, parsed.rdzv_backend) == ("2", 1, "10.0.0.1:29400",
                                                                                            "static")
    result = CliRunner().invoke(main, ["link", "a", "b", "--nnodes", "2"])
    assert result.exit_code == 1 and "needs --rdzv-endpoint HOST:PORT" in result.output


# -- on a local Ray ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def local_ray(site, tmp_path_factory):
    """One Ray for the module (two CPUs), started with the toy plugin on its workers' path."""
    ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'modgraph[ray]')")
    with pytest.MonkeyPatch.context() as mp:
        for key, value in _job_env(site).items():
            mp.setenv(key, value)
        mp.setenv("RAY_raylet_start_wait_time_s", "180")  # a busy CI machine starts Ray slowly
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 _temp_dir=str(tmp_path_factory.mktemp("ray")))
    yield ray
    ray.shutdown()


def test_on_a_local_ray_figures_match_a_sequential_run(local_ray, toy_jobs, isolated_env, sequential):
    result = CliRunner().invoke(main, ["train", str(toy_jobs), "--ray"])
    assert result.exit_code == 1, result.output
    rows = _rows(result.stdout)
    assert "FAILED: Error: " in rows["link:toyimg--toycolor"] and "concept" in rows["link:toyimg--toycolor"]
    assert all("%" in rows[job] for job in GOOD)
    assert _figures(isolated_env["registry"]) == sequential
