"""The mnist and fmnist descriptors and their data loading from IDX files."""

from __future__ import annotations

import pytest
import torch

from modgraph.errors import ConfigError, DataNotFoundError
from modgraph.learning.models import RecognizerConfig, VAEConfig
from modgraph_vision import GTSRB, FashionMNIST, MNIST, register_modalities

MODALITIES = [(MNIST, "MNIST"), (FashionMNIST, "FashionMNIST")]


def test_register_modalities_registers_all_three():
    registered = []
    register_modalities(register=registered.append)
    assert [m.name for m in registered] == ["mnist", "fmnist", "gtsrb"]
    for modality in registered:
        modality.validate_descriptor()


def test_mnist_classes_and_concepts():
    modality = MNIST()
    assert modality.class_names == [str(d) for d in range(10)]
    assert modality.concepts == ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def test_fmnist_classes_match_torchvision_and_concepts():
    import torchvision.datasets

    modality = FashionMNIST()
    assert modality.class_names == torchvision.datasets.FashionMNIST.classes
    assert modality.concepts == ["t-shirt", "trouser", "pullover", "dress", "coat",
                                 "sandal", "shirt", "sneaker", "bag", "ankle boot"]


@pytest.mark.parametrize("cls", [MNIST, FashionMNIST])
def test_descriptor_shapes_and_architectures(cls):
    modality = cls()
    assert modality.input_shape == (1, 28, 28)
    assert modality.reconstruction_loss == "bce"
    assert modality.default_latent_dim == 64
    assert modality.output_suffix == ".png"
    assert {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm", ".tif", ".tiff", ".webp"} == set(
        modality.input_suffixes)
    assert modality.vae_config(16) == VAEConfig(input_shape=(1, 28, 28), latent_dim=16, architecture="conv",
                                                channels=[32, 64], hidden=[256], output="sigmoid")
    assert modality.recognizer_config() == RecognizerConfig(input_shape=(1, 28, 28), num_classes=10,
                                                            architecture="conv", channels=[32, 64],
                                                            hidden=128, dropout=0.3)
    defaults = modality.training_defaults  # measured choices (docs/results.md); here only sanity
    assert defaults.epochs >= 1 and 0 < defaults.kl_weight <= 1 and defaults.link_epochs >= 1


@pytest.mark.parametrize("cls,dataset", MODALITIES)
@pytest.mark.parametrize("split", ["train", "test"])
def test_load_features_matches_the_idx_files(data_root, cls, dataset, split):
    root, written = data_root
    images, labels = written[dataset][split]
    features = cls().load_features(root, split)
    assert features.x.shape == (len(images), 1, 28, 28)
    assert features.x.dtype == torch.float32
    assert features.x.min().item() == 0.0 and features.x.max().item() == 1.0
    assert torch.equal(features.x, images.unsqueeze(1).float() / 255)
    assert features.y.dtype == torch.int64
    assert features.y.tolist() == labels.tolist()
    assert len(features) == len(images)
    assert not features.augmented.any()


def test_modalities_read_their_own_folder(data_root):
    root, written = data_root
    assert torch.equal(MNIST().load_features(root, "test").x, written["MNIST"]["test"][0].unsqueeze(1).float() / 255)
    assert torch.equal(FashionMNIST().load_features(root, "test").x,
                       written["FashionMNIST"]["test"][0].unsqueeze(1).float() / 255)


@pytest.mark.parametrize("cls,dataset", MODALITIES)
def test_missing_data_names_the_folder_and_the_flag(tmp_path, cls, dataset):
    with pytest.raises(DataNotFoundError) as info:
        cls().load_features(tmp_path, "train")
    message = str(info.value)
    assert str(tmp_path / dataset / "raw") in message
    assert "--download" in message


def test_one_missing_file_is_named(data_root):
    root, _ = data_root
    (root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataNotFoundError, match="t10k-labels-idx1-ubyte"):
        MNIST().load_features(root, "test")


def test_corrupt_idx_file_is_reported(data_root):
    root, _ = data_root
    (root / "MNIST" / "raw" / "t10k-images-idx3-ubyte").write_bytes(b"not an idx file")
    with pytest.raises(DataNotFoundError, match="not valid"):
        MNIST().load_features(root, "test")


def test_unknown_split_is_a_config_error(data_root):
    root, _ = data_root
    with pytest.raises(ConfigError, match="'validation'"):
        MNIST().load_features(root, "validation")


def test_datasets_state_their_licences():
    """Model cards (modgraph card) show these: the licences stated by the copies the loaders read."""
    assert (MNIST.dataset.name, FashionMNIST.dataset.name, GTSRB.dataset.name.split()[0]) == (
        "MNIST", "Fashion-MNIST", "GTSRB")
    assert FashionMNIST.dataset.licence == "MIT" and MNIST.dataset.licence.startswith("MIT")
    assert "not stated" in GTSRB.dataset.licence  # the copy read states none; the card must not invent one


@pytest.mark.parametrize("cls,dataset", MODALITIES)
def test_conformance_kit_on_the_meta_device(data_root, tmp_path, cls, dataset):
    """Every tensor hook of mnist and fmnist runs on meta (a CPU-only stand-in for a GPU, issue 18)."""
    from modgraph.testing import check_modality

    check_modality(cls(), tmp_path / "check", data_root=data_root[0], device="meta")
