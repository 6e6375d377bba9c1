"""Odd and broken image files, and the PNG writers' all-or-nothing behaviour.

Each input gives a tensor of the modality's shape with a note, or one InputFileError line
naming the file; each failed write one ModgraphError line naming the file, the old file intact.
"""

from __future__ import annotations

import errno
import io
import os
import stat
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from modgraph.errors import InputFileError, ModgraphError
from modgraph_vision.gtsrb import GTSRB
from modgraph_vision.images import MAX_PIXELS, write_grayscale_png, write_rgb_png
from modgraph_vision.mnist import MNIST

MODALITIES = {"mnist": MNIST, "gtsrb": GTSRB}


def _image_bytes(image: Image.Image, format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def _gradient(mode: str, size=(20, 12)) -> Image.Image:
    rgb = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(rgb, "RGB").convert(mode)


def _sixteen_bit_png() -> bytes:
    array = (np.arange(16 * 9, dtype=np.uint16).reshape(9, 16) * 400).astype(">u2")
    return _png_chunks(16, 9, 16, 0, b"".join(b"\x00" + row.tobytes() for row in array))


def _png_chunks(width: int, height: int, depth: int, colour: int, raw: bytes) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


GOOD = {
    "16-bit png": _sixteen_bit_png,
    "palette png": lambda: _image_bytes(_gradient("RGB").convert("P", palette=Image.Palette.ADAPTIVE), "PNG"),
    "palette png with transparency": lambda: _image_bytes(
        _gradient("RGB").convert("P", palette=Image.Palette.ADAPTIVE), "PNG", transparency=0),
    "alpha png": lambda: _image_bytes(_gradient("RGBA"), "PNG"),
    "gray alpha png": lambda: _image_bytes(_gradient("LA"), "PNG"),
    "1x40 png": lambda: _image_bytes(_gradient("RGB", (1, 40)), "PNG"),
    "40x1 png": lambda: _image_bytes(_gradient("L", (40, 1)), "PNG"),
    "1x1 bitmap": lambda: _image_bytes(_gradient("1", (1, 1)), "PNG"),
    "cmyk jpeg": lambda: _image_bytes(_gradient("CMYK"), "JPEG"),
    "gray jpeg": lambda: _image_bytes(_gradient("L"), "JPEG"),
    "float tiff": lambda: _image_bytes(_gradient("F"), "TIFF"),
}


@pytest.mark.parametrize("modality", MODALITIES)
@pytest.mark.parametrize("kind", GOOD)
def test_odd_but_valid_images_read(tmp_path, modality, kind):
    module = MODALITIES[modality]()
    path = tmp_path / "odd.img"
    path.write_bytes(GOOD[kind]())
    x, notes = module.read_file(path)
    assert tuple(x.shape) == module.input_shape and x.dtype == torch.float32
    assert torch.isfinite(x).all() and 0 <= x.min() and x.max() <= 1
    assert all(isinstance(n, str) and "\n" not in n for n in notes)


def _truncated(data: bytes) -> bytes:
    return data[: len(data) * 2 // 3]


BAD = {
    "truncated png": lambda: _truncated(_image_bytes(_gradient("RGB", (64, 64)), "PNG")),
    "truncated jpeg": lambda: _truncated(_image_bytes(_gradient("RGB", (64, 64)), "JPEG")),
    "png header only": lambda: _image_bytes(_gradient("RGB"), "PNG")[:33],
    "empty": lambda: b"",
    "text": lambda: b"seven,7\n",
    "huge dimensions": lambda: _png_chunks(100_000, 100_000, 8, 0, b""),  # Pillow's bomb limit
    "large dimensions": lambda: _png_chunks(9_000, 9_000, 8, 0, b""),  # under Pillow's limit, over ours
}


@pytest.mark.parametrize("modality", MODALITIES)
@pytest.mark.parametrize("kind", BAD)
def test_broken_images_are_one_line_input_file_errors(tmp_path, modality, kind):
    path = tmp_path / "broken.png"
    path.write_bytes(BAD[kind]())
    with pytest.raises(InputFileError) as err:
        MODALITIES[modality]().read_file(path)
    message = str(err.value)
    assert str(path) in message and "\n" not in message
    if "dimensions" in kind:
        assert "too large" in message or "decompression bomb" in message
    assert MAX_PIXELS < 9_000 * 9_000


@pytest.mark.parametrize("kind", ["directory", "fifo"])
def test_things_named_png_that_are_not_files(tmp_path, kind):
    path = tmp_path / "x.png"
    path.mkdir() if kind == "directory" else os.mkfifo(path)
    with pytest.raises(InputFileError) as err:
        MNIST().read_file(path)
    assert str(path) in str(err.value)


# -- writing --------------------------------------------------------------------------------------

WRITERS = {"gray": lambda p: write_grayscale_png(torch.rand(1, 28, 28), p),
           "rgb": lambda p: write_rgb_png(torch.rand(3, 8, 8), p)}


@pytest.mark.parametrize("writer", WRITERS)
def test_png_writes_are_all_or_nothing(tmp_path, monkeypatch, writer):
    path = tmp_path / "out.png"
    path.write_bytes(b"the old file")

    def disk_full(*args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(ModgraphError) as err:
        WRITERS[writer](path)
    assert str(err.value) == f"could not write {path}: No space left on device"
    assert path.read_bytes() == b"the old file" and sorted(tmp_path.iterdir()) == [path]
    monkeypatch.undo()
    assert WRITERS[writer](path) == [path] and Image.open(path).size in ((28, 28), (8, 8))
    assert sorted(tmp_path.iterdir()) == [path]


@pytest.mark.parametrize("writer", WRITERS)
def test_a_png_name_at_the_file_system_limit_writes(tmp_path, writer):
    path = tmp_path / ("n" * 251 + ".png")
    assert WRITERS[writer](path) == [path]


@pytest.mark.parametrize("writer", WRITERS)
@pytest.mark.parametrize("target", ["directory", "under_a_file", "fifo", "too_long"])
def test_unwritable_png_targets_are_one_line_errors(tmp_path, writer, target):
    path = {"directory": tmp_path / "folder.png", "under_a_file": tmp_path / "file" / "out.png",
            "fifo": tmp_path / "pipe.png", "too_long": tmp_path / ("n" * 300 + ".png")}[target]
    if target == "directory":
        path.mkdir()
    elif target == "under_a_file":
        (tmp_path / "file").write_text("a file, not a folder")
    elif target == "fifo":
        os.mkfifo(path)  # never opened: were it, the test would hang
    with pytest.raises(ModgraphError) as err:
        WRITERS[writer](path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)
    if target == "fifo":
        assert stat.S_ISFIFO(os.lstat(path).st_mode)


def test_a_long_thin_strip_is_not_padded_to_a_giant_square(tmp_path):
    import resource

    path = tmp_path / "strip.png"
    Image.new("L", (1, 3_000_000), 255).save(path)  # padded as it is: a 9e12-pixel square
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    x, notes = MNIST().read_file(path)
    assert x.shape == (1, 28, 28) and notes  # read (as blank: a one-pixel strip holds no digit), not padded
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 500_000  # KiB
