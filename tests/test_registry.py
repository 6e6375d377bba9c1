"""The on-disk graph: self-describing headers, atomic and concurrent writes, corruption, staleness."""

from __future__ import annotations

import json
import multiprocessing
from datetime import datetime, timezone

import networkx as nx
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import modgraph.storage.registry
from modgraph.errors import (ModgraphError, NoRouteError, NotInRegistryError, RegistryCorruptError,
                             TrainingDivergedError)
from modgraph.learning.models import VAE, Recognizer, RecognizerConfig, VAEConfig
from modgraph.storage.registry import FORMAT_VERSION, Registry

QUICK = dict(epochs=1, recognizer_epochs=1)


def temp_files(root):
    return [p for p in root.rglob("*") if p.name.endswith(".tmp")]


def test_add_modality_writes_a_self_describing_node(mg, toy_data, isolated_env):
    report = mg.add_modality("toyaudio", latent_dim=5, **QUICK)
    path = isolated_env["registry"] / "nodes" / "toyaudio.safetensors"
    assert report["path"] == str(path) and report["latent_dim"] == 5
    with safe_open(str(path), framework="pt") as f:
        raw = f.metadata()
    assert raw["format_version"] == FORMAT_VERSION
    assert (raw["kind"], raw["name"]) == ("modality", "toyaudio")
    assert (raw["plugin"], raw["plugin_version"]) == ("modgraph-toy", "0.0.1")
    config = json.loads(raw["config"])
    assert VAEConfig(**config["vae"]).latent_dim == 5
    assert RecognizerConfig(**config["recognizer"]).num_classes == 3
    stats = json.loads(raw["preprocessing"])
    assert len(stats["mean"]) == len(stats["std"]) == 32
    metrics = json.loads(raw["metrics"])
    assert {"recognizer_accuracy", "reconstruction_accuracy", "val_loss", "test_samples"} <= set(metrics)
    assert metrics["test_samples"] == 18
    data = json.loads(raw["data"])
    assert data["root"] == str(toy_data) and data["train_rows"] + data["val_samples"] == 72
    assert json.loads(raw["classes"])[0] == {"name": "0", "concept": "zero"}
    assert datetime.fromisoformat(raw["created"]).tzinfo is not None
    assert not temp_files(isolated_env["registry"])


def test_graph_is_built_from_headers_without_loading_tensors(trained, monkeypatch):
    def no_tensors(*args, **kwargs):
        raise AssertionError("graph() must not load tensors")

    import safetensors.torch

    monkeypatch.setattr(safetensors.torch, "load_file", no_tensors)
    monkeypatch.setattr(modgraph.storage.registry.Registry, "load_tensors", no_tensors)
    g = trained.graph()
    assert isinstance(g, nx.DiGraph)
    assert sorted(g.nodes) == ["toyaudio", "toycolor", "toyimg"]
    assert sorted(g.edges) == [("toyaudio", "toycolor"), ("toyaudio", "toyimg"), ("toycolor", "toyaudio"),
                               ("toyimg", "toyaudio")]
    assert g.nodes["toyimg"]["kind"] == "modality"
    assert g.nodes["toyimg"]["config"]["vae"]["architecture"] == "conv"
    edge = g.edges["toyaudio", "toycolor"]
    assert (edge["kind"], edge["pairing"], edge["stale"]) == ("associator", "index", False)
    assert edge["class_map"] == [[0, 0], [1, 1], [2, 2]]
    assert 0.0 <= edge["metrics"]["accuracy"] <= 1.0


def test_a_node_rebuilt_from_its_file_reproduces_the_trained_model(trained, make_graph, isolated_env):
    path = isolated_env["registry"] / "nodes" / "toyimg.safetensors"
    meta = trained.registry.read_metadata(path)
    tensors = load_file(str(path))
    vae = VAE(VAEConfig(**meta["config"]["vae"]))
    vae.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("vae.")})
    recognizer = Recognizer(RecognizerConfig(**meta["config"]["recognizer"]))
    recognizer.load_state_dict({k[11:]: v for k, v in tensors.items() if k.startswith("recognizer.")})
    vae.eval(), recognizer.eval()

    test = trained.features(trained.modality("toyimg"), "test")
    loaded = make_graph().node("toyimg")
    with torch.no_grad():
        mu, logvar = vae.encode(test.x)
        mu2, logvar2 = loaded.vae.encode(test.x)
        assert torch.equal(mu, mu2) and torch.equal(logvar, logvar2)
        assert torch.equal(vae.decode(mu), loaded.vae.decode(mu))
        predicted = recognizer(test.x).argmax(1)
    # The accuracy recorded at training time is reproduced exactly by the stored weights
    # (batch-norm statistics included).
    assert (predicted == test.y).float().mean().item() == meta["metrics"]["recognizer_accuracy"]
    assert trained.evaluate("toyimg", "toyimg")["accuracy"] == meta["metrics"]["reconstruction_accuracy"]


def test_failed_training_leaves_the_old_node_untouched(trained, isolated_env):
    path = isolated_env["registry"] / "nodes" / "toycolor.safetensors"
    before = path.read_bytes()
    with pytest.raises(TrainingDivergedError, match="nothing was saved.*--lr"):
        trained.add_modality("toycolor", lr=1e30, **QUICK)
    assert path.read_bytes() == before
    assert not temp_files(isolated_env["registry"])
    assert not any(d["stale"] for _, _, d in trained.graph().edges(data=True))


def test_a_crash_while_writing_leaves_the_old_file_and_no_temp_file(trained, isolated_env, monkeypatch):
    path = isolated_env["registry"] / "nodes" / "toycolor.safetensors"
    before = path.read_bytes()

    def crash(filename):  # after the temporary was written
        raise OSError("disk full")

    monkeypatch.setattr(modgraph.storage.registry, "follow_umask", crash)
    with pytest.raises(ModgraphError, match="disk full.*keeps its previous file"):
        trained.add_modality("toycolor", **QUICK)
    assert path.read_bytes() == before
    assert not temp_files(isolated_env["registry"])


def _write_many(root: str, writer: int, count: int) -> None:
    """One of several processes writing the same and their own files into one registry."""
    registry = Registry(root)
    for i in range(count):
        value = 1000 * writer + i
        for name in ("shared", f"own{writer}"):
            with registry.lock():
                registry.write(registry.node_path(name), {"w": torch.full((1024,), float(value))},
                               {"kind": "modality", "name": name, "value": str(value)})


def test_concurrent_writers_leave_only_valid_files(tmp_path):
    root = tmp_path / "shared-registry"
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_write_many, args=(str(root), writer, 10)) for writer in (1, 2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [w.exitcode for w in workers] == [0, 0]
    registry = Registry(root)
    assert registry.node_names() == ["own1", "own2", "shared"]
    for name in registry.node_names():
        path = registry.node_path(name)
        meta = registry.read_metadata(path)
        tensor = registry.load_tensors(path)["w"]
        assert bool((tensor == float(meta["value"])).all())  # header and weights from one write
    assert registry.read_metadata(registry.node_path("own1"))["value"] == "1009"
    assert registry.read_metadata(registry.node_path("own2"))["value"] == "2009"
    assert registry.read_metadata(registry.node_path("shared"))["value"] in ("1009", "2009")
    assert not temp_files(root)


def test_a_header_is_read_again_whenever_its_file_changed(tmp_path, monkeypatch):
    """Headers are kept between reads (a server reads the graph per request), never past a change."""
    import os

    registry = Registry(tmp_path / "registry")
    path = registry.node_path("kept")
    registry.write(path, {"w": torch.zeros(4)}, {"kind": "modality", "name": "kept", "value": "1"})
    reads = []
    original = modgraph.storage.registry.file_metadata
    monkeypatch.setattr(modgraph.storage.registry, "file_metadata", lambda p: reads.append(p) or original(p))
    registry.read_metadata(path), registry.read_metadata(path)
    assert len(reads) == 2  # written just now: its times may not tick again at the next change
    monkeypatch.setattr(modgraph.storage.registry, "RECENT_NS", -1)
    assert registry.read_metadata(path)["value"] == registry.read_metadata(path)["value"] == "1"
    assert len(reads) == 3
    registry.write(path, {"w": torch.zeros(4)}, {"kind": "modality", "name": "kept", "value": "2"})  # a rename
    assert registry.read_metadata(path)["value"] == "2"
    data = bytearray(path.read_bytes())  # changed in place: same inode, same size, a later time
    at = data.index(b'"value":"2"')
    data[at + 9] = ord("3")
    before = path.stat().st_mtime_ns
    path.write_bytes(bytes(data))
    os.utime(path, ns=(before + 10**9, before + 10**9))
    assert registry.read_metadata(path)["value"] == "3"
    assert len(reads) == 5
    registry.read_metadata(path)["config"] = "mutated"  # what a caller does to its copy stays there
    assert "config" not in registry.read_metadata(path)


def test_a_held_lock_is_reported_not_waited_on_forever(tmp_path):
    from filelock import FileLock

    registry = Registry(tmp_path / "locked")
    registry.root.mkdir()
    with FileLock(str(registry.root / ".lock")):  # as another process would hold it
        with pytest.raises(ModgraphError, match="locked by another modgraph process"):
            with registry.lock(timeout=0.05):
                pass


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_a_damaged_node_file_is_reported_by_name(trained, isolated_env, damage, make_graph):
    path = isolated_env["registry"] / "nodes" / "toyaudio.safetensors"
    data = path.read_bytes()
    path.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"\x00not safetensors" * 10, "empty": b""}[damage])
    with pytest.raises(RegistryCorruptError) as info:
        make_graph().graph()
    assert str(path) in str(info.value)
    with pytest.raises(RegistryCorruptError, match="toyaudio.safetensors"):
        make_graph().node("toyaudio")


def test_a_safetensors_file_that_is_not_a_modgraph_file_is_reported(trained, isolated_env):
    path = isolated_env["registry"] / "nodes" / "stranger.safetensors"
    save_file({"w": torch.zeros(2)}, str(path), metadata={"author": "someone else"})
    with pytest.raises(RegistryCorruptError, match=r"stranger\.safetensors is not a modgraph format"):
        trained.graph()


def test_weights_that_do_not_match_the_architecture_are_reported(trained, isolated_env, make_graph):
    path = isolated_env["registry"] / "nodes" / "toyimg.safetensors"
    with safe_open(str(path), framework="pt") as f:
        header = f.metadata()
    config = json.loads(header["config"])
    config["vae"]["latent_dim"] += 2
    save_file(load_file(str(path)), str(path), metadata={**header, "config": json.dumps(config)})
    make_graph().graph()  # the header alone is still valid
    with pytest.raises(RegistryCorruptError) as info:
        make_graph().node("toyimg")
    message = str(info.value)
    assert str(path) in message and "does not match the architecture" in message
    assert "modgraph add-modality toyimg" in message


def test_an_edge_with_a_broken_config_is_reported(trained, isolated_env, make_graph):
    path = isolated_env["registry"] / "edges" / "toyimg--toyaudio.safetensors"
    with safe_open(str(path), framework="pt") as f:
        header = f.metadata()
    save_file(load_file(str(path)), str(path), metadata={**header, "config": json.dumps({"associator": {}})})
    with pytest.raises(RegistryCorruptError, match="toyimg--toyaudio.safetensors is not a valid associator"):
        make_graph().associator("toyimg", "toyaudio")


def test_readding_a_node_marks_its_edges_stale(trained):
    assert trained.route("toyimg", "toycolor") == ["toyimg", "toyaudio", "toycolor"]
    trained.add_modality("toycolor", **QUICK)
    g = trained.graph()
    assert g.edges["toyaudio", "toycolor"]["stale"] and g.edges["toycolor", "toyaudio"]["stale"]
    assert not g.edges["toyimg", "toyaudio"]["stale"]
    with pytest.raises(NoRouteError) as info:
        trained.route("toyimg", "toycolor")
    assert "stale" in str(info.value) and "toyaudio->toycolor" in str(info.value)
    assert "modgraph link toyimg toycolor" in str(info.value)
    assert [e["stale"] for e in trained.describe()["edges"] if "toycolor" in (e["source"], e["target"])] == [True, True]
    trained.link("toyaudio", "toycolor", pairing="index", epochs=1)
    assert trained.route("toyimg", "toycolor") == ["toyimg", "toyaudio", "toycolor"]


def test_staleness_does_not_depend_on_the_clock_ticking(mg, toy_data, monkeypatch):
    """Two versions of a node written within one second are still told apart."""

    class Frozen(datetime):
        ticks = 0

        @classmethod
        def now(cls, tz=None):
            cls.ticks += 1
            return datetime(2030, 1, 1, 12, 0, 0, cls.ticks, tzinfo=timezone.utc)

    monkeypatch.setattr(modgraph.storage.registry, "datetime", Frozen)
    mg.add_modality("toycolor", **QUICK)
    mg.add_modality("toyaudio", **QUICK)
    mg.link("toyaudio", "toycolor", pairing="index", epochs=1)
    assert not mg.graph().edges["toyaudio", "toycolor"]["stale"]
    mg.add_modality("toycolor", **QUICK)
    assert mg.graph().edges["toyaudio", "toycolor"]["stale"]


def test_remove_modality_removes_the_node_and_its_edges(trained, isolated_env):
    removed = trained.remove_modality("toyaudio")
    registry = isolated_env["registry"]
    assert removed[0] == registry / "nodes" / "toyaudio.safetensors"
    assert sorted(p.name for p in removed[1:]) == sorted(
        f"{a}--{b}.safetensors" for a, b in [("toyaudio", "toycolor"), ("toyaudio", "toyimg"),
                                              ("toycolor", "toyaudio"), ("toyimg", "toyaudio")])
    assert not any(p.exists() for p in removed)
    g = trained.graph()
    assert sorted(g.nodes) == ["toycolor", "toyimg"] and not g.edges
    with pytest.raises(NotInRegistryError, match="modgraph add-modality toyaudio"):
        trained.remove_modality("toyaudio")


def test_unlink_removes_both_directions_or_one(trained):
    removed = trained.unlink("toyimg", "toyaudio", both=False)
    assert [p.name for p in removed] == ["toyimg--toyaudio.safetensors"]
    assert ("toyaudio", "toyimg") in trained.graph().edges
    removed = trained.unlink("toyaudio", "toycolor")
    assert sorted(p.name for p in removed) == ["toyaudio--toycolor.safetensors", "toycolor--toyaudio.safetensors"]
    assert sorted(trained.graph().edges) == [("toyaudio", "toyimg")]
    with pytest.raises(NotInRegistryError, match="modgraph link toyimg toyaudio"):
        trained.unlink("toyimg", "toyaudio")


def test_an_orphan_edge_is_never_routed(trained, isolated_env):
    (isolated_env["registry"] / "nodes" / "toycolor.safetensors").unlink()  # as an interrupted removal leaves it
    g = trained.graph()
    assert "toycolor" not in g and sorted(g.edges) == [("toyaudio", "toyimg"), ("toyimg", "toyaudio")]
