"""Reading users' image files into MNIST-style features and writing samples as PNGs."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from modgraph.errors import InputFileError
from modgraph_vision import FashionMNIST, MNIST


def _digit(light_on_dark: bool = True) -> torch.Tensor:
    """A (1, 28, 28) bar on a plain background, with a few intermediate grey levels."""
    x = torch.zeros(1, 28, 28)
    x[0, 6:22, 12:16] = 1.0
    x[0, 6:22, 11] = 0.5
    x[0, 10, 4:8] = torch.tensor([0.2, 0.4, 0.6, 0.8])
    return x if light_on_dark else 1 - x


@pytest.mark.parametrize("cls, x", [
    (MNIST, _digit()),  # framed as MNIST's digits are: used as it is
    (FashionMNIST, torch.rand(1, 28, 28, generator=torch.Generator().manual_seed(0)) * 0.4),  # a dark border
])
def test_write_then_read_round_trip(tmp_path, cls, x):
    modality = cls()
    path = tmp_path / "out" / "sample.png"
    assert modality.write_file(x, path) == [path]
    with Image.open(path) as image:
        assert (image.format, image.mode, image.size) == ("PNG", "L", (28, 28))
    back, notes = modality.read_file(path)
    assert notes == []
    assert back.shape == (1, 28, 28) and back.dtype == torch.float32
    assert (back - x).abs().max().item() <= 1 / 255


def test_write_clamps_out_of_range_values(tmp_path):
    x = _digit() * 3 - 1  # values in [-1, 2]
    path = MNIST().write_file(x, tmp_path / "clamped.png")[0]
    back, _ = MNIST().read_file(path)
    assert torch.equal(back, x.clamp(0, 1).mul(255).round() / 255)
    assert not list(tmp_path.glob(".*.tmp"))  # the temporary file was renamed into place


def test_write_rejects_the_wrong_shape(tmp_path):
    with pytest.raises(ValueError, match=r"\(1, 28, 28\)"):
        MNIST().write_file(torch.zeros(3, 28, 28), tmp_path / "rgb.png")


def test_rgb_image_is_converted_with_a_note(tmp_path):
    gray = (_digit()[0] * 255).round().to(torch.uint8)
    rgb = torch.stack([gray, gray, gray], dim=-1)
    path = tmp_path / "digit.jpg"
    Image.fromarray(rgb.numpy(), mode="RGB").save(path, format="PNG")  # content, not suffix, decides
    x, notes = MNIST().read_file(path)
    assert notes == ["converted RGB to grayscale"]
    assert (x - _digit()).abs().max().item() <= 1 / 255


def test_dark_on_light_image_is_inverted_with_a_note(tmp_path):
    path = tmp_path / "ink.png"
    MNIST().write_file(_digit(light_on_dark=False), path)
    x, notes = MNIST().read_file(path)
    assert notes == ["light background inverted"]
    assert (x - _digit()).abs().max().item() <= 1 / 255


def test_odd_sized_image_is_cropped_and_centred_with_a_note(tmp_path):
    # A 64x48 (width x height) white-on-black image with an off-centre square ring, 3 px thick.
    pixels = torch.zeros(48, 64, dtype=torch.uint8)
    pixels[4:24, 30:50] = 255
    pixels[7:21, 33:47] = 0
    path = tmp_path / "wide.bmp"
    Image.fromarray(pixels.numpy(), mode="L").save(path)
    x, notes = MNIST().read_file(path)
    assert notes == ["cropped the ink of the 64x48 image and centred it like MNIST (20x20 box in 28x28, "
                     "by centre of mass)"]
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32
    assert 0.0 <= x.min().item() and x.max().item() <= 1.0
    # The ring fills the 20x20 box, square and in the middle.
    assert x[0, 14, 5] > 0.9 and x[0, 14, 14] < 0.05 and x[0, 0, 0] < 0.05
    rows, cols = (x[0] > 0.5).nonzero().unbind(1)
    assert rows.max() - rows.min() == cols.max() - cols.min() == 19
    assert (rows.min(), cols.min()) == (4, 4)


def test_colour_light_background_odd_size_notes_in_order(tmp_path):
    rgb = torch.full((40, 30, 3), 240, dtype=torch.uint8)
    rgb[10:30, 12:18] = torch.tensor([200, 0, 0], dtype=torch.uint8)
    path = tmp_path / "photo.png"
    Image.fromarray(rgb.numpy(), mode="RGB").save(path)
    x, notes = MNIST().read_file(path)
    assert notes[:2] == ["converted RGB to grayscale", "light background inverted"]
    assert notes[-1].startswith("cropped the ink of the 30x40 image")
    assert x[0, 0].max() < 0.1 and x[0, 14, 14] > 0.5


def test_transparent_background_is_flattened(tmp_path):
    rgba = torch.zeros(28, 28, 4, dtype=torch.uint8)  # transparent black everywhere...
    rgba[6:22, 12:16] = torch.tensor([0, 0, 0, 255], dtype=torch.uint8)  # ...and opaque black ink
    path = tmp_path / "ink.png"
    Image.fromarray(rgba.numpy(), mode="RGBA").save(path)
    x, notes = MNIST().read_file(path)
    assert notes == ["converted RGBA to grayscale", "flattened transparency onto white",
                     "light background inverted"]
    assert x[0, 10, 13] > 0.99 and x[0, 0, 0] < 0.01


def test_text_file_named_png_is_an_input_file_error(tmp_path):
    path = tmp_path / "x.png"
    path.write_text("hello, not an image\n")
    with pytest.raises(InputFileError) as info:
        MNIST().read_file(path)
    assert str(path) in str(info.value)
    assert "png" in str(info.value) and "jpg" in str(info.value)


def test_missing_file_is_an_input_file_error(tmp_path):
    with pytest.raises(InputFileError, match="no such file"):
        FashionMNIST().read_file(tmp_path / "absent.png")


@pytest.mark.parametrize("scale", [1, 3, 16])
def test_write_scale_enlarges_by_nearest_neighbour(tmp_path, scale):
    x = _digit()
    path = MNIST().write_file(x, tmp_path / "big.png", scale=scale)[0]
    with Image.open(path) as image:
        assert (image.mode, image.size) == ("L", (28 * scale, 28 * scale))
        pixels = torch.tensor(list(image.tobytes()), dtype=torch.float32).view(28 * scale, 28 * scale) / 255
    blocks = x[0].repeat_interleave(scale, 0).repeat_interleave(scale, 1)  # each pixel a scale x scale block
    assert (pixels - blocks).abs().max().item() <= 1 / 255


def test_picture_is_what_write_file_writes(tmp_path):
    x = _digit()
    path = MNIST().write_file(x, tmp_path / "d.png")[0]
    with Image.open(path) as written:
        assert MNIST().picture(x).tobytes() == written.tobytes()
