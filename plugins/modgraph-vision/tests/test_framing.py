"""Users' pictures framed as the datasets' were made: polarity, crop, 20x20 box, centre of mass."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from modgraph_vision import FashionMNIST, MNIST

FRAMED = "centred it like MNIST (20x20 box in 28x28, by centre of mass)"


def seven(path, canvas=(120, 90), at=(20, 10), light=False, angle=0.0, jpeg=False, ramp=0.0, pen=9, seed=0):
    """A "7" drawn with a pen ``pen`` px wide, 60 px tall, its corner at ``at`` on ``canvas``,
    rotated, over an optional lighting ramp, with noise; saved as PNG or JPEG."""
    mask = Image.new("L", canvas)
    x, y = at
    ImageDraw.Draw(mask).line([(x, y), (x + 40, y), (x + 15, y + 60)], fill=255, width=pen, joint="curve")
    mask = mask.rotate(angle, resample=Image.Resampling.BICUBIC, center=(x + 20, y + 30))
    m = np.asarray(mask, dtype=np.float32) / 255
    paper, ink = (230.0, 30.0) if light else (20.0, 220.0)
    lighting = np.linspace(-ramp, ramp, canvas[0])[None, :]
    noise = np.random.default_rng(seed).normal(0, 3, m.shape)
    pixels = np.clip(paper + (ink - paper) * m + lighting + noise, 0, 255).astype(np.uint8)
    Image.fromarray(pixels, mode="L").save(path, **({"format": "JPEG", "quality": 60} if jpeg else {}))
    return path


def mass_centre(x: torch.Tensor) -> tuple[float, float]:
    rows, cols = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    return float((x * rows).sum() / x.sum()), float((x * cols).sum() / x.sum())


def ink_box(x: torch.Tensor, level: float = 0.2) -> tuple[int, int]:
    rows, cols = (x > level).nonzero().unbind(1)
    return int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)


@pytest.mark.parametrize("light, angle, jpeg, canvas, at", [
    (False, 0.0, False, (120, 90), (20, 10)),
    (True, 0.0, False, (120, 90), (70, 25)),  # dark on light, off to the right
    (True, 8.0, True, (300, 110), (230, 30)),  # rotated, JPEG, a wide canvas, far from the centre
    (False, -9.0, True, (80, 200), (5, 120)),  # a tall canvas, near the bottom-left corner
])
def test_a_digit_lands_in_a_20x20_box_centred_by_mass(tmp_path, light, angle, jpeg, canvas, at):
    path = seven(tmp_path / f"seven.{'jpg' if jpeg else 'png'}", canvas, at, light, angle, jpeg)
    x, notes = MNIST().read_file(path)
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32
    assert ("light background inverted" in notes) == light
    assert notes[-1].endswith(FRAMED) and f"{canvas[0]}x{canvas[1]} image" in notes[-1]
    assert max(ink_box(x[0])) in (19, 20, 21) and max(ink_box(x[0], 0.05)) <= 22
    row, col = mass_centre(x[0])
    assert abs(row - 14) <= 0.75 and abs(col - 14) <= 0.75
    # Light strokes on a black frame, as MNIST's: the border is dark, the strokes saturate.
    border = torch.cat([x[0, 0], x[0, -1], x[0, :, 0], x[0, :, -1]])
    assert border.max() < 0.05 and x.max() > 0.95


def test_aspect_ratio_is_kept(tmp_path):
    x, _ = MNIST().read_file(seven(tmp_path / "seven.png"))
    height, width = ink_box(x[0])
    assert height == 20 and 14 <= width <= 17  # the 7 is 60 px tall and 40 + pen px wide


def test_uneven_lighting_is_taken_away_not_read_as_ink(tmp_path):
    # A ramp of +-90 grey levels across a tight canvas: without the background estimate the
    # shaded side's paper comes through as a grey haze around the strokes.
    even, _ = MNIST().read_file(seven(tmp_path / "even.png", canvas=(80, 90), at=(10, 10), light=True))
    uneven, _ = MNIST().read_file(seven(tmp_path / "uneven.jpg", canvas=(80, 90), at=(10, 10), light=True,
                                        ramp=90, jpeg=True))
    assert ink_box(uneven[0]) == ink_box(even[0])
    haze = (uneven[0] > 0.1) & (even[0] < 0.02)
    assert int(haze.sum()) <= 2 and (uneven - even).abs().mean() < 0.008


def test_thin_strokes_are_thickened_like_a_pen(tmp_path):
    x, notes = MNIST().read_file(seven(tmp_path / "thin.png", canvas=(240, 200), at=(60, 40), pen=1))
    assert "thickened thin strokes" in notes
    # Across the bottom of the stem (a stroke at about 60 degrees) the ink is more than a pixel wide.
    assert (x[0, 22] > 0.5).sum() >= 2


def test_a_blank_picture_reads_as_blank_with_a_note(tmp_path):
    path = tmp_path / "blank.png"
    Image.new("L", (50, 40), 240).save(path)
    x, notes = MNIST().read_file(path)
    assert notes == ["light background inverted", "found no ink: read as a blank image"]
    assert torch.equal(x, torch.zeros(1, 28, 28))


def test_an_mnist_digit_already_framed_is_used_as_it_is(tmp_path):
    x = torch.zeros(1, 28, 28)
    x[0, 4:24, 12:16] = 1.0  # a "1", 20 tall, centred by mass
    x[0, 4:24, 11] = x[0, 4:24, 16] = 0.4
    path = tmp_path / "one.png"
    MNIST().write_file(x, path)
    back, notes = MNIST().read_file(path)
    assert notes == [] and torch.equal(back, x.mul(255).round().div(255))


def test_an_off_centre_28x28_digit_is_framed_again(tmp_path):
    x = torch.zeros(1, 28, 28)
    x[0, 0:12, 0:4] = 1.0  # in the corner: not how MNIST's digits sit
    path = tmp_path / "corner.png"
    MNIST().write_file(x, path)
    back, notes = MNIST().read_file(path)
    assert notes[-1].endswith(FRAMED)
    assert ink_box(back[0])[0] == 20
    row, col = mass_centre(back[0])
    assert abs(row - 14) <= 0.75 and abs(col - 14) <= 0.75


def test_a_product_photo_is_trimmed_scaled_to_28_and_centred(tmp_path):
    pixels = np.full((120, 160), 245, dtype=np.uint8)  # a light page
    pixels[30:70, 20:100] = 60  # a dark item, 80 wide and 40 tall, off-centre
    path = tmp_path / "bag.png"
    Image.fromarray(pixels, mode="L").save(path)
    x, notes = FashionMNIST().read_file(path)
    assert notes[0] == "light background inverted" and "scaled its longest side to 28" in notes[-1]
    height, width = ink_box(x[0], 0.5)
    assert width == 28 and height == 14
    rows = (x[0] > 0.5).any(1).nonzero().flatten()
    assert rows.min() == 7 and rows.max() == 20  # centred
    assert x[0, 14, 14] > 0.7 and x[0, 0, 0] < 0.05


@pytest.mark.parametrize("seed", range(3))
def test_random_placements_all_land_centred(tmp_path, seed):
    rng = random.Random(seed)
    canvas = (rng.randint(70, 260), rng.randint(80, 260))
    at = (rng.randint(5, canvas[0] - 60), rng.randint(5, canvas[1] - 75))
    path = seven(tmp_path / "seven.png", canvas, at, rng.random() < 0.5, rng.uniform(-10, 10), seed=seed)
    x, _ = MNIST().read_file(path)
    row, col = mass_centre(x[0])
    assert abs(row - 14) <= 0.75 and abs(col - 14) <= 0.75 and max(ink_box(x[0])) in (19, 20, 21)
