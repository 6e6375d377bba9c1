"""The ``modgraph`` command through click's CliRunner, with the toy plugin installed as an entry point."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from modgraph.app.cli import main

pytestmark = pytest.mark.usefixtures("toy_installed")
QUICK = ["--epochs", "1", "--recognizer-epochs", "1"]
TRANSLATE = ["translate", "--from", "toyimg", "--to", "toyaudio"]
EVAL = ["eval", "--from", "toyimg", "--to", "toyaudio"]


def run(*args: str, ok: bool = True):
    result = CliRunner().invoke(main, list(args))
    if ok:
        assert result.exit_code == 0, result.output
    return result


def snapshot(root):
    """Every file under the registry with its bytes: "unchanged" means equal snapshots."""
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_help_lists_every_command():
    result = run("--help")
    commands = ("plugins", "add-modality", "remove-modality", "link", "unlink", "route", "translate", "eval", "graph")
    for command in commands:
        assert command in result.output
    assert "modgraph, version 0.1.0" in run("--version").output


def test_add_modality_link_route_and_eval(toy_data, isolated_env):
    result = run("add-modality", "toyaudio", *QUICK, "--latent-dim", "3", "--device", "cpu")
    node = isolated_env["registry"] / "nodes" / "toyaudio.safetensors"
    assert f"Wrote {node} (latent 3)" in result.output
    assert "recognizer test accuracy:" in result.output and "(n=18)" in result.output
    run("add-modality", "toycolor", *QUICK, "--seed", "2")
    result = run("link", "toyaudio", "toycolor", "--pairing", "index", "--epochs", "1", "--paired-fraction", "0.5")
    assert f"Wrote {isolated_env['registry'] / 'edges' / 'toyaudio--toycolor.safetensors'}" in result.output
    assert "toycolor->toyaudio: test accuracy" in result.output
    assert run("route", "toyaudio", "toycolor").output.strip() == "toyaudio -> toycolor"

    result = run("eval", "--from", "toyaudio", "--to", "toycolor", "--json")
    report = json.loads(result.output)
    assert {"source", "target", "path", "split", "n", "accuracy"} <= set(report)
    assert (report["source"], report["target"], report["path"], report["split"], report["n"]) == (
        "toyaudio", "toycolor", ["toyaudio", "toycolor"], "test", 18)
    assert 0.0 <= report["accuracy"] <= 1.0
    text = run("eval", "--from", "toyaudio", "--to", "toyaudio", "--split", "all").output
    assert text.startswith("toyaudio on all: accuracy ") and "(n=90)" in text


def test_add_modality_options_and_exclude(toy_data, tmp_path):
    options = tmp_path / "options.toml"
    options.write_text("copies = 1\n")
    run("add-modality", "toyimg", *QUICK, "--options-file", str(options))
    run("add-modality", "toyaudio", *QUICK, "--exclude", "speaker=ann")
    nodes = {n["name"]: n for n in json.loads(run("graph", "--format", "json").output)["nodes"]}
    assert nodes["toyimg"]["options"] == {"copies": 1}
    result = run("graph")
    assert 'options {"copies": 1}' in result.output


def test_route_via_and_cascade(trained):
    assert run("route", "toyimg", "toycolor").output.strip() == "toyimg -> toyaudio -> toycolor"
    assert run("route", "toyimg", "toyimg", "--via", "toyaudio").output.strip() == "toyimg -> toyaudio -> toyimg"
    report = json.loads(run("eval", "--from", "toyimg", "--to", "toycolor", "--json").output)
    assert report["path"] == ["toyimg", "toyaudio", "toycolor"]
    report = json.loads(run("eval", "--from", "toyaudio", "--to", "toyimg", "--include", "speaker=bob",
                            "--json").output)
    assert report["n"] == 9


def test_graph_formats(trained, isolated_env):
    text = run("graph").output
    assert text.startswith(f"Registry {isolated_env['registry']}: 3 modalities, 4 associators")
    assert "toyimg     latent 6" in text and "plugin modgraph-toy" in text
    assert "toyimg -> toyaudio: accuracy" in text and "pairing concept" in text
    assert "toyaudio -> toycolor:" in text and "pairing index" in text

    info = json.loads(run("graph", "--format", "json").output)
    assert info["registry"] == str(isolated_env["registry"])
    assert sorted(n["name"] for n in info["nodes"]) == ["toyaudio", "toycolor", "toyimg"]
    assert {(e["source"], e["target"]) for e in info["edges"]} == {
        ("toyimg", "toyaudio"), ("toyaudio", "toyimg"), ("toyaudio", "toycolor"), ("toycolor", "toyaudio")}
    assert all(e["stale"] is False and 0 <= e["metrics"]["accuracy"] <= 1 for e in info["edges"])

    dot = run("graph", "--format", "dot").output.strip().splitlines()
    assert dot[0] == "digraph modgraph {" and dot[-1] == "}"
    assert any(line.strip().startswith('"toyimg" [label="toyimg\\nlatent 6') for line in dot)
    assert any(line.strip().startswith('"toyimg" -> "toyaudio" [label="') for line in dot)


def test_stale_edges_show_in_graph_and_route(trained):
    run("add-modality", "toycolor", *QUICK)
    assert "STALE: re-link" in run("graph").output
    assert "style=dashed" in run("graph", "--format", "dot").output
    result = run("route", "toyimg", "toycolor", ok=False)
    assert result.exit_code == 1 and "stale" in result.output and "modgraph link toyimg toycolor" in result.output


def test_link_with_few_pairs_says_how_its_sources_were_labelled(trained, monkeypatch):
    out = run("link", "toyaudio", "toyimg", "--one-way", "--paired-fraction", "0.25", "--epochs", "1").output
    assert "unpaired ones, labelled by spreading (confidence >= 0.5;" in out
    audio = type(trained.node("toyaudio").modality)
    monkeypatch.setattr(audio, "training_defaults",
                        audio.training_defaults.model_copy(update={"link_spread_balance": "speaker"}))
    out = run("link", "toyaudio", "toyimg", "--one-way", "--paired-fraction", "0.25", "--epochs", "1").output
    assert "labelled by spreading balanced within each speaker (confidence >= 0.5;" in out


def test_remove_modality_and_unlink(trained, isolated_env):
    edges = isolated_env["registry"] / "edges"
    result = run("unlink", "toyimg", "toyaudio", "--one-way")
    assert result.output.strip() == f"Removed {edges / 'toyimg--toyaudio.safetensors'}"
    result = run("unlink", "toyaudio", "toycolor")
    assert len(result.output.strip().splitlines()) == 2
    result = run("remove-modality", "toyimg")
    assert result.output.strip().splitlines() == [
        f"Removed {isolated_env['registry'] / 'nodes' / 'toyimg.safetensors'}",
        f"Removed {edges / 'toyaudio--toyimg.safetensors'}"]
    assert sorted(p.name for p in (isolated_env["registry"] / "nodes").iterdir()) == [
        "toyaudio.safetensors", "toycolor.safetensors"]
    assert not list(edges.iterdir())


@pytest.mark.parametrize("args, message", [
    (["add-modality", "toyimg", "--epochs", "0"], "Error: invalid add-modality settings: epochs: Input should be greater than or equal to 1, got 0"),
    (["add-modality", "toyimg", "--latent-dim", "0"], "Error: invalid add-modality settings: latent_dim: Input should be greater than or equal to 1"),
    (["add-modality", "toyimg", "--lr", "-1"], "Error: invalid add-modality settings: lr: Input should be greater than 0"),
    (["add-modality", "toyimg", "--option", "copies=9"], "Error: invalid options for 'toyimg': copies:"),
    (["add-modality", "toyimg", "--option", "copies"], "Error: Invalid value for --option: 'copies' is not key=value"),
    (["add-modality", "toyimg", "--exclude", "speaker"], "Error: Invalid value for --exclude"),
    (["add-modality", "toyimg", "--epochs", "two"], "Error: Invalid value for '--epochs': 'two' is not a valid"),
    (["add-modality", "toyimg", "--epochs", "1", "--lr", "1e30"], "Error: VAE training diverged"),
    (["add-modality", "nothing"], "Error: unknown modality 'nothing'"),
    (["link", "toyimg", "toyaudio", "--epochs", "0"], "Error: invalid link settings: epochs: Input should be greater than or equal to 1, got 0"),
    (["link", "toyimg", "toyaudio", "--paired-fraction", "2"], "Error: invalid link settings: paired_fraction: Input should be less than or equal to 1, got 2.0"),
    (["link", "toyimg", "toyaudio", "--paired-fraction", "0"], "Error: invalid link settings: paired_fraction: Input should be greater than 0"),
    (["link", "toyimg", "toyaudio", "--pairing", "foo"], "Error: Invalid value for '--pairing': 'foo' is not one of"),
    (["link", "toyimg", "toyaudio", "--candidates", "0"], "Error: invalid link settings: candidates: Input should be greater than or equal to 1"),
    (["link", "toyimg", "toycolor"], "Error: toyimg and toycolor share no concept"),
    (["link", "toyimg", "toyimg"], "Error: cannot link 'toyimg' to itself"),
    (["link", "toyimg", "nothing"], "Error: modality 'nothing' is not in registry"),
    (["route", "toyimg", "nothing"], "Error: modality 'nothing' is not in the registry"),
    (["unlink", "toyimg", "toycolor"], "Error: no associator toyimg -> toycolor"),
    (["remove-modality", "nothing"], "Error: modality 'nothing' is not in registry"),
    ([*EVAL, "--split", "val"], "Error: Invalid value for '--split'"),
    ([*EVAL, "--include", "speaker=ann"], "Error: these data have no 'speaker'"),
    ([*TRANSLATE, "missing.png"], "Error: input file missing.png does not exist"),
    ([*TRANSLATE, "--samples", "0", "x.png"], "Error: invalid translate settings: samples: Input should be greater"),
    ([*TRANSLATE, "--device", "tpu", "x.png"], "Error: Invalid value for '--device'"),
])
def test_bad_values_are_one_line_errors_and_change_nothing(trained, isolated_env, args, message):
    before = snapshot(isolated_env["registry"])
    result = CliRunner().invoke(main, args)
    assert result.exit_code != 0
    assert isinstance(result.exception, SystemExit), result.exception  # handled, not escaped
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and errors[0].startswith(message), result.output
    assert snapshot(isolated_env["registry"]) == before
    assert not [p for p in isolated_env["registry"].rglob("*") if p.name.endswith(".tmp")]


def test_cli_without_data_says_how_to_get_it(isolated_env):
    result = CliRunner().invoke(main, ["add-modality", "toycolor", *QUICK])
    assert result.exit_code == 1
    [line] = [line for line in result.output.strip().splitlines() if line.startswith("Error")]
    assert line.startswith("Error: toycolor data not found in") and "--download" in line
    result = run("add-modality", "toycolor", *QUICK, "--download")
    assert (isolated_env["data"] / "toycolor" / "train.csv").is_file()


def test_registry_and_data_root_options_override_the_environment(toy_data, tmp_path):
    other = tmp_path / "elsewhere"
    run("add-modality", "toycolor", *QUICK, "--registry", str(other), "--data-root", str(toy_data))
    assert (other / "nodes" / "toycolor.safetensors").is_file()
    assert "1 modalities" in run("graph", "--registry", str(other)).output
    empty = run("graph", ok=False)  # the environment's registry was never created: said in one line
    assert empty.exit_code == 1 and empty.output.startswith("Error: no registry at ")


def test_eval_reports_each_class_in_text_and_json(trained):
    text = run("eval", "--from", "toyaudio", "--to", "toycolor").output.splitlines()
    assert text[0].startswith("toyaudio -> toycolor on test: accuracy ")
    assert text[1] == "  per class of toycolor:"
    rows = {line.split()[0]: line.split()[1] for line in text[2:]}
    assert set(rows) == {"red", "green", "blue"} and all(v.endswith("%") for v in rows.values())
    report = json.loads(run("eval", "--from", "toyaudio", "--to", "toycolor", "--json").output)
    assert {k: f"{100 * v:.2f}%" for k, v in report["per_class"].items()} == rows


def test_graph_text_names_each_nodes_classes(trained):
    text = run("graph").output
    assert "    3 classes: red, green, blue" in text and "    3 classes: 0, 1, 2" in text
    nodes = {n["name"]: n for n in json.loads(run("graph", "--format", "json").output)["nodes"]}
    assert nodes["toycolor"]["classes"] == ["red", "green", "blue"]
