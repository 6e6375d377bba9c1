"""Images whose headers claim more pixels than the image modalities read are refused before decoding.

The cap (``images.MAX_PIXELS``, 4096 x 4096 = 16,777,216) is checked on the size Pillow reads from the header,
for every format; the audit's case, a 65-byte PNG claiming 1 x 64,000,000 pixels, once took
3.9 GB and 28.6 s (issue 29).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from claimed_sizes import FORMATS
from PIL import Image

from modgraph.errors import InputFileError
from modgraph_vision.gtsrb import GTSRB
from modgraph_vision.images import MAX_PIXELS
from modgraph_vision.mnist import MNIST

MODALITIES = {"mnist": MNIST, "gtsrb": GTSRB}
# over the cap, under Pillow's own limit (2 x 89 million), within each format's 16-bit sides
BOMBS = {**{name: (6_000, 6_000) for name in FORMATS}, "PNG strip": (1, 64_000_000)}


def _bomb(tmp_path: Path, name: str) -> Path:
    width, height = BOMBS[name]
    path = tmp_path / f"bomb.{name.split()[0].lower()}"
    path.write_bytes(FORMATS[name.split()[0]](width, height))
    return path


def test_the_cap_is_a_number_that_fits_the_modalities():
    assert MAX_PIXELS == 16_777_216  # docs/reliability.md states it
    assert 4032 * 3024 < MAX_PIXELS < 6_000 * 6_000  # a 12-megapixel phone photo reads


@pytest.mark.parametrize("modality", ["mnist", "gtsrb"])
@pytest.mark.parametrize("name", BOMBS)
def test_claimed_sizes_are_refused_from_the_header(tmp_path, modality, name):
    path = _bomb(tmp_path, name)
    width, height = BOMBS[name]
    assert Image.open(path).size == (width, height) and path.stat().st_size < 1200  # the header says so
    start = time.perf_counter()
    with pytest.raises(InputFileError) as err:
        MODALITIES[modality]().read_file(path)
    assert time.perf_counter() - start < 1.0
    assert str(err.value) == (f"{path}: {width}x{height} pixels is too large an image (at most 16.8 million pixels); "
                              "scale it down first")


def test_gtsrb_dataset_images_are_capped_too(tmp_path):
    from modgraph_vision.images import load_rgb_images

    with pytest.raises(InputFileError, match="too large an image"):
        load_rgb_images([_bomb(tmp_path, "PNG strip")], 32)


def test_refusing_every_bomb_stays_under_200_mb(tmp_path):
    """In a fresh process: the peak memory added by reading every bomb, after the imports."""
    paths = []
    for name in BOMBS:
        (tmp_path / name.replace(" ", "-")).mkdir()
        paths.append(str(_bomb(tmp_path / name.replace(" ", "-"), name)))
    code = (
        "import json, resource, sys, time\n"
        "from modgraph.errors import InputFileError\n"
        "from modgraph_vision.mnist import MNIST\n"
        "from modgraph_vision.gtsrb import GTSRB\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "start = time.perf_counter()\n"
        "refused = 0\n"
        "for path in sys.argv[1:]:\n"
        "    for modality in (MNIST(), GTSRB()):\n"
        "        try:\n"
        "            modality.read_file(path)\n"
        "        except InputFileError:\n"
        "            refused += 1\n"
        "peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print(json.dumps({'mb': (peak - before) / 1024, 's': time.perf_counter() - start, 'refused': refused}))\n")
    out = subprocess.run([sys.executable, "-c", code, *paths], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    measured = json.loads(out.stdout.strip().splitlines()[-1])
    assert measured["refused"] == 2 * len(BOMBS)
    assert measured["mb"] < 200 and measured["s"] < 2 * len(BOMBS), measured
