"""A third-party modgraph plugin used by the tests: three tiny modalities over real files.

``toyimg`` reads 8x8 PNGs, ``toyaudio`` short 16-bit wav clips, ``toycolor`` CSV rows whose
concepts share nothing with the others; :func:`write_dataset` writes their on-disk trees.
"""

from __future__ import annotations

import csv
import io
import math
import random
import wave
from pathlib import Path
from typing import Literal

import torch
from PIL import Image, UnidentifiedImageError
from pydantic import Field

from modgraph import hookimpl, write_bytes_atomically
from modgraph.errors import DataNotFoundError, InputFileError
from modgraph.modality import ClassInfo, DatasetInfo, FeatureSet, Modality, ModalityOptions, TrainingDefaults
from modgraph.learning.models import AssociatorConfig, RecognizerConfig, VAEConfig

DISTRIBUTION = "modgraph-toy"  # the distribution name the tests install this module under
__version__ = "0.0.1"

DIGITS = [ClassInfo(name=str(i), concept=c) for i, c in enumerate(["zero", "one", "two"])]
COLORS = [ClassInfo(name=c, concept=c) for c in ["red", "green", "blue"]]
SIZES = {"train": 24, "test": 6}  # per class; toyaudio splits them over two speakers, toycolor has 3x
SPEAKERS = ["ann", "bob"]
IMAGE_SIDE = 8
AUDIO_RATE = 8000
AUDIO_LENGTH = 32
FREQUENCIES = [500.0, 1000.0, 2000.0]
COLOR_DIM = 12
# Small data and small models: defaults that learn the toy data in a second or two.
TOY_DEFAULTS = TrainingDefaults(epochs=20, batch_size=8, lr=1e-2, kl_weight=0.5, recognizer_epochs=30,
                                link_epochs=15)


def _missing(name: str, folder: Path) -> DataNotFoundError:
    return DataNotFoundError(f"{name} data not found in {folder}; pass --download to fetch it, or set "
                             f"MODGRAPH_DATA / --data-root to the folder that holds {name}/")


# -- data writers (the tests' stand-in for a real download) ------------------------------
def image_pattern(label: int, rng: random.Random) -> list[list[float]]:
    """An 8x8 image of class ``label``: a horizontal bar, a vertical bar or a diagonal, plus noise."""
    pixels = [[rng.uniform(0.0, 0.2) for _ in range(IMAGE_SIDE)] for _ in range(IMAGE_SIDE)]
    level = rng.uniform(0.75, 1.0)
    for i in range(IMAGE_SIDE):
        for j in (3, 4):
            r, c = {0: (j, i), 1: (i, j), 2: (i, min(IMAGE_SIDE - 1, i + j - 3))}[label]
            pixels[r][c] = level
    return pixels


def write_png(pixels: list[list[float]], path: Path, scale: int = 1) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("L", (len(pixels[0]), len(pixels)))
    image.putdata([round(255 * min(1.0, max(0.0, v))) for row in pixels for v in row])
    buffer = io.BytesIO()  # written whole or not at all: the kit checks that a failed write leaves no partial file
    image.resize((image.width * scale, image.height * scale), Image.NEAREST).save(buffer, format="PNG")
    write_bytes_atomically(path, buffer.getvalue())


def audio_clip(label: int, speaker: int, rng: random.Random) -> list[float]:
    """A short tone whose pitch encodes the class; the speaker sets the loudness."""
    amplitude = (0.5 if speaker == 0 else 0.8) * rng.uniform(0.9, 1.1)
    return [amplitude * math.sin(2 * math.pi * FREQUENCIES[label] * t / AUDIO_RATE) + rng.gauss(0.0, 0.03)
            for t in range(AUDIO_LENGTH)]


def write_wav(samples: list[float], path: Path, rate: int = AUDIO_RATE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ints = [round(max(-1.0, min(1.0, v)) * 32767) for v in samples]
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as fh:
        fh.setnchannels(1)
        fh.setsampwidth(2)
        fh.setframerate(rate)
        fh.writeframes(b"".join(i.to_bytes(2, "little", signed=True) for i in ints))
    write_bytes_atomically(path, buffer.getvalue())


def image_file(path: Path, label: int, seed: int = 0) -> Path:
    """A toyimg PNG of class ``label`` written to ``path``."""
    write_png(image_pattern(label, random.Random(seed)), path)
    return path


def wav_file(path: Path, label: int, seed: int = 0) -> Path:
    """A toyaudio wav of class ``label`` written to ``path``."""
    write_wav(audio_clip(label, 0, random.Random(seed)), path)
    return path


def color_vector(label: int, rng: random.Random) -> list[float]:
    return [(0.95 if k % 3 == label else 0.05) + rng.uniform(-0.05, 0.05) for k in range(COLOR_DIM)]


def write_dataset(root: Path, seed: int = 0) -> Path:
    """Write ``<root>/toyimg``, ``<root>/toyaudio`` and ``<root>/toycolor`` for both splits."""
    root = Path(root)
    rng = random.Random(seed)
    for split, per_class in SIZES.items():
        for label in range(3):
            for i in range(per_class):
                write_png(image_pattern(label, rng), root / "toyimg" / split / str(label) / f"{i:03d}.png")
                speaker = i % len(SPEAKERS)
                write_wav(audio_clip(label, speaker, rng),
                          root / "toyaudio" / split / f"{label}_{SPEAKERS[speaker]}_{i}.wav")
        # Colours are cheap to learn from and a bigger validation split steadies the recognizer.
        rows = [[COLORS[label].name, *(f"{v:.4f}" for v in color_vector(label, rng))]
                for i in range(3 * per_class) for label in range(3)]
        (root / "toycolor").mkdir(parents=True, exist_ok=True)
        with open(root / "toycolor" / f"{split}.csv", "w", newline="") as fh:
            csv.writer(fh).writerows(rows)
    return root


# -- file readers -----------------------------------------------------------------------
def read_png(path: Path) -> tuple[torch.Tensor, list[str]]:
    path = Path(path)
    if path.suffix.lower() not in ToyImage.input_suffixes:
        raise InputFileError(f"{path}: unsupported suffix {path.suffix!r} (toyimg reads "
                             f"{', '.join(ToyImage.input_suffixes)})")
    notes = []
    try:
        with Image.open(path) as opened:
            if opened.mode != "L":
                notes.append(f"converted {opened.mode} to grayscale")
            image = opened.convert("L")
    except (OSError, UnidentifiedImageError) as exc:
        raise InputFileError(f"{path}: not a readable image ({exc})") from None
    if image.size != (IMAGE_SIDE, IMAGE_SIDE):
        notes.append(f"resized {image.size[0]}x{image.size[1]} to {IMAGE_SIDE}x{IMAGE_SIDE}")
        image = image.resize((IMAGE_SIDE, IMAGE_SIDE))
    x = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8).view(1, IMAGE_SIDE, IMAGE_SIDE) / 255.0
    return x, notes


def read_wav(path: Path) -> tuple[torch.Tensor, list[str]]:
    path = Path(path)
    if path.suffix.lower() != ".wav":
        raise InputFileError(f"{path}: unsupported suffix {path.suffix!r} (toyaudio reads .wav)")
    try:
        with wave.open(str(path), "rb") as fh:
            if fh.getsampwidth() != 2 or fh.getnchannels() != 1:
                raise InputFileError(f"{path}: toyaudio reads 16-bit mono wav files")
            frames = fh.readframes(fh.getnframes())
    except (wave.Error, EOFError, OSError) as exc:
        raise InputFileError(f"{path}: not a readable wav file ({exc})") from None
    values = [int.from_bytes(frames[i:i + 2], "little", signed=True) / 32767 for i in range(0, len(frames), 2)]
    notes = []
    if len(values) != AUDIO_LENGTH:
        notes.append(f"cut or padded {len(values)} samples to {AUDIO_LENGTH}")
        values = (values + [0.0] * AUDIO_LENGTH)[:AUDIO_LENGTH]
    return torch.tensor(values, dtype=torch.float32), notes


# -- the modalities ---------------------------------------------------------------------
class ToyImageOptions(ModalityOptions):
    copies: int = Field(0, ge=0, le=3, description="augmented copies of each training image")


class _Toy(Modality):
    """What the toy modalities share: small budgets and small associators."""

    training_defaults = TOY_DEFAULTS

    def associator_config(self, source_dim: int, target_dim: int) -> AssociatorConfig:
        return AssociatorConfig(source_dim=source_dim, target_dim=target_dim, hidden=[32, 32])


class ToyImage(_Toy):
    """8x8 grayscale images of three digit concepts; a conv VAE with a Bernoulli likelihood."""

    name = "toyimg"
    description = "toy 8x8 images"
    dataset = DatasetInfo(name="Toy bars", licence="CC0 1.0", url="https://example.org/toy-bars")
    classes = DIGITS
    input_shape = (1, IMAGE_SIDE, IMAGE_SIDE)
    default_latent_dim = 6
    reconstruction_loss = "bce"
    input_suffixes = (".png", ".pgm")
    output_suffix = ".png"
    options_model = ToyImageOptions

    def vae_config(self, latent_dim: int) -> VAEConfig:
        return VAEConfig(input_shape=self.input_shape, latent_dim=latent_dim, architecture="conv",
                         channels=[8], hidden=[32])

    def recognizer_config(self) -> RecognizerConfig:
        return RecognizerConfig(input_shape=self.input_shape, num_classes=3, architecture="conv", channels=[4],
                                hidden=16, dropout=0.0)

    def load_features(self, root: Path, split: Literal["train", "test"], download: bool = False) -> FeatureSet:
        folder = Path(root) / "toyimg" / split
        if not folder.is_dir():
            if not download:
                raise _missing("toyimg", folder)
            write_dataset(root)
        xs, ys = [], []
        for label, info in enumerate(self.classes):
            for path in sorted((folder / info.name).glob("*.png")):
                xs.append(read_png(path)[0])
                ys.append(label)
        if not xs:
            raise _missing("toyimg", folder)
        x, y = torch.stack(xs), torch.tensor(ys)
        n = len(x)
        origin, augmented = torch.arange(n), torch.zeros(n, dtype=torch.bool)
        if split == "train" and self.options.copies:
            gen = torch.Generator().manual_seed(0)
            copies = [(x + 0.05 * torch.randn(x.shape, generator=gen)).clamp(0, 1)
                      for _ in range(self.options.copies)]
            x = torch.cat([x, *copies])
            y = y.repeat(self.options.copies + 1)
            origin = origin.repeat(self.options.copies + 1)
            augmented = torch.cat([augmented, torch.ones(n * self.options.copies, dtype=torch.bool)])
        return FeatureSet(x=x, y=y, origin=origin, augmented=augmented)

    def read_file(self, path: Path) -> tuple[torch.Tensor, list[str]]:
        return read_png(path)

    def write_file(self, x: torch.Tensor, path: Path, *, scale: int = 1) -> list[Path]:
        write_png(x.reshape(IMAGE_SIDE, IMAGE_SIDE).tolist(), Path(path), scale)
        return [Path(path)]


class ToyAudio(_Toy):
    """32-sample tones at 8 kHz, standardised per sample position; an MLP VAE with squared error."""

    name = "toyaudio"
    description = "toy tones"
    classes = DIGITS
    input_shape = (AUDIO_LENGTH,)
    default_latent_dim = 4
    reconstruction_loss = "mse"
    input_suffixes = (".wav",)
    output_suffix = ".wav"

    def vae_config(self, latent_dim: int) -> VAEConfig:
        return VAEConfig(input_shape=self.input_shape, latent_dim=latent_dim, architecture="mlp", hidden=[32],
                         output="linear")

    def recognizer_config(self) -> RecognizerConfig:
        return RecognizerConfig(input_shape=self.input_shape, num_classes=3, architecture="mlp", hidden=16,
                                dropout=0.0)

    def load_features(self, root: Path, split: Literal["train", "test"], download: bool = False) -> FeatureSet:
        folder = Path(root) / "toyaudio" / split
        files = sorted(folder.glob("*.wav")) if folder.is_dir() else []
        if not files:
            if not download:
                raise _missing("toyaudio", folder)
            write_dataset(root)
            files = sorted(folder.glob("*.wav"))
        xs, ys, speakers = [], [], []
        for path in files:
            digit, speaker, _ = path.stem.split("_")
            xs.append(read_wav(path)[0])
            ys.append(int(digit))
            speakers.append(speaker)
        return FeatureSet(x=torch.stack(xs), y=torch.tensor(ys), groups={"speaker": speakers})

    def example_files(self, root: Path, split: Literal["train", "test"]) -> list[tuple[int, Path]]:
        folder = Path(root) / "toyaudio" / split
        files = sorted(folder.glob("*.wav")) if folder.is_dir() else []
        if not files:
            raise _missing("toyaudio", folder)
        return [(int(path.stem.split("_")[0]), path) for path in files]

    def fit_normalization(self, x: torch.Tensor) -> dict[str, list[float]]:
        return {"mean": x.mean(0).tolist(), "std": x.std(0).clamp_min(1e-3).tolist()}

    def normalize(self, x: torch.Tensor, stats: dict[str, list[float]]) -> torch.Tensor:
        return (x - torch.tensor(stats["mean"], device=x.device)) / torch.tensor(stats["std"], device=x.device)

    def denormalize(self, x: torch.Tensor, stats: dict[str, list[float]]) -> torch.Tensor:
        return x * torch.tensor(stats["std"], device=x.device) + torch.tensor(stats["mean"], device=x.device)

    def read_file(self, path: Path) -> tuple[torch.Tensor, list[str]]:
        return read_wav(path)

    def write_file(self, x: torch.Tensor, path: Path, *, scale: int = 1) -> list[Path]:
        write_wav(x.flatten().tolist(), Path(path))
        return [Path(path)]


class ToyColor(_Toy):
    """Six-value colour vectors in [0, 1], read from CSV; its concepts match no other modality."""

    name = "toycolor"
    description = "toy colours"
    classes = COLORS
    input_shape = (COLOR_DIM,)
    default_latent_dim = 4
    reconstruction_loss = "bce"
    input_suffixes = (".csv",)
    output_suffix = ".csv"
    training_defaults = TOY_DEFAULTS.model_copy(update={"epochs": 10, "recognizer_epochs": 10})

    def vae_config(self, latent_dim: int) -> VAEConfig:
        return VAEConfig(input_shape=self.input_shape, latent_dim=latent_dim, architecture="mlp", hidden=[16])

    def recognizer_config(self) -> RecognizerConfig:
        return RecognizerConfig(input_shape=self.input_shape, num_classes=3, architecture="mlp", hidden=32,
                                dropout=0.0)

    def load_features(self, root: Path, split: Literal["train", "test"], download: bool = False) -> FeatureSet:
        path = Path(root) / "toycolor" / f"{split}.csv"
        if not path.is_file():
            if not download:
                raise _missing("toycolor", path)
            write_dataset(root)
        names = self.class_names
        with open(path, newline="") as fh:
            rows = list(csv.reader(fh))
        x = torch.tensor([[float(v) for v in row[1:]] for row in rows], dtype=torch.float32)
        return FeatureSet(x=x, y=torch.tensor([names.index(row[0]) for row in rows]))

    def read_file(self, path: Path) -> tuple[torch.Tensor, list[str]]:
        try:
            values = [float(v) for v in Path(path).read_text().strip().split(",")]
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise InputFileError(f"{path}: not a line of {COLOR_DIM} comma-separated numbers ({exc})") from None
        if len(values) != COLOR_DIM:
            raise InputFileError(f"{path}: expected {COLOR_DIM} values, found {len(values)}")
        return torch.tensor(values), []

    def write_file(self, x: torch.Tensor, path: Path, *, scale: int = 1) -> list[Path]:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomically(path, (",".join(f"{v:.4f}" for v in x.flatten().tolist()) + "\n").encode())
        return [Path(path)]


@hookimpl
def register_modalities(register):
    register(ToyImage())
    register(ToyAudio())
    register(ToyColor())
