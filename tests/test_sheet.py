"""translate --sheet (a contact sheet PNG), --scale, and the kit's check that write_file takes scale or is spared it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import toyplugin
from toyplugin import image_file, wav_file
from modgraph.inference import sheet as sheet_module
from modgraph.app.cli import main
from modgraph.errors import ConfigError, PluginError
from modgraph.inference.sheet import RULE, Cell, render
from modgraph.testing import check_write_scale


def rows_drawn(path: Path) -> int:
    """The sheet's rows, counted by the rule drawn above each (the left margin holds nothing else)."""
    with Image.open(path) as image:
        column = np.asarray(image.convert("RGB"))[:, 1]
    return int((column == RULE).all(axis=1).sum())


def ink(image: Image.Image, box: tuple[int, int, int, int]) -> int:
    """Pixels in ``box`` that are not white."""
    return int((np.asarray(image.crop(box).convert("L")) < 250).sum())


def test_a_sheet_has_a_row_per_input_and_says_what_was_read(trained, tmp_path):
    folder = tmp_path / "in"
    for label in range(3):
        wav_file(folder / f"{label}.wav", label)
    report = trained.translate_files("toyaudio", "toyimg", [folder], tmp_path / "out", sheet=tmp_path / "sheet.png")
    assert report["sheet"] == {"path": str(tmp_path / "sheet.png"), "rows": 3, "left_out": 0}
    with Image.open(tmp_path / "sheet.png") as image:
        assert image.format == "PNG" and image.mode == "RGB"
        # Each toy image (8x8) is enlarged by a whole factor, nearest neighbour: blocks of one grey.
        assert image.width > 2 * 8 * (sheet_module.CELL_HEIGHT // 8)
    assert rows_drawn(tmp_path / "sheet.png") == 3


def test_a_long_batch_is_cut_and_says_how_many_were_left_out(trained, tmp_path, monkeypatch):
    monkeypatch.setattr(sheet_module, "MAX_ROWS", 2)
    inputs = [image_file(tmp_path / f"{k}.png", k % 3, seed=k) for k in range(5)]
    report = trained.translate_files("toyimg", "toyaudio", inputs, tmp_path / "out", sheet=tmp_path / "s.png",
                                     batch_size=2)
    assert report["sheet"]["rows"] == 2 and report["sheet"]["left_out"] == 3
    assert len(report["written"]) == 5  # every input is still translated
    assert rows_drawn(tmp_path / "s.png") == 2


def test_samples_and_a_cascade_on_one_sheet(trained, tmp_path):
    source = image_file(tmp_path / "a.png", 1)
    report = trained.translate_files("toyimg", "toycolor", [source], tmp_path / "out", samples=3,
                                     sheet=tmp_path / "s.png")
    assert report["path"] == ["toyimg", "toyaudio", "toycolor"]
    assert report["sheet"]["rows"] == 1
    with Image.open(tmp_path / "s.png") as image:
        one = image.size
    trained.translate_files("toyimg", "toycolor", [source], tmp_path / "out1", sheet=tmp_path / "s1.png")
    with Image.open(tmp_path / "s1.png") as image:
        assert image.width < one[0]  # three output columns are wider than one


def test_labels_are_drawn_under_each_picture():
    picture = np.zeros((8, 8, 3), dtype=np.uint8)
    header = ["input (a)", "output (b)"]
    bare = render("t", [[Cell(picture, []), Cell(picture, [])]], 0, header)
    labelled = render("t", [[Cell(picture, ["x.wav", "a reads '7' (97%)"]),
                             Cell(picture, ["x.png", "b reads '7' (31%)  (unsure)"], doubtful=True)]], 0, header)
    below = (0, bare.height, labelled.width, labelled.height)
    assert labelled.height > bare.height and ink(labelled, below) > 50
    red = np.asarray(labelled)
    assert ((red[..., 0] > 150) & (red[..., 1] < 60) & (red[..., 2] < 60)).any()  # the unsure reading, in red


def test_text_is_drawn_as_text_and_a_missing_picture_is_a_blank_cell():
    text = render("t", [[Cell("seven", ["typed 'seven'"]), Cell(None, ["out.csv"])]], 0, ["in", "out"])
    assert ink(text, (0, 40, text.width // 2, text.height)) > 50


def test_a_bad_picture_is_the_plugins_error(trained, tmp_path, monkeypatch):
    monkeypatch.setattr(toyplugin.ToyImage, "picture", lambda self, x: np.zeros((4, 4, 3), dtype=np.float32),
                        raising=False)
    with pytest.raises(PluginError, match="toyimg .*picture gave float32"):
        trained.translate_files("toyaudio", "toyimg", [wav_file(tmp_path / "a.wav", 0)], tmp_path / "o",
                                sheet=tmp_path / "s.png")


@pytest.mark.parametrize("name", ["sheet.jpg", "sheet"])
def test_the_sheet_must_be_a_png_name(trained, tmp_path, name):
    with pytest.raises(ConfigError, match="--sheet .*png"):
        trained.translate_files("toyaudio", "toyimg", [wav_file(tmp_path / "a.wav", 0)], tmp_path / "o",
                                sheet=tmp_path / name)
    assert not (tmp_path / "o").exists()  # refused before anything was translated


def test_the_sheet_never_replaces_an_output(trained, tmp_path):
    source = wav_file(tmp_path / "a.wav", 0)
    with pytest.raises(ConfigError, match="also the name of a translated output"):
        trained.translate_files("toyaudio", "toyimg", [source], tmp_path / "o", sheet=tmp_path / "o" / "a.png")
    with Image.open(tmp_path / "o" / "a.png") as image:
        assert image.size == (8, 8)  # the translation, not a sheet


def test_cli_writes_the_sheet_and_says_so(trained, toy_installed, tmp_path):
    source = image_file(tmp_path / "a.png", 2)
    result = CliRunner().invoke(main, ["translate", "--from", "toyimg", "--to", "toyaudio", str(source),
                                       "-o", str(tmp_path / "out"), "--sheet", str(tmp_path / "s.png")])
    assert result.exit_code == 0, result.output
    assert f"Wrote contact sheet {tmp_path / 's.png'} (1 input(s))" in result.output
    assert rows_drawn(tmp_path / "s.png") == 1


def test_default_picture_draws_pixels_vectors_and_nothing_else():
    image, audio = toyplugin.ToyImage(), toyplugin.ToyAudio()
    assert image.picture(torch.full((1, 8, 8), 2.0)).tolist() == [[255] * 8] * 8  # bce: clamped to [0, 1]
    bars = audio.picture(torch.linspace(-3, 3, toyplugin.AUDIO_LENGTH))  # mse: scaled min to max, as bars
    assert bars.shape == (32, toyplugin.AUDIO_LENGTH)  # not a one-pixel strip
    assert (bars[:, 0] == 0).all() and (bars[:, -1] == 255).all()  # the lowest value no bar, the highest full
    heights = (torch.from_numpy(bars) == 255).sum(0)
    assert (heights.diff() >= 0).all() and 15 <= int(heights[toyplugin.AUDIO_LENGTH // 2]) <= 17  # rising, mid half
    assert audio.picture(torch.zeros(2, 2, 2, 2)) is None


# -- --scale -------------------------------------------------------------------------------------------


class _ScaledImage(toyplugin.ToyImage):
    """The toy image modality with a write_file that enlarges by ``scale`` through PIL."""

    def write_file(self, x, path, *, scale: int = 1):
        picture = Image.fromarray((x.reshape(8, 8).clamp(0, 1) * 255).round().to(torch.uint8).numpy(), "L")
        picture.resize((8 * scale, 8 * scale), Image.NEAREST).save(path)
        return [Path(path)]


def test_scale_reaches_write_file(trained, tmp_path):
    source = wav_file(tmp_path / "a.wav", 0)
    for scale, side in ((1, 8), (3, 24)):
        report = trained.translate_files("toyaudio", "toyimg", [source], tmp_path / f"x{scale}", scale=scale)
        with Image.open(report["written"][0]) as image:
            assert image.size == (side, side)
        assert report["output_notes"] == []


@pytest.mark.parametrize("scale", [0, 17, 2.5, True])
def test_scale_is_a_whole_number_from_1_to_16(trained, tmp_path, scale):
    with pytest.raises(ConfigError, match="invalid translate settings: scale: "):
        trained.translate_files("toyaudio", "toyimg", [wav_file(tmp_path / "a.wav", 0)], tmp_path / "o",
                                scale=scale)


def test_cli_scale_and_its_error(trained, toy_installed, tmp_path):
    source = wav_file(tmp_path / "a.wav", 0)
    command = ["translate", "--from", "toyaudio", "--to", "toyimg", str(source), "-o", str(tmp_path / "o")]
    result = CliRunner().invoke(main, [*command, "--scale", "2"])
    assert result.exit_code == 0 and "Note:" not in result.output
    result = CliRunner().invoke(main, [*command, "--scale", "20"])
    assert result.exit_code == 1 and "scale: Input should be less than or equal to 16, got 20" in result.output


# -- the kit -------------------------------------------------------------------------------------------


def test_kit_passes_a_write_file_that_scales(tmp_path):
    x = torch.rand(1, 8, 8)
    check_write_scale(toyplugin.ToyImage(), x, tmp_path / "toy")
    check_write_scale(_ScaledImage(), x, tmp_path / "pil")


class _Blurred(_ScaledImage):
    def write_file(self, x, path, *, scale: int = 1):
        super().write_file(x, path)  # declared, then ignored
        return [Path(path)]


class _Smooth(_ScaledImage):
    def write_file(self, x, path, *, scale: int = 1):
        picture = Image.fromarray((x.reshape(8, 8).clamp(0, 1) * 255).round().to(torch.uint8).numpy(), "L")
        picture.resize((8 * scale, 8 * scale), Image.BILINEAR).save(path)
        return [Path(path)]


class _Refuses(_ScaledImage):
    def write_file(self, x, path, *, scale: int = 1):
        if scale != 1:
            raise TypeError("no scaling here")
        return super().write_file(x, path)


@pytest.mark.parametrize("modality,message", [
    (_Blurred(), "should be 16x16"), (_Smooth(), "not the plain output enlarged by nearest neighbour"),
    (_Refuses(), "scale=2\\) failed: TypeError: no scaling here")])
def test_kit_catches_a_write_file_that_declares_scale_and_gets_it_wrong(tmp_path, modality, message):
    x = torch.rand(1, 8, 8)
    with pytest.raises(AssertionError, match=message):
        check_write_scale(modality, x, tmp_path)


def test_the_readme_states_the_sheets_row_limit():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert f"a row per input (the first {sheet_module.MAX_ROWS};" in readme
