"""Translating files: real files in, the target's real files out, outputs, samples, folders, bad inputs."""

from __future__ import annotations

import wave
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import toyplugin
from toyplugin import image_file, wav_file
from modgraph.app.cli import main
from modgraph.errors import ConfigError, InputFileError, ModgraphError


def recognized(graph, name: str, x: torch.Tensor) -> int:
    """The class the modality's recognizer sees in raw features ``x`` (one sample)."""
    node = graph.node(name)
    with torch.no_grad():
        return int(node.recognizer(node.modality.normalize(x.unsqueeze(0), node.stats)).argmax(1))


def test_an_image_becomes_a_wav_of_the_same_concept(trained, tmp_path):
    source = image_file(tmp_path / "in" / "two.png", label=2)
    report = trained.translate_files("toyimg", "toyaudio", [source], tmp_path / "out")
    assert report["path"] == ["toyimg", "toyaudio"]
    assert report["written"] == [str(tmp_path / "out" / "two.wav")]
    with wave.open(report["written"][0], "rb") as fh:  # a real wav file
        assert (fh.getnchannels(), fh.getsampwidth(), fh.getframerate()) == (1, 2, toyplugin.AUDIO_RATE)
        assert fh.getnframes() == toyplugin.AUDIO_LENGTH
    clip, _ = toyplugin.read_wav(Path(report["written"][0]))
    assert recognized(trained, "toyaudio", clip) == 2


def test_a_wav_becomes_a_png_through_the_cascade_and_back(trained, tmp_path):
    source = wav_file(tmp_path / "one.wav", label=1)
    out = trained.translate_files("toyaudio", "toyimg", [source], tmp_path / "img.png")
    with Image.open(out["written"][0]) as image:
        assert (image.format, image.mode, image.size) == ("PNG", "L", (8, 8))
    picture, _ = toyplugin.read_png(Path(out["written"][0]))
    assert recognized(trained, "toyimg", picture) == 1

    colour = trained.translate_files("toyimg", "toycolor", [out["written"][0]], tmp_path / "colour.csv")
    assert colour["path"] == ["toyimg", "toyaudio", "toycolor"]
    vector, _ = toyplugin.ToyColor().read_file(Path(colour["written"][0]))
    assert vector.shape == (toyplugin.COLOR_DIM,)
    assert recognized(trained, "toycolor", vector) == 1  # one -> class 1 (index pairing) -> green


def test_default_output_folder_is_named_after_the_route(trained, tmp_path):
    source = image_file(tmp_path / "a.png", label=0)
    report = trained.translate_files("toyimg", "toyaudio", [source])
    assert report["written"] == [str(Path("translations") / "toyimg-to-toyaudio" / "a.wav")]
    assert (tmp_path / "translations" / "toyimg-to-toyaudio" / "a.wav").is_file()  # relative to the cwd


def test_samples_write_k_files(trained, tmp_path):
    source = image_file(tmp_path / "a.png", label=0)
    report = trained.translate_files("toyimg", "toyaudio", [source], tmp_path / "out", samples=3)
    assert report["written"] == [str(tmp_path / "out" / f"a_{k}.wav") for k in (1, 2, 3)]
    clips = [toyplugin.read_wav(Path(p))[0] for p in report["written"]]
    assert not torch.equal(clips[0], clips[1])
    with pytest.raises(ConfigError, match="samples: Input should be greater than or equal to 1"):
        trained.translate_files("toyimg", "toyaudio", [source], tmp_path / "out", samples=0)


def test_a_folder_input_translates_every_file_it_holds(trained, tmp_path):
    folder = tmp_path / "inputs"
    for label in range(3):
        image_file(folder / f"img{label}.png", label=label, seed=label)
    (folder / "README.txt").write_text("not an input")  # files of other types are skipped
    (folder / "nested").mkdir()
    report = trained.translate_files("toyimg", "toyaudio", [folder], tmp_path / "out")
    assert sorted(Path(p).name for p in report["written"]) == ["img0.wav", "img1.wav", "img2.wav"]
    for label in range(3):
        clip, _ = toyplugin.read_wav(tmp_path / "out" / f"img{label}.wav")
        assert recognized(trained, "toyaudio", clip) == label


def test_a_folder_in_batches_equals_each_file_alone(trained, tmp_path):
    folder = tmp_path / "inputs"
    for i in range(5):
        wav_file(folder / f"clip{i}.wav", label=i % 3, seed=i)
    # batches of 2: the writes of one batch overlap the reading and translating of the next
    report = trained.translate_files("toyaudio", "toyimg", [folder], tmp_path / "batched", batch_size=2)
    assert report["written"] == [str(tmp_path / "batched" / f"clip{i}.png") for i in range(5)]
    for i in range(5):
        alone = trained.translate_files("toyaudio", "toyimg", [folder / f"clip{i}.wav"], tmp_path / "alone")
        batched, _ = toyplugin.read_png(Path(report["written"][i]))
        one, _ = toyplugin.read_png(Path(alone["written"][0]))
        torch.testing.assert_close(batched, one, rtol=0, atol=1 / 255)  # at most one grey level apart


def test_a_failed_write_stops_the_translation(trained, tmp_path):
    folder = tmp_path / "inputs"
    for name in "abcd":
        wav_file(folder / f"{name}.wav", label=0)
    (tmp_path / "out" / "b.png").mkdir(parents=True)  # b's output cannot be written
    with pytest.raises((IsADirectoryError, ModgraphError)):  # a plugin writing through modgraph's outputs: one line
        trained.translate_files("toyaudio", "toyimg", [folder], tmp_path / "out", batch_size=1)
    assert (tmp_path / "out" / "a.png").is_file()
    assert not (tmp_path / "out" / "c.png").exists() and not (tmp_path / "out" / "d.png").exists()


def test_same_stem_from_two_folders_is_not_overwritten(trained, tmp_path):
    first = image_file(tmp_path / "x" / "a.png", label=0)
    second = image_file(tmp_path / "y" / "a.png", label=1)
    report = trained.translate_files("toyimg", "toyaudio", [first, second], tmp_path / "out")
    assert [Path(p).name for p in report["written"]] == ["a.wav", "a-2.wav"]


def test_conversion_notes_are_reported(trained, tmp_path):
    source = tmp_path / "big.png"
    Image.new("RGB", (16, 16), (200, 10, 10)).save(source)
    report = trained.translate_files("toyimg", "toyaudio", [source], tmp_path / "out")
    assert report["notes"] == {str(source): ["converted RGB to grayscale", "resized 16x16 to 8x8"]}


def test_output_file_rules(trained, tmp_path):
    source = image_file(tmp_path / "a.png", label=0)
    with pytest.raises(ConfigError, match="names one file but 2 outputs"):
        trained.translate_files("toyimg", "toyaudio", [source], tmp_path / "out.wav", samples=2)
    with pytest.raises(ConfigError, match="toyaudio outputs are .wav files"):
        trained.translate_files("toyimg", "toyaudio", [source], tmp_path / "out.png")
    assert not (tmp_path / "out.wav").exists() and not (tmp_path / "out.png").exists()


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "missing.png", "does not exist"),
    (lambda d: (d / "notes.txt").write_text("hello") and d / "notes.txt", "unsupported suffix '.txt'"),
    (lambda d: (d / "fake.png").write_text("not an image") and d / "fake.png", "not a readable image"),
    (lambda d: (d / "empty").mkdir() or d / "empty", "holds no toyimg input files"),
])
def test_unreadable_inputs_are_input_file_errors(trained, tmp_path, make, message):
    with pytest.raises(InputFileError, match=message):
        trained.translate_files("toyimg", "toyaudio", [make(tmp_path)], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_nothing_to_translate_and_no_literal_text(trained, tmp_path):
    with pytest.raises(InputFileError, match="nothing to translate"):
        trained.translate_files("toyimg", "toyaudio", [], tmp_path / "out")
    with pytest.raises(InputFileError, match="does not take literal text"):
        trained.translate_files("toyimg", "toyaudio", texts=["two"], output=tmp_path / "out")


def test_a_wav_that_is_not_a_wav(trained, tmp_path):
    fake = tmp_path / "fake.wav"
    fake.write_bytes(b"RIFF....WAVEjunk")
    with pytest.raises(InputFileError, match="not a readable wav file"):
        trained.translate_files("toyaudio", "toyimg", [fake], tmp_path / "out")


# -- the same through the CLI ------------------------------------------------------------------
def test_cli_translate_file_and_folder(trained, toy_installed, tmp_path):
    source = image_file(tmp_path / "a.png", label=2)
    runner = CliRunner()
    result = runner.invoke(main, ["translate", "--from", "toyimg", "--to", "toyaudio", str(source),
                                  "-o", str(tmp_path / "one.wav")])
    assert result.exit_code == 0, result.output
    assert f"Wrote {tmp_path / 'one.wav'}" in result.output
    assert "Route: toyimg -> toyaudio; 1 file(s) written, 0 failed, 0 folder entries skipped." in result.output
    result = runner.invoke(main, ["translate", "--from", "toyimg", "--to", "toycolor", str(tmp_path),
                                  "--samples", "2", "-o", str(tmp_path / "colours")])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "colours").iterdir()) == ["a_1.csv", "a_2.csv"]
    assert "Route: toyimg -> toyaudio -> toycolor; 2 file(s) written, 0 failed, 4 folder entries skipped." in result.output
    assert "Note: skipped 4 folder entries: 3 subfolders, 1 .wav (toyimg reads .png, .pgm; --recursive reads subfolders)" in result.output


@pytest.mark.parametrize("name, content", [("notes.txt", "hello"), ("fake.png", "not an image")])
def test_cli_bad_input_is_one_line_and_exit_1(trained, toy_installed, tmp_path, name, content):
    bad = tmp_path / name
    bad.write_text(content)
    result = CliRunner().invoke(main, ["translate", "--from", "toyimg", "--to", "toyaudio", str(bad)])
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)  # not an escaped exception
    assert "Traceback" not in result.output
    [line] = result.output.strip().splitlines()
    assert line.startswith(f"Error: {bad}:")


@pytest.mark.usefixtures("toy_installed")
def test_quiet_silences_the_notes_but_not_the_readings(trained, tmp_path):
    from click.testing import CliRunner

    from modgraph.app.cli import main

    source = tmp_path / "big.png"
    Image.new("RGB", (16, 16), (200, 10, 10)).save(source)
    for command in (["translate", "--from", "toyimg", "--to", "toyaudio", "-o", str(tmp_path / "out")],
                    ["read", "--modality", "toyimg"]):
        loud = CliRunner().invoke(main, [*command, str(source)])
        quiet = CliRunner().invoke(main, [*command, "--quiet", str(source)])
        assert loud.exit_code == quiet.exit_code == 0, loud.output
        assert "Note:" in loud.output and "converted RGB to grayscale" in loud.output
        assert "Note:" not in quiet.output and "toyimg read '" in quiet.output
