"""What the recognizers understood: ``read``, ``translate --json``, doubts, and batches with bad files."""

from __future__ import annotations

import json
import math
import random
import wave

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import toyplugin
from modgraph.inference import readings
from modgraph.app.cli import main
from modgraph.learning.models import Associator, Recognizer, VAE
from modgraph.inference.readings import Reading, doubt

TRANSLATE_KEYS = {"input", "outputs", "read_as", "read_confidence", "written_as", "written_confidence"}
READ_KEYS = {"input", "read_as", "read_confidence"}


def image_file(path, label, seed=0):
    toyplugin.write_png(toyplugin.image_pattern(label, random.Random(seed)), path)
    return path


def json_lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


# -- the toy modalities, trained -----------------------------------------------------------------
def test_translate_rows_say_what_was_read_and_written(trained, tmp_path):
    sources = [image_file(tmp_path / f"in{label}.png", label) for label in range(3)]
    report = trained.translate_files("toyimg", "toyaudio", sources, tmp_path / "out")
    assert [r["input"] for r in report["rows"]] == [str(p) for p in sources]
    names_in, names_out = trained.node("toyimg").modality.class_names, trained.node("toyaudio").modality.class_names
    for label, row in enumerate(report["rows"]):
        assert set(row) == TRANSLATE_KEYS
        assert row["outputs"] == [str(tmp_path / "out" / f"in{label}.wav")]
        assert row["read_as"] == names_in[label]  # the toy recognizers are near perfect
        assert row["written_as"] in names_out and 0 < row["written_confidence"] <= 1
        assert 1 / len(names_in) < row["read_confidence"] <= 1


def test_written_as_is_the_target_recognizer_on_the_output(trained, tmp_path):
    source = image_file(tmp_path / "a.png", 1)
    row = trained.translate_files("toyimg", "toyaudio", [source], tmp_path / "out")["rows"][0]
    node = trained.node("toyaudio")
    x, _ = node.modality.read_file(tmp_path / "out" / "a.wav")
    [again] = readings.readings(node, node.modality.normalize(x.unsqueeze(0), node.stats))
    assert again.name == row["written_as"]


def test_samples_list_every_sample_and_written_as_is_the_first(trained, tmp_path):
    source = image_file(tmp_path / "a.png", 2)
    torch.manual_seed(0)
    [row] = trained.translate_files("toyimg", "toyaudio", [source], tmp_path / "out", samples=3)["rows"]
    assert len(row["outputs"]) == len(row["samples_written_as"]) == len(row["samples_written_confidence"]) == 3
    assert (row["written_as"], row["written_confidence"]) == (row["samples_written_as"][0],
                                                              row["samples_written_confidence"][0])


def test_cli_translate_json_prints_one_object_per_input(trained, toy_installed, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for label in range(3):
        image_file(folder / f"{label}.png", label)
    result = invoke("translate", "--from", "toyimg", "--to", "toyaudio", folder, "-o", tmp_path / "out", "--json")
    assert result.exit_code == 0, result.output
    rows = json_lines(result.output)
    assert [r["input"] for r in rows] == [str(folder / f"{label}.png") for label in range(3)]
    assert all(TRANSLATE_KEYS <= set(r) for r in rows)
    assert "Wrote" not in result.output  # only JSON lines on stdout


def test_cli_translate_says_what_it_understood(trained, toy_installed, tmp_path):
    source = image_file(tmp_path / "a.png", 0)
    result = invoke("translate", "--from", "toyimg", "--to", "toyaudio", source, "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    name = trained.node("toyimg").modality.class_names[0]
    assert f"{source}: toyimg read {name!r} (" in result.output and "toyaudio output read as '" in result.output


def test_cli_warns_in_one_line_when_a_reading_is_doubtful(trained, toy_installed, tmp_path, monkeypatch):
    monkeypatch.setattr(readings, "LOW_CONFIDENCE", 1.01)  # every reading is doubtful now
    source = image_file(tmp_path / "a.png", 0)
    result = invoke("translate", "--from", "toyimg", "--to", "toyaudio", source, "-o", tmp_path / "out")
    warnings = [line for line in result.output.splitlines() if line.startswith("Warning:")]
    assert len(warnings) == 2, result.output
    assert warnings[0].startswith(f"Warning: toyimg read {source} as '") and "% confidence: the output may be wrong" in warnings[0]
    assert warnings[1].startswith(f"Warning: toyaudio read the output for {source} as '")


def test_doubt_is_said_in_words():
    assert doubt("fsdd", "x.wav", Reading("7", 0.31)) == (
        "fsdd read x.wav as '7' with only 31% confidence: the output may be wrong")
    assert doubt("fsdd", "x.wav", Reading("7", 0.5)) is None


def test_read_command_names_the_class_of_each_file(trained, toy_installed, tmp_path):
    sources = [image_file(tmp_path / f"{label}.png", label) for label in range(3)]
    result = invoke("read", "--modality", "toyimg", *sources, "--json")
    assert result.exit_code == 0, result.output
    rows = json_lines(result.output)
    assert [set(r) for r in rows] == [READ_KEYS] * 3
    assert [r["read_as"] for r in rows] == trained.node("toyimg").modality.class_names[:3]
    text = invoke("read", "--modality", "toyimg", sources[1]).output
    assert text.startswith(f"{sources[1]}: toyimg read '{rows[1]['read_as']}' (")


@pytest.mark.parametrize("command", ["translate", "read"])
def test_a_batch_with_bad_files_does_the_good_ones_lists_the_bad_and_exits_1(trained, toy_installed, tmp_path, command):
    folder = tmp_path / "in"
    folder.mkdir()
    good = [image_file(folder / f"{label}.png", label) for label in range(2)]
    (folder / "broken.png").write_text("not an image")
    missing = tmp_path / "missing.png"
    args = (["translate", "--from", "toyimg", "--to", "toyaudio", "-o", tmp_path / "out"] if command == "translate"
            else ["read", "--modality", "toyimg"])
    result = invoke(*args, folder, missing, "--json")
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output
    assert [r["input"] for r in json_lines(result.output)] == [str(p) for p in good]
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 2 and errors[0].startswith(f"Error: {folder / 'broken.png'}:")
    assert errors[1] == f"Error: input file {missing} does not exist"
    if command == "translate":
        assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["0.wav", "1.wav"]


# -- every built-in modality, with untrained weights -------------------------------------------------
BUILT_IN = ["mnist", "fmnist", "gtsrb", "fsdd", "gsc", "text"]


@pytest.fixture
def built_in(isolated_env, monkeypatch, tmp_path):
    """A registry with a node (random weights) for every built-in modality and text <-> mnist edges."""
    from modgraph.api import ModGraph
    from modgraph.storage.registry import Registry

    monkeypatch.setenv("MODGRAPH_LOAD_PLUGINS", "modgraph-vision,modgraph-audio,modgraph-text")
    mg = ModGraph(device="cpu", progress=False)
    registry = Registry(isolated_env["registry"])
    files = {}
    torch.manual_seed(0)
    for name in BUILT_IN:
        modality = mg.modality(name)
        files[name] = sample_file(name, modality, tmp_path)
        raw, _ = modality.read_file(files[name])
        stats = modality.fit_normalization(torch.stack([raw, raw + 0.1, raw - 0.1]))
        vae, recognizer = VAE(modality.vae_config(8)), Recognizer(modality.recognizer_config())
        tensors = {**{f"vae.{k}": v for k, v in vae.state_dict().items()},
                   **{f"recognizer.{k}": v for k, v in recognizer.state_dict().items()}}
        registry.write(registry.node_path(name), tensors, {
            "kind": "modality", "name": name, "plugin": modality.distribution, "preprocessing": stats,
            "config": {"vae": vae.config.model_dump(mode="json"), "recognizer": recognizer.config.model_dump(mode="json")},
            "options": modality.options.model_dump(mode="json"), "classes": [c.model_dump() for c in modality.classes]})
    for src, dst in (("text", "mnist"), ("mnist", "text")):
        assoc = Associator(mg.modality(dst).associator_config(8, 8))
        registry.write(registry.edge_path(src, dst), {f"associator.{k}": v for k, v in assoc.state_dict().items()}, {
            "kind": "associator", "source": src, "target": dst, "config": {"associator": assoc.config.model_dump(mode="json")},
            "class_map": [[i, i] for i in range(10)], "pairing": "index", "paired_fraction": "1.0",
            "source_node_created": registry.node_metadata(src)["created"],
            "target_node_created": registry.node_metadata(dst)["created"]})
    return files


def sample_file(name: str, modality, folder):
    if name == "text":
        path = folder / "word.txt"
        path.write_text("seven\n")
    elif modality.output_suffix == ".wav":
        path = folder / f"{name}.wav"
        rate = 16000 if name == "gsc" else 8000
        frames = bytes(b for i in range(rate // 2)
                       for b in int(8000 * math.sin(2 * math.pi * 440 * i / rate)).to_bytes(2, "little", signed=True))
        with wave.open(str(path), "wb") as out:
            out.setnchannels(1), out.setsampwidth(2), out.setframerate(rate), out.writeframes(frames)
    else:
        path = folder / f"{name}.png"
        image = Image.new("RGB", (40, 30), (250, 250, 250))
        image.paste((20, 20, 200), (10, 5, 25, 25))  # a blue block on a white page
        image.save(path)
    return path


@pytest.mark.parametrize("name", BUILT_IN)
def test_read_json_has_the_keys_for_every_built_in_modality(built_in, name):
    from modgraph.api import ModGraph

    result = invoke("read", "--modality", name, built_in[name], "--json")
    assert result.exit_code == 0, result.output
    [row] = json_lines(result.output)
    assert set(row) == READ_KEYS and row["input"] == str(built_in[name])
    assert row["read_as"] in ModGraph().modality(name).class_names and 0 < row["read_confidence"] <= 1


def test_read_and_translate_literal_text_name_the_text(built_in, tmp_path):
    [row] = json_lines(invoke("read", "--modality", "text", "--text", "seven", "--json").output)
    assert set(row) == READ_KEYS and row["input"] == "seven"
    result = invoke("translate", "--from", "text", "--to", "mnist", "--text", "seven", "--text", "two",
                    built_in["text"], "-o", tmp_path / "out", "--json")
    assert result.exit_code == 0, result.output
    rows = json_lines(result.output)
    assert [r["input"] for r in rows] == [str(built_in["text"]), "seven", "two"]
    assert all(set(r) == TRANSLATE_KEYS for r in rows)
    assert all(r["written_as"] in [str(d) for d in range(10)] for r in rows)
    result = invoke("translate", "--from", "mnist", "--to", "text", built_in["mnist"], "-o", tmp_path / "back", "--json")
    [row] = json_lines(result.output)
    assert set(row) == TRANSLATE_KEYS and row["read_as"] in [str(d) for d in range(10)]
