"""The gtsrb modality: options, labels from folder ids and the test csv, track origins, files."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from PIL import Image

import modgraph.testing
from modgraph.errors import ConfigError, DataNotFoundError, InputFileError
from modgraph.learning.splits import split_validation
from modgraph.learning.models import RecognizerConfig, VAEConfig
from modgraph_vision import GTSRB, register_modalities
from modgraph_vision.gtsrb import DEFAULT_CLASS_IDS, GTSRB_CLASSES

GT_HEADER = ["Filename", "Width", "Height", "Roi.X1", "Roi.Y1", "Roi.X2", "Roi.Y2", "ClassId"]


def _colour(class_id: int, track: int, frame: int) -> tuple[int, int, int]:
    """A solid colour that says which file a row came from (bilinear resizing keeps it exact)."""
    return (class_id * 5, 40 + track * 50, (20 + frame * 11) % 256)


def write_gtsrb(root: Path, class_ids: list[int], tracks: int = 2, frames: int = 2,
                extra_test_ids: tuple[int, ...] = ()) -> dict:
    """A tiny GTSRB tree in torchvision's layout under ``root``; returns what was written.

    Train: ``gtsrb/GTSRB/Training/000NN/{track:05d}_{frame:05d}.ppm`` plus ``GT-000NN.csv``.
    Test: ``gtsrb/GTSRB/Final_Test/Images/NNNNN.ppm`` and ``gtsrb/GT-final_test.csv``, the
    classes interleaved so that file order is not class order.
    """
    base = root / "gtsrb"
    train = []
    for class_id in class_ids:
        folder = base / "GTSRB" / "Training" / f"{class_id:05d}"
        folder.mkdir(parents=True)
        rows = []
        for track in range(tracks):
            for frame in range(frames):
                name = f"{track:05d}_{frame:05d}.ppm"
                size = (32, 32) if frame % 2 == 0 else (36, 30)  # real GTSRB sizes vary
                Image.new("RGB", size, _colour(class_id, track, frame)).save(folder / name)
                rows.append([name, *size, 2, 2, size[0] - 3, size[1] - 3, class_id])
                train.append((class_id, track, frame))
        _write_csv(folder / f"GT-{class_id:05d}.csv", rows)
    images = base / "GTSRB" / "Final_Test" / "Images"
    images.mkdir(parents=True)
    test, rows = [], []
    ids = list(class_ids) + list(extra_test_ids)
    for n in range(2 * len(ids)):
        class_id = ids[(n * 3) % len(ids)] if n < len(ids) else ids[n - len(ids)]
        name = f"{n:05d}.ppm"
        Image.new("RGB", (32, 32), _colour(class_id, 3, n)).save(images / name)
        rows.append([name, 32, 32, 2, 2, 29, 29, class_id])
        test.append((name, class_id, n))
    _write_csv(base / "GT-final_test.csv", rows)
    return {"train": train, "test": test}


def _write_csv(path: Path, rows: list[list]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, delimiter=";")
        writer.writerow(GT_HEADER)
        writer.writerows(rows)


def _expected_pixels(colour: tuple[int, int, int], size: int) -> torch.Tensor:
    return torch.tensor(colour, dtype=torch.float32).div(255).view(3, 1, 1).expand(3, size, size)


@pytest.fixture
def gtsrb_root(tmp_path):
    """(root, written) with all ten default classes."""
    root = tmp_path / "data"
    return root, write_gtsrb(root, DEFAULT_CLASS_IDS, extra_test_ids=(1,))


def test_registered_with_the_paper_classes_and_concepts():
    registered = []
    register_modalities(register=registered.append)
    modality = next(m for m in registered if m.name == "gtsrb")
    modality.validate_descriptor()
    assert modality.class_names == ["Ahead only", "No entry", "Turn left ahead", "Turn right ahead", "Stop",
                                    "Go straight or right", "Go straight or left", "Keep right", "Keep left",
                                    "Roundabout mandatory"]
    assert modality.concepts == ["go", "stop", "left", "right", "stop sign", "go straight or right",
                                 "go straight or left", "keep right", "keep left", "roundabout"]


def test_class_table_covers_every_gtsrb_id_with_distinct_names_and_concepts():
    assert sorted(GTSRB_CLASSES) == list(range(43))
    names = [name for name, _ in GTSRB_CLASSES.values()]
    concepts = [concept for _, concept in GTSRB_CLASSES.values()]
    assert len(set(names)) == 43 and len(set(concepts)) == 43
    assert GTSRB_CLASSES[0][0] == "Speed limit (20km/h)" and GTSRB_CLASSES[42][0].startswith("End of no passing")


def test_descriptor_shapes_and_architectures():
    modality = GTSRB()
    assert modality.input_shape == (3, 52, 52)
    assert modality.reconstruction_loss == "bce"
    assert modality.output_suffix == ".png" and ".ppm" in modality.input_suffixes
    vae = modality.vae_config(64)
    assert isinstance(vae, VAEConfig) and vae.input_shape == (3, 52, 52) and len(vae.channels) == 3
    assert vae.output == "sigmoid" and vae.architecture == "conv"
    recognizer = modality.recognizer_config()
    assert isinstance(recognizer, RecognizerConfig) and recognizer.num_classes == 10


def test_options_change_classes_shape_and_cache_key():
    base = GTSRB()
    small = base.with_options({"class_ids": [38, 14], "image_size": 32})
    assert small.class_names == ["Keep right", "Stop"] and small.concepts == ["keep right", "stop sign"]
    assert small.input_shape == (3, 32, 32)
    assert small.recognizer_config().num_classes == 2 and small.vae_config(8).input_shape == (3, 32, 32)
    keys = {base.cache_key(), small.cache_key(), base.with_options({"image_size": 32}).cache_key(),
            base.with_options({"class_ids": [14, 38]}).cache_key()}
    assert len(keys) == 4
    assert base.class_names[0] == "Ahead only" and base.input_shape == (3, 52, 52)  # the original is untouched


def test_class_ids_may_be_given_comma_separated():
    assert GTSRB().with_options({"class_ids": "14, 38"}).options.class_ids == [14, 38]


@pytest.mark.parametrize("values,fragments", [
    ({"class_ids": [14, 38, 14]}, ["class_ids", "[14]", "more than once"]),
    ({"class_ids": [14, 99]}, ["class_ids", "[99]", "0 to 42"]),
    ({"class_ids": [14]}, ["class_ids", "at least 2"]),
    ({"class_ids": "left,right"}, ["class_ids", "list of integers"]),
    ({"image_size": 8}, ["image_size", "between 16 and 128", "got 8"]),
    ({"image_size": 256}, ["image_size", "between 16 and 128"]),
    ({"augment_copies": -1}, ["augment_copies", "greater than or equal to 0"]),
    ({"size": 52}, ["size", "not a known setting", "image_size"]),
])
def test_invalid_options_are_config_errors(values, fragments):
    with pytest.raises(ConfigError) as info:
        GTSRB().with_options(values)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_train_labels_come_from_folder_names(gtsrb_root):
    root, written = gtsrb_root
    features = GTSRB().load_features(root, "train").originals()
    assert features.x.shape == (len(written["train"]), 3, 52, 52) and features.x.dtype == torch.float32
    assert features.y.dtype == torch.int64
    for row, (class_id, track, frame) in enumerate(written["train"]):
        assert features.y[row].item() == DEFAULT_CLASS_IDS.index(class_id)
        assert torch.allclose(features.x[row], _expected_pixels(_colour(class_id, track, frame), 52))


def test_labels_follow_class_ids_when_only_some_folders_exist(tmp_path):
    # torchvision numbers the folders it finds (00014 -> 0, 00038 -> 1); the label must
    # instead be the position of the folder's id in class_ids.
    write_gtsrb(tmp_path, [14, 38])
    modality = GTSRB().with_options({"class_ids": [38, 14], "augment_copies": 0})
    features = modality.load_features(tmp_path, "train")
    colours = [tuple(round(v * 255) for v in features.x[i, :, 0, 0].tolist()) for i in range(len(features))]
    label_of_class = {colour[0] // 5: label for colour, label in zip(colours, features.y.tolist())}
    assert label_of_class == {38: 0, 14: 1}

    import torchvision.datasets

    torchvision_labels = {image.getpixel((0, 0))[0] // 5: label
                          for image, label in torchvision.datasets.GTSRB(tmp_path, split="train")}
    assert torchvision_labels == {14: 0, 38: 1}  # what load_features must not use


def test_selected_class_folder_missing_names_it(tmp_path):
    write_gtsrb(tmp_path, [14, 38])
    with pytest.raises(DataNotFoundError) as info:
        GTSRB().load_features(tmp_path, "train")
    message = str(info.value)
    assert "00035 (Ahead only)" in message and "[14, 38]" in message
    assert "class_ids" in message and "--download" in message


def test_train_origins_are_one_per_track(gtsrb_root):
    root, written = gtsrb_root
    features = GTSRB().with_options({"mirror": False, "augment_copies": 1}).load_features(root, "train")
    n = len(written["train"])
    origin_of = {}
    for row, (class_id, track, _) in enumerate(written["train"]):
        origin_of.setdefault((class_id, track), set()).update([features.origin[row].item(),
                                                               features.origin[n + row].item()])
    assert all(len(origins) == 1 for origins in origin_of.values())  # frames of a track and their copies
    assert len({next(iter(o)) for o in origin_of.values()}) == len(origin_of)  # tracks 0 of two classes differ
    train, val = split_validation(features, seed=0, fraction=0.3)
    assert len(val) and not set(train.origin.tolist()) & set(val.origin.tolist())
    assert all(count == 2 for count in val.origin.unique(return_counts=True)[1].tolist())  # whole tracks
    assert not val.augmented.any() and int(train.augmented.sum()) == len(train) // 2


def test_training_split_gets_seeded_augmented_copies(gtsrb_root):
    root, written = gtsrb_root
    n = len(written["train"])
    unmirrored = GTSRB().with_options({"mirror": False})  # three copies by default
    features = unmirrored.load_features(root, "train")
    assert len(features) == 4 * n and features.augmented.tolist() == [False] * n + [True] * 3 * n
    assert torch.equal(features.y[n:], features.y[:n].repeat(3))
    assert torch.equal(features.origin[n:], features.origin[:n].repeat(3))
    copies = features.x[n:2 * n]
    assert copies.min().item() >= 0.0 and copies.max().item() <= 1.0
    assert not torch.allclose(copies, features.x[:n], atol=0.02)  # the lighting changed
    again = unmirrored.load_features(root, "train")
    assert torch.equal(again.x, features.x)  # seeded: the same copies every time
    other = GTSRB().with_options({"augment_seed": 1, "augment_copies": 2, "mirror": False})
    more = other.load_features(root, "train")
    assert len(more) == 3 * n and not torch.equal(more.x[n:2 * n], copies)
    assert other.cache_key() != unmirrored.cache_key()
    assert len(GTSRB().with_options({"augment_copies": 0, "mirror": False}).load_features(root, "train")) == n
    assert not GTSRB().load_features(root, "test").augmented.any()


def test_test_labels_come_from_the_csv(gtsrb_root):
    root, written = gtsrb_root
    features = GTSRB().load_features(root, "test")
    kept = [(name, class_id, n) for name, class_id, n in written["test"] if class_id in DEFAULT_CLASS_IDS]
    assert len(kept) < len(written["test"])  # class 1 is listed in the csv and left out
    assert features.x.shape == (len(kept), 3, 52, 52)
    assert features.y.tolist() == [DEFAULT_CLASS_IDS.index(class_id) for _, class_id, _ in kept]
    for row, (_, class_id, n) in enumerate(kept):
        assert torch.allclose(features.x[row], _expected_pixels(_colour(class_id, 3, n), 52))
    assert features.origin.tolist() == list(range(len(kept)))


def test_image_size_option_resizes_features(gtsrb_root):
    root, _ = gtsrb_root
    features = GTSRB().with_options({"image_size": 20}).load_features(root, "train")
    assert features.x.shape[1:] == (3, 20, 20)
    assert torch.allclose(features.x[0], _expected_pixels(_colour(35, 0, 0), 20))


@pytest.mark.parametrize("split,looked_in", [("train", "gtsrb/GTSRB/Training"),
                                             ("test", "gtsrb/GTSRB/Final_Test/Images")])
def test_missing_data_names_the_folder_and_the_flag(tmp_path, split, looked_in):
    with pytest.raises(DataNotFoundError) as info:
        GTSRB().load_features(tmp_path, split)
    assert str(tmp_path / looked_in) in str(info.value) and "--download" in str(info.value)


def test_missing_test_csv_and_missing_listed_image(gtsrb_root):
    root, _ = gtsrb_root
    (root / "gtsrb" / "GTSRB" / "Final_Test" / "Images" / "00003.ppm").unlink()
    with pytest.raises(DataNotFoundError, match="00003.ppm"):
        GTSRB().load_features(root, "test")
    (root / "gtsrb" / "GT-final_test.csv").unlink()
    with pytest.raises(DataNotFoundError, match="GT-final_test.csv.*--download"):
        GTSRB().load_features(root, "test")


def test_damaged_image_is_reported(gtsrb_root):
    root, _ = gtsrb_root
    (root / "gtsrb" / "GTSRB" / "Training" / "00035" / "00001_00000.ppm").write_bytes(b"P6 broken")
    with pytest.raises(DataNotFoundError, match="00001_00000.ppm.*--download"):
        GTSRB().load_features(root, "train")


def test_download_goes_through_torchvision(tmp_path, monkeypatch):
    import torchvision.datasets

    calls = []

    def fake_gtsrb(root, split, download):
        calls.append((root, split, download))
        if not (Path(root) / "gtsrb").exists():
            write_gtsrb(Path(root), [14, 38])

    monkeypatch.setattr(torchvision.datasets, "GTSRB", fake_gtsrb)
    features = GTSRB().with_options({"class_ids": [14, 38]}).load_features(tmp_path, "test", download=True)
    assert calls == [(str(tmp_path), "test", True)] and len(features) == 4


def test_failed_download_is_a_data_not_found_error(tmp_path, monkeypatch):
    import torchvision.datasets

    def offline(root, split, download):
        raise OSError("network unreachable")

    monkeypatch.setattr(torchvision.datasets, "GTSRB", offline)
    with pytest.raises(DataNotFoundError, match="could not download.*network unreachable"):
        GTSRB().load_features(tmp_path, "train", download=True)


def test_write_then_read_round_trip(tmp_path):
    modality = GTSRB()
    x = torch.rand(3, 52, 52, generator=torch.Generator().manual_seed(0))
    path = tmp_path / "out" / "sign.png"
    assert modality.write_file(x, path) == [path]
    with Image.open(path) as image:
        assert (image.format, image.mode, image.size) == ("PNG", "RGB", (52, 52))
    back, notes = modality.read_file(path)
    assert notes == [] and back.shape == (3, 52, 52) and back.dtype == torch.float32
    assert (back - x).abs().max().item() <= 0.5 / 255 + 1e-6
    assert not list(path.parent.glob(".*.tmp"))


def test_write_scale_and_picture(tmp_path):
    x = torch.rand(3, 52, 52, generator=torch.Generator().manual_seed(0))
    plain, big = GTSRB().write_file(x, tmp_path / "a.png")[0], GTSRB().write_file(x, tmp_path / "b.png", scale=2)[0]
    with Image.open(plain) as small, Image.open(big) as large:
        assert (large.mode, large.size) == ("RGB", (104, 104))
        assert large.tobytes() == small.resize((104, 104), Image.NEAREST).tobytes()
        assert GTSRB().picture(x).tobytes() == small.tobytes()


def test_write_rejects_the_wrong_shape(tmp_path):
    with pytest.raises(ValueError, match=r"\(3, 52, 52\)"):
        GTSRB().write_file(torch.zeros(1, 52, 52), tmp_path / "gray.png")


@pytest.mark.parametrize("mode,colour,notes", [
    ("L", 128, ["converted L to RGB"]),
    ("RGBA", (255, 0, 0, 0), ["converted RGBA to RGB", "flattened transparency onto white"]),
    ("P", None, ["converted P to RGB"]),
])
def test_read_file_converts_other_modes_with_a_note(tmp_path, mode, colour, notes):
    image = Image.new("RGB", (52, 52), (200, 30, 30)).quantize(4) if mode == "P" else Image.new(mode, (52, 52), colour)
    path = tmp_path / "sign.png"
    image.save(path)
    x, got = GTSRB().read_file(path)
    assert got == notes and x.shape == (3, 52, 52)
    expected = {"L": (128, 128, 128), "RGBA": (255, 255, 255), "P": (200, 30, 30)}[mode]
    assert torch.allclose(x, _expected_pixels(expected, 52))


def test_read_file_resizes_with_a_note(tmp_path):
    path = tmp_path / "photo.jpg"
    Image.new("RGB", (40, 30), (10, 200, 10)).save(path, format="PPM")  # content, not suffix, decides
    x, notes = GTSRB().with_options({"image_size": 24}).read_file(path)
    assert notes == ["resized 40x30 to 24x24"] and x.shape == (3, 24, 24)


def test_non_image_is_an_input_file_error_naming_the_file(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("not an image")
    with pytest.raises(InputFileError) as info:
        GTSRB().read_file(path)
    assert str(path) in str(info.value)


def test_conformance(gtsrb_root, tmp_path):
    root, _ = gtsrb_root
    modgraph.testing.check_modality(GTSRB(), tmp_path / "check", data_root=root, device="meta")
    modgraph.testing.check_modality(GTSRB().with_options({"image_size": 17, "class_ids": [1, 2, 3]}),
                                    tmp_path / "check-small", device="meta")


def test_mirrored_signs_swap_sides_and_stay_with_their_track():
    from modgraph.modality import FeatureSet
    from modgraph_vision.gtsrb import with_mirrored_signs

    class_ids = [38, 14, 39, 35]  # Keep right, Stop, Keep left, Ahead only
    x = torch.arange(4 * 3 * 2 * 2, dtype=torch.float32).view(4, 3, 2, 2)  # left and right columns differ
    features = FeatureSet(x=x, y=torch.tensor([0, 1, 2, 3]), origin=torch.tensor([7, 8, 9, 10]))
    out = with_mirrored_signs(features, class_ids)
    assert len(out) == 6  # Keep right and Keep left mirrored; Stop (text) and Ahead only (symmetric) not
    assert out.y[4:].tolist() == [2, 0]  # Keep right becomes Keep left, and back
    assert torch.equal(out.x[4], x[0].flip(-1)) and not torch.equal(out.x[4], x[0])
    assert out.origin[4:].tolist() == [7, 9] and out.augmented.tolist() == [False] * 4 + [True] * 2
    assert len(with_mirrored_signs(features, [38, 14, 40, 35])) == 4  # Keep left not selected: no pair


def test_training_split_gets_mirrored_signs_before_its_copies(gtsrb_root):
    root, written = gtsrb_root
    n = len(written["train"])
    plain = GTSRB().with_options({"augment_copies": 0}).load_features(root, "train")  # off by default
    mirrored = GTSRB().with_options({"mirror": True, "augment_copies": 0}).load_features(root, "train")
    sides = [33, 34, 36, 37, 38, 39]
    extra = sum(1 for class_id, _, _ in written["train"] if class_id in sides)
    assert len(plain) == n and len(mirrored) == n + extra
    assert mirrored.augmented.tolist() == [False] * n + [True] * extra
    assert len(GTSRB().with_options({"mirror": True}).load_features(root, "train")) == 4 * (n + extra)
    assert GTSRB().cache_key() != GTSRB().with_options({"mirror": True}).cache_key()
    assert not GTSRB().load_features(root, "test").augmented.any()
