"""Property tests of the image readers: any file gives a finite tensor of the modality's shape or a ModgraphError.

Inputs are random bytes, valid PNG/JPEG/BMP/GIF/TIFF files with random damage (truncated,
bytes overwritten, a random payload after a real header) and valid images of random sizes
and modes, which must read. In CI each property runs 100 fixed examples
(derandomized, a few seconds in all); for a longer, random search::

    MODGRAPH_FUZZ_EXAMPLES=5000 python -m pytest plugins/modgraph-vision/tests/test_fuzz_images.py
"""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from modgraph.errors import ModgraphError
from modgraph_vision.gtsrb import GTSRB
from modgraph_vision.mnist import MNIST

EXAMPLES = int(os.environ.get("MODGRAPH_FUZZ_EXAMPLES", "100"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                derandomize="MODGRAPH_FUZZ_EXAMPLES" not in os.environ,  # CI: the same examples every run
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

MODALITIES = {"mnist": MNIST(), "gtsrb": GTSRB()}
# the modes each format can store
FORMATS = {"PNG": ["1", "L", "LA", "P", "RGB", "RGBA", "I;16"], "JPEG": ["L", "RGB", "CMYK"],
           "BMP": ["1", "L", "P", "RGB"], "GIF": ["L", "P"], "TIFF": ["1", "L", "RGB", "RGBA", "CMYK", "I", "F"]}


@st.composite
def image_files(draw) -> bytes:
    """A valid image file: random format, mode, size (down to 1 x 1) and pixels."""
    image_format = draw(st.sampled_from(sorted(FORMATS)))
    mode = draw(st.sampled_from(FORMATS[image_format]))
    width, height = draw(st.integers(1, 80)), draw(st.integers(1, 80))
    pixels = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).integers(0, 256, (height, width, 4), dtype=np.uint8)
    if draw(st.booleans()):
        pixels[:] = pixels[0, 0]  # one flat colour
    image = Image.fromarray(pixels, "RGBA")
    if mode in ("I;16", "I", "F"):
        image = image.convert("L").convert(mode)
    elif mode != "RGBA":
        image = image.convert(mode)
    encoded = io.BytesIO()
    image.save(encoded, format=image_format)
    return encoded.getvalue()


@st.composite
def damaged_image_files(draw) -> bytes:
    data = bytearray(draw(image_files()))
    how = draw(st.sampled_from(["truncate", "overwrite", "payload"]))
    if how == "truncate":
        return bytes(data[: draw(st.integers(0, len(data) - 1))])
    if how == "payload":
        return bytes(data[: draw(st.integers(0, 64))]) + draw(st.binary(max_size=2000))
    for index, value in draw(st.lists(st.tuples(st.integers(0, len(data) - 1), st.integers(0, 255)),
                                      min_size=1, max_size=8)):
        data[index] = value
    return bytes(data)


def _read_or_refuse(tmp_path, data: bytes, modality: str):
    """read_file's tensor, checked, or None when it raised a ModgraphError (any other exception fails)."""
    module = MODALITIES[modality]
    path = tmp_path / "fuzz.img"
    path.write_bytes(data)
    try:
        x, notes = module.read_file(path)
    except ModgraphError as exc:
        assert str(path) in str(exc) and "\n" not in str(exc)
        return None
    assert tuple(x.shape) == module.input_shape and x.dtype == torch.float32
    assert torch.isfinite(x).all() and x.min() >= 0 and x.max() <= 1
    assert all(isinstance(n, str) for n in notes)
    return x


@pytest.mark.parametrize("modality", MODALITIES)
@FUZZ
@given(data=st.binary(max_size=4096))
def test_random_bytes(tmp_path, modality, data):
    _read_or_refuse(tmp_path, data, modality)


@pytest.mark.parametrize("modality", MODALITIES)
@FUZZ
@given(data=damaged_image_files())
def test_damaged_images(tmp_path, modality, data):
    _read_or_refuse(tmp_path, data, modality)


@pytest.mark.parametrize("modality", MODALITIES)
@FUZZ
@given(data=image_files())
def test_valid_images_always_read(tmp_path, modality, data):
    assert _read_or_refuse(tmp_path, data, modality) is not None


@st.composite
def claimed_size_files(draw) -> tuple[bytes, int]:
    """A header of any format claiming a random size (up to each format's largest) over almost no data."""
    from claimed_sizes import FORMATS

    name = draw(st.sampled_from(sorted(FORMATS)))
    largest = 65_535 if name in ("GIF", "JPEG") else 2**31 - 1
    side = st.one_of(st.integers(1, 64), st.integers(4_100, 8_000), st.integers(1, largest))  # 4100^2 > the cap
    width, height = draw(side), draw(side)
    return FORMATS[name](width, height), width * height


@pytest.mark.parametrize("modality", MODALITIES)
@FUZZ
@given(case=claimed_size_files())
def test_claimed_sizes_over_the_cap_are_refused_before_decoding(tmp_path, modality, case):
    from modgraph_vision.images import MAX_PIXELS

    data, pixels = case
    path = tmp_path / "fuzz.img"
    path.write_bytes(data)
    try:
        _read_or_refuse(tmp_path, data, modality)
    except MemoryError:  # pragma: no cover - the failure this test exists for
        pytest.fail(f"{pixels} claimed pixels were allocated")
    if pixels > MAX_PIXELS:
        with pytest.raises(ModgraphError, match="too large an image|decompression bomb"):
            MODALITIES[modality].read_file(path)
