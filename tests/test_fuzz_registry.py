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
    _node_reads_or_is_one_error(trained, lambda path, original: path.write_bytes(
        data if len(data) % 2 else original[:8] + data))


def _node_reads_or_is_one_error(trained, write) -> None:
    """toyimg's node file rewritten by ``write(path, original bytes)``: reading it works or is one ModgraphError."""
    path = trained.registry.node_path("toyimg")
    original = path.read_bytes()
    try:
        write(path, original)
        trained._nodes.clear()
        try:
            trained.graph()
            trained.node("toyimg")
        except ModgraphError as exc:
            assert "\n" not in str(exc)
    finally:
        path.write_bytes(original)


# -- issue 29: nesting, claimed sizes, archives --------------------------------------------------------------------
def _nested(depth: int, kinds: str) -> str:
    opening = "".join(kinds[i % len(kinds)] for i in range(depth))
    closing = "".join({"[": "]", "{": "}"}[c] for c in reversed(opening))
    return opening.replace("{", '{"k":') + "1" + closing


@FUZZ
@given(field=st.sampled_from(["config", "classes", "metrics", "options", "data", "preprocessing"]),
       depth=st.integers(1, 6000), kinds=st.sampled_from(["[", "{", "[{", "{["]))
def test_any_nesting_in_a_header_reads_or_is_one_modgraph_error(trained, field, depth, kinds):
    def write(path, original):
        base = json.loads(original[8:8 + int.from_bytes(original[:8], "little")])["__metadata__"]
        save_file(load_file(str(path)), str(path), metadata={**base, field: _nested(depth, kinds)})

    _node_reads_or_is_one_error(trained, write)


@FUZZ
@given(header_length=st.integers(0, 2**64 - 1), shape=st.lists(st.integers(0, 2**40), max_size=4),
       offsets=st.lists(st.integers(0, 2**63), min_size=2, max_size=2))
def test_any_claimed_size_reads_or_is_one_modgraph_error(trained, header_length, shape, offsets):
    """A header length, tensor shape or data offsets claiming more than the file holds never allocates them."""
    def write(path, original):
        length = int.from_bytes(original[:8], "little")
        header = json.loads(original[8:8 + length])
        name = next(k for k in header if k != "__metadata__")
        header[name].update(shape=shape, data_offsets=sorted(offsets))
        text = json.dumps(header).encode()
        path.write_bytes(header_length.to_bytes(8, "little") + original[8:] if header_length % 2
                         else len(text).to_bytes(8, "little") + text + original[8 + length:])

    _node_reads_or_is_one_error(trained, write)


@pytest.fixture
def exported_bytes(trained, tmp_path_factory):
    import gzip

    from modgraph.storage.archive import export_registry

    path = tmp_path_factory.mktemp("export") / "graph.tar"
    export_registry(trained.registry, path)
    return path.read_bytes(), gzip.compress(path.read_bytes(), compresslevel=1)


@FUZZ
@given(gzipped=st.booleans(), cuts=st.lists(st.tuples(st.floats(0, 1), st.binary(min_size=1, max_size=8)),
                                             min_size=1, max_size=4))
def test_any_damaged_archive_imports_or_is_one_modgraph_error(exported_bytes, tmp_path_factory, gzipped, cuts):
    """Bytes of an exported archive overwritten here and there: imported whole, or one error and nothing written."""
    from modgraph.storage.archive import import_archive
    from modgraph.storage.registry import Registry

    data = bytearray(exported_bytes[int(gzipped)])
    for where, junk in cuts:
        at = int(where * (len(data) - 1))
        data[at:at + len(junk)] = junk
    folder = tmp_path_factory.mktemp("damaged")
    (folder / "bad.tar").write_bytes(bytes(data))
    try:
        import_archive(Registry(folder / "registry"), folder / "bad.tar")
    except ModgraphError as exc:
        assert "\n" not in str(exc)
        assert not (folder / "registry").exists()
