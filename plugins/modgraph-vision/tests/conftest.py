"""Fixtures: tiny MNIST / Fashion-MNIST trees in torchvision's exact on-disk layout."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
import torch

SPLIT_SIZES = {"train": 20, "test": 10}
# torchvision's raw file names, by split: (images, labels)
SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def write_idx(path: Path, array: torch.Tensor) -> None:
    """Write a uint8 tensor as an IDX file: magic 0x000008<ndim>, big-endian dims, bytes."""
    assert array.dtype == torch.uint8
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">I", 0x00000800 | array.dim()) + struct.pack(f">{array.dim()}I", *array.shape)
    path.write_bytes(header + array.contiguous().numpy().tobytes())


def write_idx_dataset(root: Path, dataset: str, seed: int = 0) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Write ``<root>/<dataset>/raw/*-ubyte`` for both splits; return {split: (images, labels)}."""
    generator = torch.Generator().manual_seed(seed)
    written = {}
    for split, count in SPLIT_SIZES.items():
        images = torch.randint(0, 256, (count, 28, 28), dtype=torch.uint8, generator=generator)
        images[0] = 0  # the extremes of the value range are present
        images[1] = 255
        labels = (torch.arange(count) * 3 % 10).to(torch.uint8)
        image_file, label_file = SPLIT_FILES[split]
        write_idx(root / dataset / "raw" / image_file, images)
        write_idx(root / dataset / "raw" / label_file, labels)
        written[split] = (images, labels)
    return written


@pytest.fixture
def data_root(tmp_path):
    """(root, {dataset: {split: (images, labels)}}) for tiny MNIST and FashionMNIST trees."""
    root = tmp_path / "data"
    written = {"MNIST": write_idx_dataset(root, "MNIST", seed=1),
               "FashionMNIST": write_idx_dataset(root, "FashionMNIST", seed=2)}
    return root, written
