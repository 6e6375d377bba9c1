"""Hostile and odd inputs to the registry and the CLI: each ends in one clear line or a correct result.

Every case here was once a traceback, a hang, a deleted file outside the registry or a
silently stale edge (issue 17); docs/reliability.md says what each test guarantees.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from no_hang import deadline
from safetensors.torch import load_file, save_file

from modgraph.learning import cross_modal as linking
from modgraph.app.cli import main
from modgraph.errors import ConfigError, ModgraphError, RegistryCorruptError

pytestmark = pytest.mark.usefixtures("toy_installed")


def _file(path):
    path.write_text("x")
    return path


def cli(*args):
    return CliRunner().invoke(main, list(args))


def snapshot(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def rewrite_header(path, **changes):
    """Rewrite a registry file's header fields (JSON-encoded unless a string), keeping its tensors."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata())
    for key, value in changes.items():
        if value is None:
            meta.pop(key, None)
        else:
            meta[key] = value if isinstance(value, str) else json.dumps(value)
    save_file(load_file(str(path)), str(path), metadata=meta)


# -- concurrent writers ------------------------------------------------------------------------------
def test_a_link_whose_node_is_retrained_meanwhile_writes_nothing(trained, monkeypatch):
    registry = trained.registry
    before = snapshot(registry.root)
    train_edge = linking.train_edge

    def retrain_in_between(mg, src, dst, *args):
        edge = train_edge(mg, src, dst, *args)
        path = registry.node_path("toyaudio")  # another process rewrites the node: a new `created`
        with registry.lock():
            registry.write(path, load_file(str(path)), {k: v for k, v in registry.node_metadata("toyaudio").items()
                                                        if k not in ("created", "format_version")})
        return edge

    monkeypatch.setattr(linking, "train_edge", retrain_in_between)
    with pytest.raises(ConfigError, match="'toyaudio' was retrained while linking; nothing was written"):
        trained.link("toyimg", "toyaudio", epochs=1, one_way=True)
    after = snapshot(registry.root)
    assert after[next(p for p in after if p.name == "toyimg--toyaudio.safetensors")] == \
        before[next(p for p in before if p.name == "toyimg--toyaudio.safetensors")]


# -- names and paths --------------------------------------------------------------------------------------
@pytest.mark.parametrize("args", [
    ["remove-modality", "../../victim"],
    ["remove-modality", "../nodes/toyimg"],
    ["unlink", "../../evil", "toyimg", "--one-way"],
    ["unlink", "toyimg", "../evil"],
    ["remove-modality", "TOYIMG"],
])
def test_a_name_that_is_not_a_modality_name_never_becomes_a_path(trained, tmp_path, args):
    victim = tmp_path / "victim.safetensors"
    victim.write_bytes(b"precious")
    (trained.registry.root / "evil.safetensors").write_bytes(b"precious")
    before = snapshot(trained.registry.root)
    result = cli(*args)
    assert result.exit_code == 1 and "is not a modality name" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert victim.read_bytes() == b"precious" and snapshot(trained.registry.root) == before


def test_a_linked_edges_folder_is_refused_and_nothing_outside_is_deleted(trained, tmp_path):
    outside = tmp_path / "elsewhere"
    (trained.registry.root / "edges").rename(outside)
    (trained.registry.root / "edges").symlink_to(outside)
    kept = sorted(p.name for p in outside.iterdir())
    result = cli("remove-modality", "toyimg")
    assert result.exit_code == 1 and "symbolic link" in result.output
    assert sorted(p.name for p in outside.iterdir()) == kept
    assert (trained.registry.root / "nodes" / "toyimg.safetensors").exists()


# -- special files and sizes ----------------------------------------------------------------------------------
@pytest.mark.parametrize("command", [["graph"], ["route", "toyimg", "toyaudio"],
                                     ["eval", "--from", "toyimg", "--to", "toyaudio"]])
def test_a_fifo_in_place_of_a_file_is_refused_not_waited_on(trained, command):
    path = trained.registry.root / "edges" / "toyimg--toyaudio.safetensors"
    path.unlink()
    os.mkfifo(path)
    result = cli(*command)  # would block forever if the FIFO were opened
    assert result.exit_code == 1 and "not a regular file" in result.output


def test_a_header_describing_a_huge_model_is_refused_before_it_is_built(trained):
    path = trained.registry.node_path("toyimg")
    config = trained.registry.node_metadata("toyimg")["config"]
    config["vae"]["hidden"] = [60_000, 60_000]  # each width under the cap, together far over it
    rewrite_header(path, config=config)
    with pytest.raises(RegistryCorruptError, match="parameters, more than"):
        trained.node("toyimg")


def test_a_header_claiming_more_bytes_than_the_file_is_refused(trained):
    path = trained.registry.node_path("toyimg")
    data = bytearray(path.read_bytes())
    data[:8] = (10**12).to_bytes(8, "little")
    path.write_bytes(bytes(data))
    result = cli("graph")
    assert result.exit_code == 1 and "header" in result.output and str(path) in result.output


@pytest.mark.parametrize("field, value, words", [
    ("options", ["copies", 1], "options"),
    ("config", [1, 2], "config"),
    ("class_map", None, "class_map"),
    ("class_map", [[0, 99]], "maps classes its modalities do not have"),
])
def test_header_fields_of_the_wrong_shape_are_one_line(trained, field, value, words):
    path = (trained.registry.node_path("toyimg") if field == "options"
            else trained.registry.edge_path("toyimg", "toyaudio"))
    rewrite_header(path, **{field: value})
    result = cli("graph")
    assert result.exit_code == 1, result.output
    assert len(result.output.strip().splitlines()) == 1 and words in result.output and str(path) in result.output


def test_an_edge_file_whose_header_names_another_edge_is_refused(trained):
    path = trained.registry.edge_path("toyimg", "toyaudio")
    rewrite_header(path, source="toycolor")
    assert "holds the associator toycolor" in cli("graph").output


# -- writing -----------------------------------------------------------------------------------------------------
def test_a_failed_write_is_one_line_and_leaves_the_old_file(trained, monkeypatch):
    import safetensors.torch

    before = snapshot(trained.registry.root)

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save", disk_full)
    with pytest.raises(ModgraphError, match="could not write .*toyimg.safetensors: No space left"):
        trained.add_modality("toyimg", epochs=1, recognizer_epochs=1)
    assert snapshot(trained.registry.root) == before


def test_an_unwritable_registry_is_one_line(trained, monkeypatch):
    import filelock

    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(trained.registry.root / ".lock"))

    monkeypatch.setattr(filelock.FileLock, "acquire", refuse)
    for args in (["remove-modality", "toyimg"], ["unlink", "toyimg", "toyaudio"]):
        result = cli(*args)
        assert result.exit_code == 1 and "cannot lock registry" in result.output and "writable" in result.output
        assert len(result.output.strip().splitlines()) == 1


def test_a_linked_lock_file_is_refused(trained, tmp_path):
    (trained.registry.root / ".lock").unlink(missing_ok=True)
    (trained.registry.root / ".lock").symlink_to(tmp_path / "elsewhere.lock")
    result = cli("unlink", "toyimg", "toyaudio")
    assert result.exit_code == 1 and "symbolic link" in result.output
    assert not (tmp_path / "elsewhere.lock").exists()


def test_files_follow_the_umask(make_graph, toy_data):
    old = os.umask(0o022)
    try:
        make_graph().add_modality("toyimg", epochs=1, recognizer_epochs=1)
    finally:
        os.umask(old)
    mode = stat.S_IMODE(os.stat(make_graph().registry.node_path("toyimg")).st_mode)
    assert mode == 0o644


def test_leftover_temporaries_are_removed_under_the_lock(trained):
    leftover = trained.registry.root / "nodes" / ".toyimg.safetensors.123.456.tmp"
    leftover.write_bytes(b"x" * 1000)
    with trained.registry.lock():
        pass
    assert not leftover.exists()


def test_an_interrupted_pair_is_stale_until_the_next_writer_completes_it(trained):
    registry = trained.registry
    edges = registry.root / "edges"
    new = load_file(str(edges / "toyaudio--toyimg.safetensors"))
    meta = registry.edge_metadata("toyaudio", "toyimg")
    # A writer died after writing both temporaries and the journal, having renamed only the first.
    (edges / ".toyaudio--toyimg.safetensors.1.2.tmp").write_bytes((edges / "toyaudio--toyimg.safetensors").read_bytes())
    (edges / ".pair-abc.json").write_text(json.dumps([[".toyimg--toyaudio.safetensors.1.1.tmp",
                                                       "toyimg--toyaudio.safetensors"],
                                                      [".toyaudio--toyimg.safetensors.1.2.tmp",
                                                       "toyaudio--toyimg.safetensors"]]))
    g = registry.graph()
    assert g.edges["toyaudio", "toyimg"]["stale"] and g.edges["toyimg", "toyaudio"]["stale"]
    with registry.lock():
        pass
    assert not (edges / ".pair-abc.json").exists()
    g = registry.graph()
    assert not g.edges["toyaudio", "toyimg"]["stale"] and not g.edges["toyimg", "toyaudio"]["stale"]
    assert registry.edge_metadata("toyaudio", "toyimg")["created"] == meta["created"]
    assert all(torch.equal(new[k], v) for k, v in load_file(str(edges / "toyaudio--toyimg.safetensors")).items())


# -- terminal and small things ---------------------------------------------------------------------------------
def test_graph_prints_no_escape_sequences_from_headers(trained):
    rewrite_header(trained.registry.node_path("toyimg"), plugin="evil\x1b[2J\x1b]0;pwned\x07")
    for fmt in ("text", "dot"):
        result = cli("graph", "--format", fmt)
        assert result.exit_code == 0 and "\x1b" not in result.output and "\x07" not in result.output
    assert "\\u001b" in cli("graph", "--format", "json").output


def test_eval_of_no_rows_is_an_error_not_nan(trained):
    result = cli("eval", "--from", "toyaudio", "--to", "toyimg", "--include", "speaker=nobody")
    assert result.exit_code == 1 and "no test rows of toyaudio to evaluate with --include speaker=nobody" \
        in result.output


def test_an_empty_input_name_is_refused(trained):
    result = cli("translate", "--from", "toyimg", "--to", "toyaudio", "")
    assert result.exit_code == 1 and "an input name is empty" in result.output


@pytest.mark.parametrize("make_output, words", [
    (lambda tmp: _file(tmp / "plainfile"), "is an existing file"),
    (lambda tmp: __import__("pathlib").Path("/dev/null"), "is an existing file"),
    (lambda tmp: _file(tmp / "afile.txt") / "out", "is a file, not a folder"),
])
def test_odd_output_places_are_one_line(trained, tmp_path, make_output, words):
    img = next((trained.data_root / "toyimg" / "test").rglob("*.png"))
    result = cli("translate", "--from", "toyimg", "--to", "toyaudio", str(img), "-o", str(make_output(tmp_path)))
    assert result.exit_code == 1 and words in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1


# -- issue 29: bounded by what a file claims ----------------------------------------------------------------------
READERS = [["graph"], ["card"], ["route", "toyimg", "toyaudio"], ["export", "out.tar"]]


@pytest.mark.parametrize("make", ["fifo", "zero", "garbage", "folder"])
def test_a_bad_journal_never_blocks_or_eats_memory_and_is_stale(trained, tmp_path, make):
    journal = trained.registry.root / "edges" / ".pair-0123.json"
    if make == "fifo":
        os.mkfifo(journal)
    elif make == "zero":
        journal.symlink_to("/dev/zero")  # read, never written: a reader must not follow it
    elif make == "garbage":
        journal.write_text("[" * 10_000)
    else:
        journal.mkdir()
    with deadline(60):
        if make == "fifo":  # the real command line: one warning line on stderr, then the graph
            done = subprocess.run([sys.executable, "-m", "modgraph", "graph"], capture_output=True, text=True,
                                  timeout=120)
            assert done.returncode == 0 and "toyimg -> toyaudio" in done.stdout, done.stderr
            assert done.stderr.startswith("Warning: registry journal") and done.stderr.count("\n") == 1, done.stderr
        for command in READERS:  # export last: it takes the lock, which removes the journal
            result = cli(*command)
            assert result.exit_code == 0, (command, result.output)
            assert "Traceback" not in result.output
        assert not trained.registry.graph().edges["toyimg", "toyaudio"]["stale"]
        with trained.registry.lock():  # the next writer removes it (a link is removed, not followed)
            pass
    assert not os.path.lexists(journal) and os.path.exists("/dev/zero")


@pytest.mark.parametrize("field", ["config", "classes", "metrics"])
def test_a_deeply_nested_header_field_is_one_line(trained, tmp_path, field):
    rewrite_header(trained.registry.node_path("toyimg"), **{field: "[" * 5000 + "]" * 5000})
    img = next((trained.data_root / "toyimg" / "test").rglob("*.png"))
    for command in [*READERS, ["translate", "--from", "toyimg", "--to", "toyaudio", str(img), "-o", "outs"]]:
        result = cli(*command)
        assert result.exit_code == 1, (command, result.output)
        assert len(result.output.strip().splitlines()) == 1 and "deeper than 64" in result.output, result.output


def test_a_header_of_200000_one_unit_layers_is_refused_at_once(trained):
    path = trained.registry.node_path("toyimg")
    config = trained.registry.node_metadata("toyimg")["config"]
    config["vae"]["hidden"] = [1] * 200_000
    rewrite_header(path, config=config)
    start = time.monotonic()
    with pytest.raises(RegistryCorruptError, match="at most 16"):
        trained.node("toyimg")
    assert time.monotonic() - start < 5


@pytest.mark.parametrize("part, key, value, words", [
    ("recognizer", "hidden", 10**9, "65536"),
    ("vae", "input_shape", [1, 60_000, 60_000], "16,777,216 allowed"),  # few parameters, a 29 GB probe batch
])
def test_a_dimension_over_the_cap_is_refused(trained, part, key, value, words):
    config = trained.registry.node_metadata("toyimg")["config"]
    config[part][key] = value
    rewrite_header(trained.registry.node_path("toyimg"), config=config)
    with pytest.raises(RegistryCorruptError, match=words):
        trained.registry.load_node("toyimg")


# -- issue 29: files that are each valid but disagree ---------------------------------------------------------------
def test_an_edge_whose_dims_disagree_with_its_node_names_both_files(trained):
    path = trained.registry.edge_path("toyimg", "toyaudio")
    config = trained.registry.edge_metadata("toyimg", "toyaudio")["config"]
    config["associator"]["source_dim"] = 32
    rewrite_header(path, config=config)
    img = next((trained.data_root / "toyimg" / "test").rglob("*.png"))
    result = cli("translate", "--from", "toyimg", "--to", "toyaudio", str(img), "-o", "outs")
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1, result.output
    assert str(path) in result.output and str(trained.registry.node_path("toyimg")) in result.output
    assert "source_dim 32" in result.output and not os.path.exists("outs")


def test_a_node_whose_input_shape_is_not_its_modality_s_is_one_line(trained):
    path = trained.registry.node_path("toyimg")
    config = trained.registry.node_metadata("toyimg")["config"]
    config["vae"]["input_shape"] = [1, 32, 32]
    rewrite_header(path, config=config)
    result = cli("eval", "--from", "toyimg", "--to", "toyaudio")
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1, result.output
    assert str(path) in result.output and "takes inputs shaped (1, 32, 32)" in result.output


def test_non_finite_weights_are_refused_before_any_output_is_written(trained, tmp_path):
    path = trained.registry.node_path("toyaudio")
    tensors = load_file(str(path))
    name = next(k for k in tensors if k.startswith("vae.decoder"))
    tensors[name][...] = float("nan")
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        save_file(tensors, str(path), metadata=f.metadata())
    img = next((trained.data_root / "toyimg" / "test").rglob("*.png"))
    result = cli("translate", "--from", "toyimg", "--to", "toyaudio", str(img), "-o", str(tmp_path / "outs"))
    assert result.exit_code == 1 and "non-finite weights" in result.output and str(path) in result.output
    assert not (tmp_path / "outs").exists() or not any((tmp_path / "outs").iterdir())


# -- issue 29: leftovers and removal ----------------------------------------------------------------------------------
def test_a_save_leaves_only_temporaries_that_cleanup_removes(trained, monkeypatch):
    import modgraph.storage.registry as registry_module

    made = []
    real_replace = os.replace

    def record(src, dst):
        made.append(Path(src).name)
        real_replace(src, dst)

    monkeypatch.setattr(registry_module.os, "replace", record)
    trained.add_modality("toycolor", epochs=1, recognizer_epochs=1)
    from modgraph.storage.journal import TEMPORARY

    assert made and all(TEMPORARY.match(name) for name in made)
    leftovers = [trained.registry.root / "nodes" / ".tmpAbC123", trained.registry.root / "edges" / ".x.1.2.tmp",
                 trained.registry.root / ".import-00ff.tmp"]
    leftovers[0].write_bytes(b"x" * 1000)  # what safetensors' own save_file left when killed
    leftovers[1].write_bytes(b"x")
    (leftovers[2] / "nodes").mkdir(parents=True)
    with trained.registry.lock():
        pass
    assert not any(os.path.lexists(p) for p in leftovers)


def test_remove_modality_deletes_nothing_when_a_file_is_a_folder(trained):
    node = trained.registry.node_path("toycolor")
    node.unlink()
    node.mkdir()
    edges = sorted(p.name for p in (trained.registry.root / "edges").iterdir())
    result = cli("remove-modality", "toycolor")
    assert result.exit_code == 1 and "not a regular file" in result.output
    assert sorted(p.name for p in (trained.registry.root / "edges").iterdir()) == edges


@pytest.mark.parametrize("make, words", [
    (lambda p: os.mkfifo(p), "not a regular file"),
    (lambda p: p.write_text("x = " + "[" * 5000 + "]" * 5000 + "\n"), "deeper than 64"),
    (lambda p: p.write_text(".".join(["a"] * 3000) + " = 1\n"), "deeper than 64"),
])
def test_an_options_file_is_read_bounded_and_never_waited_on(toy_data, tmp_path, make, words):
    path = tmp_path / "options.toml"
    make(path)
    with deadline(60):
        result = cli("add-modality", "toyimg", "--options-file", str(path), "--epochs", "1")
    assert result.exit_code == 1 and words in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1


def test_a_journal_never_lands_a_file_through_a_linked_folder(trained, tmp_path):
    registry = trained.registry.root
    outside = tmp_path / "outside"
    (registry / "nodes").rename(outside)
    (registry / "nodes").symlink_to(outside)
    staged = registry / ".import-00ff.tmp" / "nodes"
    staged.mkdir(parents=True)
    (staged / "evil.safetensors").write_bytes(b"planted")
    (registry / ".import-00ff.json").write_text(json.dumps([[".import-00ff.tmp/nodes/evil.safetensors",
                                                            "nodes/evil.safetensors"]]))
    result = cli("unlink", "toyimg", "toyaudio")
    assert result.exit_code == 1 and "symbolic link" in result.output
    assert not (outside / "evil.safetensors").exists()


def test_a_recognizer_of_more_classes_than_the_header_lists_is_one_line(trained):
    path = trained.registry.node_path("toyimg")
    config = trained.registry.node_metadata("toyimg")["config"]
    config["recognizer"]["num_classes"] = 10
    rewrite_header(path, config=config)
    result = cli("eval", "--from", "toyimg", "--to", "toyaudio")
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1, result.output
    assert str(path) in result.output and "tells 10 classes apart but its header lists 3" in result.output
