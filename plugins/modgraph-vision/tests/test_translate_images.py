"""translate on a tiny real mnist node: --scale writes larger PNGs, --sheet a contact sheet of them."""

from __future__ import annotations

from click.testing import CliRunner
from PIL import Image

from modgraph import ModGraph
from modgraph.app.cli import main


def test_scale_and_sheet_through_the_command_line(data_root, tmp_path, monkeypatch):
    root, written = data_root
    registry = tmp_path / "registry"
    ModGraph(registry=registry, data_root=root, cache_dir=tmp_path / "cache", device="cpu",
             progress=False).add_modality("mnist", latent_dim=4, epochs=1, recognizer_epochs=1)
    images, _ = written["MNIST"]["test"]
    inputs = []
    for k in range(3):
        inputs.append(tmp_path / "in" / f"{k}.png")
        inputs[-1].parent.mkdir(exist_ok=True)
        Image.fromarray(images[k].numpy(), "L").save(inputs[-1])
    for name, value in (("REGISTRY", registry), ("DATA", root), ("CACHE", tmp_path / "cache")):
        monkeypatch.setenv(f"MODGRAPH_{name}", str(value))
    monkeypatch.setenv("MODGRAPH_LOAD_PLUGINS", "modgraph-vision")
    result = CliRunner().invoke(main, ["translate", "--from", "mnist", "--to", "mnist", *map(str, inputs),
                                       "-o", str(tmp_path / "out"), "--scale", "4", "--sheet",
                                       str(tmp_path / "sheet.png"), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    for k in range(3):
        with Image.open(tmp_path / "out" / f"{k}.png") as image:
            assert (image.mode, image.size) == ("L", (28 * 4, 28 * 4))
    assert f"Wrote contact sheet {tmp_path / 'sheet.png'} (3 input(s))" in result.output
    with Image.open(tmp_path / "sheet.png") as sheet:
        assert sheet.format == "PNG" and sheet.height > 3 * 28 * 4  # three rows of digits enlarged 4 times
