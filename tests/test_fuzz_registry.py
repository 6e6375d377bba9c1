"""Fuzzing registry headers: whatever a node or edge file's header says, reading it works or is one ModgraphError.

CI runs a short, derandomised search; ``MODGRAPH_FUZZ_EXAMPLES=5000 pytest tests/test_fuzz_registry.py``
runs a longer one.
"""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

from modgraph.errors import ModgraphError

EXAMPLES = int(os.environ.get("MODGRAPH_FUZZ_EXAMPLES", "60"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=EXAMPLES <= 100,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

json_values = st.recursive(st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats(allow_nan=True)
                           | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                       max_size=4),
                           max_leaves=12)
FIELDS = ["kind", "name", "format_version", "config", "preprocessing", "metrics", "options", "classes", "data",
          "training", "created", "plugin", "source", "target", "class_map", "pairing", "paired_fraction",
          "source_node_created", "target_node_created"]


def _mutated(base: dict, changes: dict) -> dict:
    meta = dict(base)
    for key, value in changes.items():
        if value is None:
            meta.pop(key, None)
        else:
            meta[key] = value if isinstance(value, str) else json.dumps(value)
    return meta


def _config_values():
    """Sizes and shapes an attacker would pick: huge, negative, wrong types."""
    sizes = st.integers(-5, 10**7)
    return st.fixed_dictionaries({"vae": st.fixed_dictionaries(
        {"input_shape": st.lists(sizes, max_size=4), "latent_dim": sizes, "hidden": st.lists(sizes, max_size=3),
         "channels": st.lists(sizes, max_size=3)})}) | json_values


@pytest.mark.usefixtures("toy_data")
@FUZZ
@given(which=st.sampled_from(["toyimg", "toyaudio", "edge"]),
       changes=st.dictionaries(st.sampled_from(FIELDS), json_values | st.none() | _config_values(), max_size=4))
def test_any_header_reads_or_is_one_modgraph_error(trained, which, changes):
    registry = trained.registry
    path = registry.edge_path("toyimg", "toyaudio") if which == "edge" else registry.node_path(which)
    original = path.read_bytes()
    base = json.loads(original[8:8 + int.from_bytes(original[:8], "little")])["__metadata__"]
    try:
        save_file(load_file(str(path)), str(path), metadata=_mutated(base, changes))
        trained._nodes.clear()
        trained._edges.clear()
        try:
            trained.graph()
            trained.node("toyimg")
            trained.node("toyaudio")
            trained.associator("toyimg", "toyaudio")
            trained.translate("toyimg", "toyaudio", trained.features(trained.node("toyimg").modality, "test").x[:2])
            trained.translate("toyaudio", "toyimg", trained.features(trained.node("toyaudio").modality, "test").x[:2])
        except ModgraphError as exc:
            assert "\n" not in str(exc)
    finally:
        path.write_bytes(original)


@FUZZ
@given(data=st.binary(max_size=600))
def test_any_bytes_as_a_node_file_read_or_are_one_modgraph_error(trained, data):
    path = trained.registry.node_path("toyimg")
    original = path.read_bytes()
    try:
        path.write_bytes(data if len(data) % 2 else original[:8] + data)
        trained._nodes.clear()
        try:
            trained.graph()
            trained.node("toyimg")
        except ModgraphError as exc:
            assert "\n" not in str(exc)
    finally:
        path.write_bytes(original)
