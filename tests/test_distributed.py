"""Data-parallel training (two real gloo processes), mixed precision, and device choice."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file

from modgraph.runtime import distributed
from modgraph.errors import ConfigError
from modgraph.learning.models import Recognizer, RecognizerConfig
from modgraph.runtime.precision import Autocast, check_precision
from modgraph.learning.training import TrainSettings, resolve_device, train_recognizer

WORLD = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _join(rank: int, port: int) -> None:
    """What torchrun gives each worker: its rank and where rank 0 listens."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD), LOCAL_WORLD_SIZE=str(WORLD),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), MODGRAPH_NUM_THREADS="1")
    torch.set_num_threads(1)


# -- each rank's share of a batch -----------------------------------------------------------
@pytest.mark.parametrize("world", [2, 3])
def test_shares_partition_a_global_batch(world):
    batch = torch.arange(10, 20)
    shares = [distributed.share(batch, r, world) for r in range(world)]
    assert torch.equal(torch.cat(shares), batch)  # every row once, in order, no overlap
    assert max(map(len, shares)) - min(map(len, shares)) <= 1


def test_a_batch_too_small_for_every_rank_is_skipped_by_all():
    assert all(distributed.share(torch.arange(3), r, 2) is None for r in range(2))
    assert torch.equal(distributed.share(torch.arange(1), 0, 1), torch.arange(1))  # one process: unchanged


def test_each_rank_trains_on_its_share_of_every_global_batch(monkeypatch):
    from modgraph.learning.training import _batches

    cpu = torch.device("cpu")
    single = list(_batches(20, 8, torch.Generator().manual_seed(0), cpu))
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    per_rank = []
    for r in range(2):
        monkeypatch.setattr(distributed, "rank", lambda r=r: r)
        per_rank.append(list(_batches(20, 8, torch.Generator().manual_seed(0), cpu)))
    assert len(per_rank[0]) == len(per_rank[1]) == len(single) == 3  # batches of 8, 8 and 4: every rank steps
    for whole, first, second in zip(single, *per_rank):
        assert len(first) == len(second) == len(whole) // 2
        assert torch.equal(torch.cat([first, second]), whole)


# -- two processes train what one process trains on the same global batches ---------------------------
def _recognizer_data():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(48, 6, generator=gen)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    return x[:32], y[:32], x[32:], y[32:]


def _train_recognizer(out: Path | None) -> dict:
    torch.manual_seed(0)
    model = Recognizer(RecognizerConfig(input_shape=(6,), num_classes=3, architecture="mlp", hidden=16, dropout=0.0))
    settings = TrainSettings(epochs=3, batch_size=8, lr=1e-2, kl_weight=0.0, progress=False)
    log = train_recognizer(model, *_recognizer_data(), settings)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    if out is not None:
        torch.save({"state": state, "log": log}, out)
    return {"state": state, "log": log}


def _toy_graph(folder: Path, data_root: str):
    import toyplugin

    from modgraph.api import ModGraph
    from modgraph.plugins import PluginHost

    host = PluginHost(load_entry_points=False)
    host.add_plugin(toyplugin, name="toy", distribution=toyplugin.DISTRIBUTION, version=toyplugin.__version__)
    return ModGraph(registry=folder / "registry", data_root=data_root, cache_dir=folder / "cache", device="cpu",
                    progress=False, plugins=host)


def _add_toyimg(mg) -> dict:
    return mg.add_modality("toyimg", epochs=10, recognizer_epochs=10)["metrics"]


def _worker(rank, port, folder, data_root):
    """One torchrun-like rank: the recognizer of the exactness test, then add-modality with writes logged."""
    from modgraph.storage.registry import Registry

    _join(rank, port)
    folder = Path(folder)
    distributed.setup(torch.device("cpu"))
    _train_recognizer(folder / f"recognizer{rank}.pt")

    write = Registry.write

    def logged_write(self, path, tensors, metadata):
        with open(folder / "writes.log", "a") as fh:
            fh.write(f"{rank} {Path(path).name}\n")
        return write(self, path, tensors, metadata)

    Registry.write = logged_write
    (folder / f"rank{rank}.json").write_text(json.dumps(_add_toyimg(_toy_graph(folder, data_root))))


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory, toy_dataset) -> Path:
    """The outputs of one two-process gloo session (spawned once for the tests below)."""
    folder = tmp_path_factory.mktemp("ddp")
    with pytest.MonkeyPatch.context() as mp_env:
        mp_env.setenv("MODGRAPH_LOAD_PLUGINS", "")
        mp.spawn(_worker, args=(_free_port(), str(folder), str(toy_dataset)), nprocs=WORLD, join=True)
    return folder


def test_two_gloo_processes_train_like_one_process_on_the_same_global_batches(two_ranks):
    single = _train_recognizer(None)
    ranks = [torch.load(two_ranks / f"recognizer{r}.pt") for r in range(WORLD)]
    # Each rank steps on the mean gradient of its half of every batch of 8: the full batch's gradient.
    for key, value in single["state"].items():
        torch.testing.assert_close(ranks[0]["state"][key], value, atol=1e-4, rtol=1e-4)
        assert torch.equal(ranks[1]["state"][key], ranks[0]["state"][key])
    assert ranks[0]["log"]["history"] == ranks[1]["log"]["history"]


def test_add_modality_in_two_processes_writes_once_and_matches_one_process(two_ranks, toy_dataset, tmp_path):
    assert (two_ranks / "writes.log").read_text().splitlines() == ["0 toyimg.safetensors"]
    ranks = [json.loads((two_ranks / f"rank{r}.json").read_text()) for r in range(WORLD)]
    assert ranks[0] == ranks[1]  # same weights on both ranks, same validation, same test figures

    mg = _toy_graph(two_ranks, str(toy_dataset))
    node = mg.node("toyimg")  # what rank 0 wrote loads on the CPU, in fp32
    assert next(node.vae.parameters()).device.type == "cpu"
    assert node.meta["training"]["processes"] == 2
    stored = load_file(str(mg.registry.node_path("toyimg")))
    assert {t.dtype for t in stored.values() if t.is_floating_point()} == {torch.float32}

    single = _add_toyimg(_toy_graph(tmp_path, str(toy_dataset)))  # one process, the same global batches
    two = node.meta["metrics"]
    assert two["reconstruction_accuracy"] >= single["reconstruction_accuracy"] - 0.2
    assert two["val_loss"] == pytest.approx(single["val_loss"], rel=0.05)


# -- mixed precision ----------------------------------------------------------------------------------
def test_autocast_runs_the_forward_in_bf16_and_hands_back_fp32():
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    seen = []
    net[0].register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    out = Autocast(net, "cpu")(torch.randn(3, 4))
    assert seen == [torch.bfloat16]
    assert out.dtype == torch.float32
    out.sum().backward()
    assert all(p.dtype == torch.float32 and p.grad.dtype == torch.float32 for p in net.parameters())


def test_bf16_training_stores_fp32_weights_that_load_on_cpu(make_graph, toy_data):
    mg = make_graph()
    mg.precision = "bf16"
    mg.add_modality("toyimg", epochs=2, recognizer_epochs=2)
    stored = load_file(str(mg.registry.node_path("toyimg")))
    assert {t.dtype for t in stored.values() if t.is_floating_point()} == {torch.float32}
    fresh = make_graph()
    node = fresh.node("toyimg")
    assert node.meta["training"]["precision"] == "bf16"
    assert next(node.vae.parameters()).device.type == "cpu"


def test_precision_errors_name_the_fix(monkeypatch):
    with pytest.raises(ConfigError, match="fp32, bf16"):
        check_precision("fp16", torch.device("cpu"))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla V100")
    with pytest.raises(ConfigError, match="V100 has no native bfloat16; use --precision fp32"):
        TrainSettings(epochs=1, batch_size=2, lr=1.0, kl_weight=0.0, device=torch.device("cuda"), precision="bf16")


# -- devices ------------------------------------------------------------------------------------------
def test_auto_picks_cuda_when_present_and_each_rank_takes_its_own_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert distributed.local_device(torch.device("cuda")) == torch.device("cuda", 1)
    assert distributed.local_device(torch.device("cpu")) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ConfigError, match="use --nproc 1"):
        distributed.local_device(torch.device("cuda"))


# -- --nproc ------------------------------------------------------------------------------------------
def test_nproc_relaunches_the_same_command_under_torchrun(monkeypatch):
    from click.testing import CliRunner
    from torch.distributed.run import parse_args

    from modgraph.runtime import launch
    from modgraph.app.cli import main

    launched = {}
    monkeypatch.setattr(launch, "run_torchrun", lambda nproc, args, *machines: launched.update(nproc=nproc, args=args))
    result = CliRunner().invoke(main, ["add-modality", "toyimg", "--epochs", "2", "--nproc", "2", "--exclude",
                                       "speaker=ann", "--download", "--precision", "bf16"])
    assert result.exit_code == 0, result.output
    args = launched["args"]
    assert launched["nproc"] == 2 and args[0] == "add-modality" and args[-2:] == ["--", "toyimg"]
    assert {("--epochs", "2"), ("--exclude", "speaker=ann"), ("--precision", "bf16")} <= set(zip(args, args[1:]))
    assert "--download" in args and "--nproc" not in args and "--device" not in args  # defaults stay defaults
    parsed = parse_args(launch.torchrun_args(2, args))  # what torchrun makes of it
    assert (parsed.nproc_per_node, parsed.module, parsed.training_script) == ("2", True, "modgraph")
    assert parsed.training_script_args == args


def test_nproc_under_torchrun_is_an_error(monkeypatch):
    from click.testing import CliRunner

    from modgraph.app.cli import main

    monkeypatch.setenv("WORLD_SIZE", "2")
    result = CliRunner().invoke(main, ["link", "a", "b", "--nproc", "2"])
    assert result.exit_code == 1
    assert "leave them out when torchrun already started modgraph" in result.output
