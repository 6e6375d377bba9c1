"""mnist, fmnist and gtsrb (with text) trained, linked, translated and evaluated on a CUDA GPU.

Marked ``gpu``: skipped without CUDA; run them with ``pytest -m gpu`` (issue 18).
"""

from __future__ import annotations

import pytest

import modgraph_vision
from modgraph.api import ModGraph
from modgraph.plugins import PluginHost
from modgraph.testing import check_graph_on_device, check_modality, cuda_missing
from modgraph_vision.gtsrb import DEFAULT_CLASS_IDS
from test_gtsrb import write_gtsrb

pytestmark = pytest.mark.gpu
TEXT = {"train_per_class": 10, "test_per_class": 10}


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_train_link_translate_and_evaluate_on_cuda(data_root, tmp_path, precision):
    if cuda_missing(precision):
        pytest.skip(cuda_missing(precision))
    modgraph_text = pytest.importorskip("modgraph_text")
    root, _ = data_root
    write_gtsrb(root, DEFAULT_CLASS_IDS)
    host = PluginHost(load_entry_points=False)
    host.add_plugin(modgraph_vision, name="vision", distribution="modgraph-vision", version="0.1.0")
    host.add_plugin(modgraph_text, name="text", distribution="modgraph-text", version="0.1.0")
    graph = ModGraph(registry=tmp_path / "registry", data_root=root, cache_dir=tmp_path / "cache", device="cuda",
                     progress=False, plugins=host, precision=precision)
    check_graph_on_device(graph, {"mnist": None, "fmnist": None, "gtsrb": {"augment_copies": 1}, "text": TEXT},
                          [("mnist", "text", "concept"), ("gtsrb", "text", "concept"), ("fmnist", "mnist", "index")],
                          tmp_path)


@pytest.mark.parametrize("name", ["mnist", "fmnist", "gtsrb"])
def test_conformance_kit_on_cuda(data_root, tmp_path, name):
    if cuda_missing():
        pytest.skip(cuda_missing())
    root, _ = data_root
    write_gtsrb(root, DEFAULT_CLASS_IDS)
    modality = next(m for m in _registered() if m.name == name)
    check_modality(modality, tmp_path, data_root=root, device="cuda")


def _registered():
    found = []
    modgraph_vision.register_modalities(register=found.append)
    return found
