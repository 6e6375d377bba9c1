"""fsdd and gsc (with text) trained, linked, translated and evaluated on a CUDA GPU.

Marked ``gpu``: skipped without CUDA; run them with ``pytest -m gpu`` (issue 18).
"""

from __future__ import annotations

import pytest

import modgraph_audio
from modgraph.api import ModGraph
from modgraph.plugins import PluginHost
from modgraph.testing import check_graph_on_device, check_modality, cuda_missing
from modgraph_audio import FSDD, GSC
from test_gsc import write_speech_commands

pytestmark = pytest.mark.gpu
TEXT = {"train_per_class": 10, "test_per_class": 10}


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_train_link_translate_and_evaluate_on_cuda(fsdd_root, audio, tmp_path, precision):
    if cuda_missing(precision):
        pytest.skip(cuda_missing(precision))
    modgraph_text = pytest.importorskip("modgraph_text")
    write_speech_commands(fsdd_root, audio)
    host = PluginHost(load_entry_points=False)
    host.add_plugin(modgraph_audio, name="audio", distribution="modgraph-audio", version="0.1.0")
    host.add_plugin(modgraph_text, name="text", distribution="modgraph-text", version="0.1.0")
    graph = ModGraph(registry=tmp_path / "registry", data_root=fsdd_root, cache_dir=tmp_path / "cache", device="cuda",
                     progress=False, plugins=host, precision=precision)
    speech = {"augment_copies": 1}
    check_graph_on_device(graph, {"fsdd": speech, "gsc": {**speech, "version": "v0.01"}, "text": TEXT},
                          [("fsdd", "text", "concept"), ("gsc", "text", "concept")],
                          tmp_path)


@pytest.mark.parametrize("name", ["fsdd", "gsc"])
def test_conformance_kit_on_cuda(fsdd_root, audio, tmp_path, name):
    if cuda_missing():
        pytest.skip(cuda_missing())
    write_speech_commands(fsdd_root, audio)
    modality = FSDD() if name == "fsdd" else GSC().with_options({"version": "v0.01"})
    check_modality(modality, tmp_path, data_root=fsdd_root, device="cuda")
