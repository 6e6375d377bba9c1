"""The ``gtsrb`` modality: German Traffic Sign Recognition Benchmark images, RGB.

Reads torchvision's GTSRB layout (``<root>/gtsrb/GTSRB/...``) itself, taking train
labels from the class folder names and test labels from ``GT-final_test.csv``, and adds
seeded augmented copies (small shifts and zooms, lighting) to the training split.
"""

from __future__ import annotations

import csv
import re
import zipfile
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import field_validator

from modgraph import (Field, comma_separated, ClassInfo, DatasetInfo, ConfigError, DataNotFoundError, FAITHFUL_CONFIDENCE, FeatureSet, InputFileError,
                      Modality, ModalityOptions, RecognizerConfig, TrainingDefaults, VAEConfig)
from modgraph_vision.images import IMAGE_SUFFIXES, load_rgb_images, read_rgb_image, rgb_image, write_rgb_png

# Every GTSRB class id: (official name, default concept). The concepts of the paper's
# four sign/command pairs are the spoken commands ("go", "stop", "left", "right");
# every other class has a concept of its own, so it pairs with nothing by accident.
GTSRB_CLASSES: dict[int, tuple[str, str]] = {
    0: ("Speed limit (20km/h)", "speed limit 20"),
    1: ("Speed limit (30km/h)", "speed limit 30"),
    2: ("Speed limit (50km/h)", "speed limit 50"),
    3: ("Speed limit (60km/h)", "speed limit 60"),
    4: ("Speed limit (70km/h)", "speed limit 70"),
    5: ("Speed limit (80km/h)", "speed limit 80"),
    6: ("End of speed limit (80km/h)", "end of speed limit 80"),
    7: ("Speed limit (100km/h)", "speed limit 100"),
    8: ("Speed limit (120km/h)", "speed limit 120"),
    9: ("No passing", "no passing"),
    10: ("No passing for vehicles over 3.5 metric tons", "no passing for heavy vehicles"),
    11: ("Right-of-way at the next intersection", "right of way"),
    12: ("Priority road", "priority road"),
    13: ("Yield", "yield"),
    14: ("Stop", "stop sign"),
    15: ("No vehicles", "no vehicles"),
    16: ("Vehicles over 3.5 metric tons prohibited", "no heavy vehicles"),
    17: ("No entry", "stop"),
    18: ("General caution", "general caution"),
    19: ("Dangerous curve to the left", "dangerous curve left"),
    20: ("Dangerous curve to the right", "dangerous curve right"),
    21: ("Double curve", "double curve"),
    22: ("Bumpy road", "bumpy road"),
    23: ("Slippery road", "slippery road"),
    24: ("Road narrows on the right", "road narrows"),
    25: ("Road work", "road work"),
    26: ("Traffic signals", "traffic signals"),
    27: ("Pedestrians", "pedestrians"),
    28: ("Children crossing", "children crossing"),
    29: ("Bicycles crossing", "bicycles crossing"),
    30: ("Beware of ice/snow", "ice"),
    31: ("Wild animals crossing", "wild animals"),
    32: ("End of all speed and passing limits", "end of all limits"),
    33: ("Turn right ahead", "right"),
    34: ("Turn left ahead", "left"),
    35: ("Ahead only", "go"),
    36: ("Go straight or right", "go straight or right"),
    37: ("Go straight or left", "go straight or left"),
    38: ("Keep right", "keep right"),
    39: ("Keep left", "keep left"),
    40: ("Roundabout mandatory", "roundabout"),
    41: ("End of no passing", "end of no passing"),
    42: ("End of no passing by vehicles over 3.5 metric tons", "end of no passing for heavy vehicles"),
}

# The paper's four pairs first (label indices 0-3), then round-sign distractors.
DEFAULT_CLASS_IDS = [35, 17, 34, 33, 14, 36, 37, 38, 39, 40]

DEFAULT_IMAGE_SIZE = 52  # the paper resizes every sign to 52x52
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 16, 128

_TRACK_FILE = re.compile(r"^(\d{5})_\d{5}$")  # {track}_{frame}.ppm

# Augmented copies: GTSRB's test signs differ from the training tracks mostly in lighting
# and framing (docs/tuning.md: what copies bought).
ZOOM_RANGE = (0.9, 1.1)  # < 1 zooms in

# Signs whose mirror image is another sign. GTSRB has 2,070 Keep right training images
# and 300 Keep left: mirrored Keep right photos give the rarer side more tracks to learn
# from (a classic GTSRB augmentation). Symmetric signs are left out (no new class signal).
# Off by default: it helps the recognizer, but mirror pairs then sit close in the latent
# space and the associators mix up left and right (docs/tuning.md).
MIRROR_PAIRS = [(19, 20), (33, 34), (36, 37), (38, 39)]
SHIFT_RANGE = 0.1  # of half the image side, each axis
GAIN_RANGE = (0.6, 1.6)
CONTRAST_RANGE = (0.7, 1.4)


class GTSRBOptions(ModalityOptions):
    """Options of ``gtsrb`` (``--option class_ids=[14,38]``, ``--option image_size=32``)."""

    class_ids: list[int] = Field(default_factory=lambda: list(DEFAULT_CLASS_IDS))
    image_size: int = DEFAULT_IMAGE_SIZE
    augment_copies: int = Field(
        3, ge=0, le=10,
        description="augmented copies of each training image (shift, zoom, lighting); 0 turns augmentation off")
    augment_seed: int = Field(0, ge=0, description="seed of the augmented copies (they are cached)")
    mirror: bool = Field(
        False, description="add mirrored training images of signs whose mirror image is another selected sign "
                          "(Keep right as Keep left, Turn left ahead as Turn right ahead, ...)")

    _class_ids = comma_separated("class_ids", item=int)

    @field_validator("class_ids")
    @classmethod
    def _known_unique_ids(cls, value: list[int]) -> list[int]:
        unknown = [i for i in value if i not in GTSRB_CLASSES]
        if unknown:
            raise ValueError(f"unknown GTSRB class id(s) {unknown}: ids run from 0 to {max(GTSRB_CLASSES)} "
                             f"(the table in modgraph_vision.gtsrb.GTSRB_CLASSES names them)")
        repeated = sorted({i for i in value if value.count(i) > 1})
        if repeated:
            raise ValueError(f"class id(s) {repeated} appear more than once; list each class once "
                             f"(its position is its label index)")
        if len(value) < 2:
            raise ValueError(f"choose at least 2 classes to tell apart, got {value}")
        return value

    @field_validator("image_size")
    @classmethod
    def _size_in_range(cls, value: int) -> int:
        if not MIN_IMAGE_SIZE <= value <= MAX_IMAGE_SIZE:
            raise ValueError(f"must be between {MIN_IMAGE_SIZE} and {MAX_IMAGE_SIZE} pixels, got {value} "
                             f"(the paper uses {DEFAULT_IMAGE_SIZE})")
        return value


def gtsrb_classes(class_ids: list[int]) -> list[ClassInfo]:
    """ClassInfo for ``class_ids``, in that order (position = label index)."""
    return [ClassInfo(name=GTSRB_CLASSES[i][0], concept=GTSRB_CLASSES[i][1]) for i in class_ids]


def load_gtsrb(root: Path, split: Literal["train", "test"], class_ids: list[int], image_size: int,
               download: bool = False) -> FeatureSet:
    """The selected classes of a GTSRB split from torchvision's on-disk layout under ``root``.

    ``x`` is float32 (N, 3, image_size, image_size) in [0, 1] (whole images, bilinear
    resize), ``y`` the position of each image's class id in ``class_ids``. Train rows
    carry one ``origin`` per physical sign track (30 frames of one sign), so a
    validation split by origin never sees a sign it was trained on. No augmentation.
    """
    if split not in ("train", "test"):
        raise ConfigError(f"split must be 'train' or 'test', got {split!r}")
    root = Path(root).expanduser()
    base = root / "gtsrb"
    if download:
        _download(root, base, split)
    if split == "train":
        paths, labels, origins = _train_samples(base / "GTSRB" / "Training", class_ids)
    else:
        paths, labels = _test_samples(base, class_ids)
        origins = None
    try:
        x = load_rgb_images(paths, image_size)
    except InputFileError as exc:
        raise DataNotFoundError(f"{exc}; the GTSRB files under {base} look damaged: delete {base} "
                                f"and pass --download to fetch them again") from None
    y = torch.tensor(labels, dtype=torch.int64)
    origin = torch.tensor(origins, dtype=torch.int64) if origins is not None else None
    return FeatureSet(x=x, y=y, origin=origin)


def augmented_copies(x: torch.Tensor, copies: int, seed: int, chunk: int = 1024) -> torch.Tensor:
    """``copies`` randomly shifted, zoomed and relit versions of each image in ``x``.

    Returns (copies * N, C, H, W): copy k of image i is row ``k * N + i``. Batched
    (``affine_grid``/``grid_sample``), deterministic for a given ``seed``.
    """
    generator = torch.Generator().manual_seed(seed)
    n = len(x)

    def uniform(low: float, high: float, *shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=generator) * (high - low) + low

    out = torch.empty(copies * n, *x.shape[1:], dtype=x.dtype)
    for k in range(copies):
        zoom, shift = uniform(*ZOOM_RANGE, n), uniform(-SHIFT_RANGE, SHIFT_RANGE, n, 2)
        gain, contrast = uniform(*GAIN_RANGE, n, 1, 1, 1), uniform(*CONTRAST_RANGE, n, 1, 1, 1)
        for start in range(0, n, chunk):
            rows = slice(start, start + chunk)
            batch = x[rows]
            theta = torch.zeros(len(batch), 2, 3)
            theta[:, 0, 0] = theta[:, 1, 1] = zoom[rows]
            theta[:, :, 2] = shift[rows]
            grid = F.affine_grid(theta, list(batch.shape), align_corners=False)
            # "border" repeats the edge rather than adding black frames no real image has.
            moved = F.grid_sample(batch, grid, mode="bilinear", padding_mode="border", align_corners=False)
            mean = moved.mean(dim=(1, 2, 3), keepdim=True)
            relit = ((moved - mean) * contrast[rows] + mean) * gain[rows]
            out[k * n + start:k * n + start + len(batch)] = relit.clamp_(0.0, 1.0)
    return out


def with_augmented_copies(features: FeatureSet, copies: int, seed: int) -> FeatureSet:
    """``features`` followed by ``copies`` augmented copies of each row (same label and origin)."""
    if copies == 0:
        return features
    n = len(features)
    return FeatureSet(
        x=torch.cat([features.x, augmented_copies(features.x, copies, seed)]),
        y=features.y.repeat(copies + 1), origin=features.origin.repeat(copies + 1),
        augmented=torch.cat([features.augmented, torch.ones(copies * n, dtype=torch.bool)]))


def with_mirrored_signs(features: FeatureSet, class_ids: list[int]) -> FeatureSet:
    """``features`` followed by the left-right mirror image of each row whose sign mirrors to another selected
    sign, labelled as that sign. Mirrored rows count as augmented and keep their photo's origin (track)."""
    position = {cid: i for i, cid in enumerate(class_ids)}
    relabel = torch.full((len(class_ids),), -1, dtype=torch.long)
    for a, b in MIRROR_PAIRS:
        if a in position and b in position:
            relabel[position[a]], relabel[position[b]] = position[b], position[a]
    rows = (relabel[features.y] >= 0).nonzero().flatten()
    if len(rows) == 0:
        return features
    return FeatureSet(
        x=torch.cat([features.x, features.x[rows].flip(-1)]), y=torch.cat([features.y, relabel[features.y[rows]]]),
        origin=torch.cat([features.origin, features.origin[rows]]),
        augmented=torch.cat([features.augmented, torch.ones(len(rows), dtype=torch.bool)]))


def _missing(what: str, folder: Path) -> DataNotFoundError:
    return DataNotFoundError(
        f"GTSRB {what} not found in {folder}; pass --download to fetch it with torchvision's GTSRB loader, "
        f"or set MODGRAPH_DATA / --data-root to the folder that holds gtsrb/GTSRB")


def _download(root: Path, base: Path, split: str) -> None:
    import torchvision.datasets

    try:
        torchvision.datasets.GTSRB(root=str(root), split=split, download=True)
    except (OSError, RuntimeError, ValueError, zipfile.BadZipFile) as exc:
        raise DataNotFoundError(
            f"could not download the GTSRB {split} split into {base} ({exc}); place torchvision's "
            f"GTSRB layout (gtsrb/GTSRB/Training/000NN/*.ppm, gtsrb/GTSRB/Final_Test/Images/*.ppm, "
            f"gtsrb/GT-final_test.csv) under {root} by hand") from None


def _train_samples(folder: Path, class_ids: list[int]) -> tuple[list[Path], list[int], list[int]]:
    """Files, label indices and track origins of the selected class folders."""
    if not folder.is_dir():
        raise _missing("training images (GTSRB/Training/000NN/*.ppm)", folder)
    absent = [i for i in class_ids if not (folder / f"{i:05d}").is_dir()]
    if absent:
        present = sorted(int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit())
        raise DataNotFoundError(
            f"GTSRB class folder(s) {', '.join(f'{i:05d} ({GTSRB_CLASSES[i][0]})' for i in absent)} "
            f"missing in {folder} (present: {present or 'none'}); choose class_ids among the present ids "
            f"with --option class_ids=..., or delete {folder.parent.parent} and pass --download to fetch "
            f"all 43 classes")
    paths: list[Path] = []
    labels: list[int] = []
    origins: list[int] = []
    tracks: dict[tuple[int, str], int] = {}
    for label, class_id in enumerate(class_ids):
        files = sorted(p for p in (folder / f"{class_id:05d}").iterdir() if p.suffix.lower() == ".ppm")
        if not files:
            raise DataNotFoundError(f"GTSRB class folder {folder / f'{class_id:05d}'} holds no .ppm images; "
                                    f"delete {folder.parent.parent} and pass --download to fetch them again")
        for path in files:
            match = _TRACK_FILE.match(path.stem)
            # The class folder is part of the key: track numbers restart in every class.
            key = (class_id, match.group(1) if match else path.stem)
            paths.append(path)
            labels.append(label)
            origins.append(tracks.setdefault(key, len(tracks)))
    return paths, labels, origins


def _test_samples(base: Path, class_ids: list[int]) -> tuple[list[Path], list[int]]:
    """Files and label indices of the selected classes, from GT-final_test.csv."""
    images = base / "GTSRB" / "Final_Test" / "Images"
    table = base / "GT-final_test.csv"
    if not images.is_dir():
        raise _missing("test images (GTSRB/Final_Test/Images/*.ppm)", images)
    if not table.is_file():
        raise _missing("test labels (GT-final_test.csv)", base)
    label_of = {class_id: label for label, class_id in enumerate(class_ids)}
    paths: list[Path] = []
    labels: list[int] = []
    try:
        with open(table, newline="") as handle:
            for row in csv.DictReader(handle, delimiter=";", skipinitialspace=True):
                label = label_of.get(int(row["ClassId"]))
                if label is not None:
                    paths.append(images / row["Filename"].strip())
                    labels.append(label)
    except (KeyError, TypeError, ValueError, csv.Error, UnicodeDecodeError) as exc:
        raise DataNotFoundError(
            f"{table} is not a GTSRB ground-truth table (semicolon-separated with Filename and ClassId "
            f"columns; {exc!r}); delete {base} and pass --download to fetch it again") from None
    found = set(labels)
    absent = [i for i in class_ids if label_of[i] not in found]
    if absent:
        raise DataNotFoundError(f"{table} lists no test images of class id(s) {absent}; choose other "
                                f"class_ids or delete {base} and pass --download to fetch the full test set")
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise DataNotFoundError(
            f"{len(missing)} test image(s) listed in {table} are missing from {images} "
            f"({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}); delete {base} and pass "
            f"--download to fetch them again")
    return paths, labels


class GTSRB(Modality):
    """Traffic signs (Stallkamp et al.): RGB, classes and image size chosen by options."""

    name = "gtsrb"
    description = "GTSRB traffic signs, RGB (default: the paper's 4 command signs + 6 round signs, 52x52)"
    dataset = DatasetInfo(name="GTSRB (German Traffic Sign Recognition Benchmark)",
                          licence="not stated by the copy read (see the benchmark's site)",
                          url="https://benchmark.ini.rub.de/gtsrb_dataset.html",
                          citation="J. Stallkamp, M. Schlipsing, J. Salmen and C. Igel, Neural Networks 32, 2012")
    options_model = GTSRBOptions
    options: GTSRBOptions
    default_latent_dim = 64
    reconstruction_loss = "bce"
    input_suffixes = IMAGE_SUFFIXES
    output_suffix = ".png"
    # The training split is 7,529 images plus three augmented copies each, 27,116 rows after
    # validation. A VAE epoch costs 80-120 s of one core (one copy: 40-46 s), so seven take
    # 10-14 min on one core. kl_weight 0.1: sharper reconstructions.
    # Associators into gtsrb keep Eq. 7's one partner: the closest of several photos is decided
    # by lighting and background, not by the arrow (left and right signs swapped), and more
    # partners were unstable from node to node. 5 recognizer epochs give it room (docs/tuning.md).
    training_defaults = TrainingDefaults(
        epochs=7, batch_size=64, lr=1e-3, kl_weight=0.1, recognizer_epochs=5, link_epochs=5,
        link_pairs_per_epoch=20000, link_candidates=1,
        link_target_confidence=FAITHFUL_CONFIDENCE)

    def __init__(self, options: GTSRBOptions | None = None):
        super().__init__(options)
        self.classes = gtsrb_classes(self.options.class_ids)
        size = self.options.image_size
        self.input_shape = (3, size, size)

    @property
    def class_ids(self) -> list[int]:
        return list(self.options.class_ids)

    def vae_config(self, latent_dim: int) -> VAEConfig:
        return VAEConfig(input_shape=self.input_shape, latent_dim=latent_dim, architecture="conv",
                         channels=[32, 64, 128], hidden=[256], output="sigmoid")

    def recognizer_config(self) -> RecognizerConfig:
        return RecognizerConfig(input_shape=self.input_shape, num_classes=len(self.classes),
                                architecture="conv", channels=[32, 64, 128], hidden=128, dropout=0.3)

    def load_features(self, root: Path, split: Literal["train", "test"], download: bool = False) -> FeatureSet:
        """The split's images; the training split gets mirrored signs, then ``augment_copies`` copies of each."""
        features = load_gtsrb(root, split, self.options.class_ids, self.options.image_size, download)
        if split == "train":
            if self.options.mirror:
                features = with_mirrored_signs(features, self.options.class_ids)
            features = with_augmented_copies(features, self.options.augment_copies, self.options.augment_seed)
        return features

    def read_file(self, path: Path) -> tuple[torch.Tensor, list[str]]:
        return read_rgb_image(path, size=self.options.image_size)

    def write_file(self, x: torch.Tensor, path: Path, *, scale: int = 1) -> list[Path]:
        if tuple(x.shape) != self.input_shape:
            raise ValueError(f"{self.name} writes tensors shaped {self.input_shape}, got {tuple(x.shape)}")
        return write_rgb_png(x, path, scale)

    def picture(self, x: torch.Tensor):
        """The RGB picture ``write_file`` writes (the contact sheet enlarges it)."""
        return rgb_image(x)
