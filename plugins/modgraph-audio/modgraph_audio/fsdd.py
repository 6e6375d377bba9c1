"""The ``fsdd`` modality: the Free Spoken Digit Dataset (spoken digits 0-9, 8 kHz) as 40x101 MFCCs
(and, by default, a pretrained speech embedding below them: ``speech_embedding.py``).

Loads the official split (take index 0-4 test, 5-49 train), adds seeded waveform-level
augmented copies to the training split, and reads and writes user audio files.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path, PurePosixPath
from typing import Literal


from modgraph import Field, ClassInfo, DatasetInfo, ConfigError, DataNotFoundError, FAITHFUL_CONFIDENCE, TrainingDefaults
from modgraph_audio import speech_embedding as E
from modgraph_audio.speech import SpeechModality, SpeechOptions
from modgraph_audio.speech_profiles import FSDD_PROFILE

RELEASE_URL = "https://github.com/Jakobovski/free-spoken-digit-dataset/archive/refs/tags/v1.0.10.tar.gz"
# What the release's recordings/ holds, checked after a download: 3,000 wavs whose `sha256sum` listing
# (sorted by name, "HASH  NAME" lines) has this sha256. GitHub rebuilds its archives, so the archive's own
# bytes are not pinned; the files in it are.
RELEASE_RECORDINGS = 3000
RELEASE_DIGEST = "1801eae019c063377d98f831d3f93574f259475df7332bb0e3d1b080fb5e6959"
CONCEPTS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
TEST_TAKES = 5  # the dataset's README: takes 0-4 of every speaker and digit are the test set
_FILE_NAME = re.compile(r"^(?P<digit>[0-9])_(?P<speaker>.+)_(?P<index>[0-9]+)\.wav$")


class FSDDOptions(SpeechOptions.with_defaults(band_rate=8000, trim_db=30.0, vtlp=0.2, speech_embedding=True)):
    """Options of the ``fsdd`` modality (``--option augment_copies=N``).

    FSDD's recordings start and stop at different times around the word (up to a few
    hundred ms of room noise), so the word is cut out at 30 dB below its peak and centred.
    Five speakers are few, so each augmented copy also gets another vocal tract length (VTLP,
    frequency axis warped by 0.8-1.2). Inputs are brought down to FSDD's 8 kHz band first
    (``band_rate``): a 16 kHz microphone's upper bands, which FSDD's files never hold, then do
    not reach the features. Below the MFCCs, a pretrained speech embedding
    (``speech_embedding``; Google's, trained on many speakers, shipped with this plugin and run
    offline) tells the encoder what was said much more than who said it. ``docs/tuning.md``
    says what each of these measured.
    """

    speech_commands: int | None = Field(
        0, ge=0, le=100_000,
        description="up to this many Speech Commands clips of each digit word join the training split, as more "
                    "voices (from speakers in neither its testing nor its validation list; the release under the "
                    "data root); 0: FSDD's five speakers alone; unset (the ``spoken`` modality's default): 100 "
                    "when the release under the data root holds digit words, else 0")


class FSDD(SpeechModality):
    """Free Spoken Digit Dataset: ten digits spoken by five speakers, as 1-second MFCCs."""

    name = "fsdd"
    description = ("spoken digits 0-9 (Free Spoken Digit Dataset) as 40x101 MFCCs of 1 s at 16 kHz, plus a "
                   "pretrained speech embedding (Google's, option speech_embedding)")
    dataset = DatasetInfo(name="Free Spoken Digit Dataset", licence=f"CC BY-SA 4.0; {E.LICENCE}",
                          url="https://github.com/Jakobovski/free-spoken-digit-dataset",
                          citation="Z. Jackson et al., Free Spoken Digit Dataset (FSDD)")
    classes = [ClassInfo(name=str(digit), concept=concept) for digit, concept in enumerate(CONCEPTS)]
    # An epoch is ~10,000 rows (2,250 clips and 4 copies each, less validation): about 160
    # steps of 64 at ~0.15 s a VAE step (measured on one busy core), so 8 epochs make about
    # three minutes; 4 recognizer epochs are about 640 steps.
    # kl_weight 0.1: sharper reconstructions. vae_target "original": an augmented copy
    # reconstructs the clip it was made from, so the encoder gives a faster, noisier or shifted
    # word its original's latent. link_spread_balance "speaker": every FSDD speaker says every
    # digit equally often, so with few clips paired the spread classes are balanced within each
    # speaker. docs/tuning.md says what each measured.
    training_defaults = TrainingDefaults(epochs=8, batch_size=64, lr=1e-3, kl_weight=0.1, vae_target="original",
                                         recognizer_epochs=4, link_epochs=10,
                                         link_pairs_per_epoch=20000, link_candidates=8,
                                         link_target_confidence=FAITHFUL_CONFIDENCE,
                                         link_spread_balance="speaker")
    options_model = FSDDOptions
    speech_profile = FSDD_PROFILE
    feature_version = "1"

    # -- data ---------------------------------------------------------------------------
    def recordings(self, root: Path, split: Literal["train", "test"],
                   download: bool = False) -> tuple[list[Path], list[int], list[str]]:
        if split not in ("train", "test"):
            raise ConfigError(f"unknown split {split!r} for {self.name!r}; use 'train' or 'test'")
        folder = Path(root) / "fsdd" / "recordings"
        recordings = _list_recordings(folder)
        if not recordings:
            if not download:
                raise DataNotFoundError(
                    f"FSDD recordings not found in {folder} (expected files named "
                    f"{{digit}}_{{speaker}}_{{index}}.wav); pass --download to fetch them")
            download_fsdd(Path(root))
            recordings = _list_recordings(folder)
        chosen = [r for r in recordings if (r[3] < TEST_TAKES) == (split == "test")]
        if not chosen:
            raise DataNotFoundError(f"no {split} recordings (take index {'0-4' if split == 'test' else '5 or more'}) "
                                    f"in {folder}; pass --download to fetch the full dataset")
        paths, labels, speakers = [r[0] for r in chosen], [r[1] for r in chosen], [r[2] for r in chosen]
        if split == "train" and self.options.speech_commands:
            more = speech_commands_digits(Path(root), self.options.speech_commands, download)
            paths, labels, speakers = paths + more[0], labels + more[1], speakers + more[2]
        return paths, labels, speakers


def speech_commands_digits(root: Path, per_digit: int,
                           download: bool = False) -> tuple[list[Path], list[int], list[str]]:
    """Up to ``per_digit`` Speech Commands clips of each digit word, none by a speaker of its held-out lists."""
    from modgraph_audio.gsc import GSC, download_speech_commands, held_out_clips

    folder = GSC().folder(root)  # the release under the root (v0.02 when both are)
    if download and not any((folder / word).is_dir() for word in CONCEPTS):
        download_speech_commands(root, folder.name.removeprefix("speech_commands_"))
    held_out = held_out_clips(folder)
    paths, labels, speakers = [], [], []
    for digit, word in enumerate(CONCEPTS):
        clips = [p for p in sorted((folder / word).glob("*.wav")) if f"{word}/{p.name}" not in held_out]
        for path in clips[:per_digit]:
            paths.append(path)
            labels.append(digit)
            speakers.append("gsc-" + path.name.split("_nohash_")[0])
    if not paths:
        raise DataNotFoundError(f"no Speech Commands digit clips in {folder} to add as voices; "
                                f"set --option speech_commands=0 or put the dataset there")
    return paths, labels, speakers


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


def recordings_digest(folder: Path) -> tuple[int, str]:
    """How many wavs ``folder`` holds and the sha256 of their ``sha256sum`` listing (sorted by name)."""
    lines = []
    for path in sorted(folder.glob("*.wav"), key=lambda p: p.name):
        lines.append(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.name}\n")
    return len(lines), hashlib.sha256("".join(lines).encode()).hexdigest()


def download_fsdd(root: Path, url: str = RELEASE_URL) -> Path:
    """Fetch the FSDD release archive and extract its ``recordings/`` into ``<root>/fsdd/recordings``, once
    they are checked against the release's (:data:`RELEASE_DIGEST`); else nothing is kept."""
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
        count, digest = recordings_digest(staging)
        if (count, digest) != (RELEASE_RECORDINGS, RELEASE_DIGEST):
            raise DataNotFoundError(
                f"the recordings downloaded from {url} are not FSDD v1.0.10's ({count} wavs, digest {digest[:12]}…; "
                f"expected {RELEASE_RECORDINGS}, {RELEASE_DIGEST[:12]}…): the download was damaged or the release "
                f"changed. Nothing was kept; try again, or put the recordings at {target} by hand")
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    return target
