"""The sharded feature cache: lazy rows equal eager ones, builds resume, opening reads no rows."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
import torch

import modgraph.features.shards as feature_store
import toyplugin
from modgraph import hookimpl
from modgraph.features.shards import ShardedRows
from modgraph.features.cache import cache_folder, load_split
from modgraph.modality import FeatureSet

CHUNKS = 5


class ChunkedToyAudio(toyplugin.ToyAudio):
    """toyaudio whose split comes in CHUNKS chunks, with augmented copies so origins matter."""

    name = "toychunks"
    calls: list[int] = []  # chunk indices computed, in order (reset by each test)
    fail_at: int | None = None  # a chunk index that raises, as a killed build would stop

    def load_features(self, root, split, download=False):
        whole = super().load_features(root, split, download)
        n = len(whole)
        copies = (whole.x * 0.9).flip(-1)
        return FeatureSet(x=torch.cat([whole.x, copies]), y=whole.y.repeat(2), origin=torch.arange(n).repeat(2),
                          augmented=torch.cat([torch.zeros(n, dtype=torch.bool), torch.ones(n, dtype=torch.bool)]),
                          groups={"speaker": whole.groups["speaker"] * 2})

    def feature_chunks(self, root, split, download=False):
        whole = super().load_features(root, split, download)
        bounds = np.linspace(0, len(whole), CHUNKS + 1).astype(int)

        def chunk(i):
            ChunkedToyAudio.calls.append(i)
            if i == ChunkedToyAudio.fail_at:
                raise KeyboardInterrupt
            part = whole.subset(torch.arange(bounds[i], bounds[i + 1]))
            n = len(part)
            return FeatureSet(x=torch.cat([part.x, (part.x * 0.9).flip(-1)]), y=part.y.repeat(2),
                              origin=torch.arange(n).repeat(2),
                              augmented=torch.cat([torch.zeros(n, dtype=torch.bool), torch.ones(n, dtype=torch.bool)]),
                              groups={"speaker": part.groups["speaker"] * 2})

        return [lambda i=i: chunk(i) for i in range(CHUNKS)]


class ChunkPlugin:
    @hookimpl
    def register_modalities(self, register):
        register(ChunkedToyAudio())


@pytest.fixture
def chunked(toy_data, isolated_env):
    ChunkedToyAudio.calls, ChunkedToyAudio.fail_at = [], None
    return ChunkedToyAudio()


def lazy(modality, root, cache):
    return load_split(modality, root, "train", cache_dir=cache, in_memory_bytes=0)


def test_lazy_rows_index_like_the_eager_tensor(chunked, toy_data, isolated_env):
    store = lazy(chunked, toy_data, isolated_env["cache"])
    eager = load_split(chunked, toy_data, "train", cache_dir=isolated_env["cache"])
    x, ref = store.x, eager.x
    assert isinstance(x, ShardedRows) and isinstance(ref, torch.Tensor)
    assert len(x.shards) == CHUNKS and len(x) == len(ref) and x.shape == ref.shape
    assert torch.equal(x[:], ref) and torch.equal(x[3], ref[3]) and torch.equal(x[-1], ref[-1])
    assert torch.equal(x[5:40:3], ref[5:40:3]) and torch.equal(x[2:9, 3:7], ref[2:9, 3:7])
    assert torch.equal(x[4, :5], ref[4, :5])
    rows = torch.tensor([70, 2, 2, 45, 0, len(ref) - 1, 33])  # unsorted, repeated, across shards
    assert torch.equal(x[rows], ref[rows])
    mask = torch.arange(len(ref)) % 3 == 0
    assert torch.equal(x[mask], ref[mask])
    assert torch.equal(x[torch.tensor([], dtype=torch.long)], ref[:0])
    with pytest.raises(IndexError):
        x[len(ref)]
    # Views: a subset, then a transform, read nothing until indexed and match the eager result.
    subset = store.subset(rows)
    assert isinstance(subset.x, ShardedRows)
    assert torch.equal(subset.x[1:4], ref[rows][1:4])
    doubled = subset.x.map(lambda b: 2 * b)
    assert torch.equal(doubled[torch.tensor([0, 6])], 2 * ref[rows][[0, 6]])
    assert torch.equal(torch.cat(list(x.chunks(rows=17))), ref)
    # Labels, origins and groups were read whole; origins never collide across chunks.
    assert torch.equal(store.y, eager.y) and store.groups == eager.groups
    assert torch.equal(store.origin, eager.origin)
    assert len(store.origin.unique()) == int((~store.augmented).sum())


def test_an_interrupted_build_resumes_and_never_trusts_a_partial_shard(chunked, toy_data, isolated_env):
    cache = isolated_env["cache"]
    ChunkedToyAudio.fail_at = 3
    with pytest.raises(KeyboardInterrupt):
        lazy(chunked, toy_data, cache)
    folder = cache_folder(chunked, toy_data, "train", cache)
    assert sorted(p.name for p in folder.glob("shard-*")) == [f"shard-0000{i}.safetensors" for i in range(3)]
    assert not (folder / "manifest.json").exists()
    # A shard cut short (as a disk that filled up would leave it) and a killed write's temporary file.
    damaged = folder / "shard-00001.safetensors"
    damaged.write_bytes(damaged.read_bytes()[:-100])
    (folder / ".shard-00003.safetensors.999.tmp").write_bytes(b"half a shard")
    ChunkedToyAudio.calls, ChunkedToyAudio.fail_at = [], None
    resumed = lazy(chunked, toy_data, cache)
    assert ChunkedToyAudio.calls == [1, 3, 4]  # shards 0 and 2 were kept
    assert not list(folder.glob(".*.tmp"))
    whole = load_split(chunked, toy_data, "train", use_cache=False)
    assert torch.equal(resumed.x[:], whole.x) and torch.equal(resumed.origin, whole.origin)
    ChunkedToyAudio.calls = []
    lazy(chunked, toy_data, cache)
    assert ChunkedToyAudio.calls == []  # complete: nothing is recomputed


def test_opening_a_store_of_many_shards_reads_no_rows(toy_data, isolated_env, monkeypatch):
    modality = ChunkedToyAudio()
    ChunkedToyAudio.calls, ChunkedToyAudio.fail_at = [], None
    monkeypatch.setattr(sys.modules[__name__], "CHUNKS", 40)
    lazy(modality, toy_data, isolated_env["cache"])  # build
    read = []
    real = os.preadv

    def counting(fd, buffers, offset):
        n = real(fd, buffers, offset)
        read.append(n)
        return n

    monkeypatch.setattr(feature_store.os, "preadv", counting)
    monkeypatch.setattr("safetensors.torch.load_file", lambda *a, **k: pytest.fail("a whole shard was loaded"))
    store = lazy(modality, toy_data, isolated_env["cache"])
    n = len(store)
    assert len(store.x.shards) == 40
    assert sum(read) == n * (8 + 8 + 1)  # labels, origins and flags only: no feature row
    read.clear()
    rows = torch.tensor([0, 50, 51, 140])
    store.x[rows]
    assert sum(read) == len(rows) * store.x.row_bytes
    assert len(read) == 3  # rows 50 and 51 are one read


def test_training_on_lazy_rows_matches_training_in_memory(toy_data, isolated_env, monkeypatch):
    """add_modality and evaluate run unchanged on rows left on disk, with the same result."""
    from modgraph.api import ModGraph
    from modgraph.plugins import PluginHost

    results = {}
    for label, limit in (("eager", "1024"), ("lazy", "0")):
        monkeypatch.setenv("MODGRAPH_FEATURES_IN_MEMORY_MB", limit)
        host = PluginHost(load_entry_points=False)
        host.add_plugin(ChunkPlugin(), name="chunks", distribution="modgraph-chunks", version="0")
        mg = ModGraph(registry=isolated_env["registry"] / label, device="cpu", progress=False, plugins=host)
        if label == "lazy":
            assert isinstance(mg.features(mg.modality("toychunks"), "train").x, ShardedRows)
        report = mg.add_modality("toychunks", epochs=2, recognizer_epochs=2)
        results[label] = (report["metrics"], mg.node("toychunks").stats, mg.evaluate("toychunks", "toychunks"))
    assert results["lazy"] == results["eager"]


def test_the_conformance_kit_checks_chunks(chunked, toy_data, monkeypatch):
    from modgraph.testing import check_feature_chunks

    check_feature_chunks(chunked, toy_data, "train")
    original = ChunkedToyAudio.feature_chunks

    def global_origins(self, root, split, download=False):
        def shifted(make, offset):
            part = make()
            part.origin = part.origin + offset
            return part

        return [lambda make=make, i=i: shifted(make, 100 * i) for i, make in
                enumerate(original(self, root, split, download))]

    monkeypatch.setattr(ChunkedToyAudio, "feature_chunks", global_origins)
    with pytest.raises(AssertionError, match="origins must count rows within the chunk"):
        check_feature_chunks(chunked, toy_data, "train")


