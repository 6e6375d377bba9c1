"""The ``gsc`` modality: Google Speech Commands as 40x101 MFCCs, the paper's 14 words or those the data holds.

Reads torchaudio's ``SPEECHCOMMANDS`` layout, ``<root>/SpeechCommands/speech_commands_v0.0N/
{word}/{speaker}_nohash_{n}.wav`` with ``testing_list.txt``. Which release and which words a
node learns are settled from the data when it is trained (:meth:`GSC.for_data`) and stored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import field_validator

from modgraph import (Field, ClassInfo, DatasetInfo, ConfigError, DataNotFoundError, RecognizerConfig, TrainingDefaults,
                      comma_separated)
from modgraph_audio.speech import SpeechModality, SpeechOptions
from modgraph_audio.speech_profiles import GSC_PROFILE

# The paper's 14 words, in its order; each word is its own concept. A word's position here
# is its class number, so index pairing matches "five" with class 5 of F-MNIST whichever
# words a node learnt. GTSRB's concepts pair go, stop, left and right with the paper's signs:
# Ahead only, No entry, Turn left ahead, Turn right ahead (modgraph_vision.gtsrb); Keep left
# and Keep right mean something else and keep concepts of their own.
WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
         "go", "stop", "left", "right"]
# Every other word of the releases (v0.01 has the first 16, v0.02 adds the last 5), numbered after the 14.
OTHER_WORDS = ["bed", "bird", "cat", "dog", "down", "happy", "house", "marvin", "no", "off", "on", "sheila",
               "tree", "up", "wow", "yes", "backward", "follow", "forward", "learn", "visual"]
ALL_WORDS = WORDS + OTHER_WORDS
VERSIONS = ("v0.02", "v0.01")  # looked for in this order when the release is not chosen
DOWNLOAD_SIZE = {"v0.01": "1.4 GB", "v0.02": "2.3 GB"}
# A word with fewer training clips than this is left out unless asked for: on the local folder
# the seven words with ~500 clips are learnt, the seven with 8 or 9 are not.
MIN_CLIPS = 100
# Links into gsc aim at training clips whose reconstruction the recognizer reads this surely
# (modgraph.learning.targets; FAITHFUL_CONFIDENCE, 0.93, is the other modalities' choice).
GSC_TARGET_CONFIDENCE = 0.98


class GSCOptions(SpeechOptions.with_defaults(augment_copies=1)):
    """Options of the ``gsc`` modality (``--option version=v0.01``, ``--option words=go,left,right``)."""

    version: Literal["v0.01", "v0.02"] | None = Field(
        None, description="Speech Commands release; unset: the one under the data root (v0.02 when both are, "
                          "and v0.02 is what --download fetches)")
    words: list[str] | None = Field(
        None, description="the words to learn, in this order; unset: those of the paper's 14 with at least "
                          "min_clips training clips in the data")
    min_clips: int = Field(MIN_CLIPS, ge=1, description="training clips a word needs to be learnt when words is unset")
    _words = comma_separated("words", item=str.lower)

    @field_validator("words")
    @classmethod
    def _known_unique_words(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return value
        unknown = [w for w in value if w not in ALL_WORDS]
        if unknown:
            raise ValueError(f"unknown word(s) {unknown}: Speech Commands has {', '.join(ALL_WORDS)}")
        repeated = sorted({w for w in value if value.count(w) > 1})
        if repeated:
            raise ValueError(f"word(s) {repeated} appear more than once; list each word once")
        if len(value) < 2:
            raise ValueError(f"choose at least 2 words to tell apart, got {value}")
        return value


class GSC(SpeechModality):
    """Google Speech Commands (Warden 2018): 1-second spoken words, 16 kHz; the classes are the ``words`` option."""

    name = "gsc"
    description = ("Google Speech Commands as 40x101 MFCCs: the paper's 14 words (zero..nine, go, stop, left, "
                   "right), or those with enough clips under the data root")
    dataset = DatasetInfo(name="Speech Commands", licence="CC BY 4.0",
                          url="https://www.tensorflow.org/datasets/catalog/speech_commands",
                          citation="P. Warden, Speech Commands: A Dataset for Limited-Vocabulary Speech Recognition "
                                   "(arXiv:1804.03209), 2018")
    # Tuned on the few thousand training clips of the words here (docs/tuning.md): long VAE and
    # recognizer training, and links that aim only at targets read with 0.98 confidence, since
    # "right" and "five" share a vowel. A full release should need fewer epochs.
    training_defaults = TrainingDefaults(epochs=40, batch_size=128, lr=1e-3, kl_weight=1.0,
                                         recognizer_epochs=15, link_epochs=20,
                                         link_pairs_per_epoch=20000, link_candidates=8,
                                         link_target_confidence=GSC_TARGET_CONFIDENCE)
    options_model = GSCOptions
    speech_profile = GSC_PROFILE
    feature_version = "1"
    options: GSCOptions

    def __init__(self, options: GSCOptions | None = None):
        super().__init__(options)
        self.classes = [ClassInfo(name=w, concept=w, number=ALL_WORDS.index(w)) for w in self.words]

    def recognizer_config(self) -> RecognizerConfig:
        # A third conv stage reads held-out speakers better with half the parameters (the flattened
        # features shrink 4x; docs/tuning.md). fsdd keeps [16, 32], its figures' judge.
        return RecognizerConfig(input_shape=self.input_shape, num_classes=len(self.classes),
                                architecture="conv", channels=[16, 32, 64], hidden=128, dropout=0.3)

    @property
    def words(self) -> list[str]:
        """The words this modality learns, in label order (the paper's 14 until the data settles them)."""
        return list(self.options.words) if self.options.words is not None else list(WORDS)

    def folder(self, root: Path, version: str | None = None) -> Path:
        version = version or self.options.version or self._present_version(root) or VERSIONS[0]
        return Path(root) / "SpeechCommands" / f"speech_commands_{version}"

    def _present_version(self, root: Path) -> str | None:
        for version in VERSIONS:
            if _has_words(Path(root) / "SpeechCommands" / f"speech_commands_{version}", ALL_WORDS):
                return version
        return None

    # -- settling the options from the data --------------------------------------------------
    def for_data(self, root: Path, download: bool = False) -> tuple["GSC", list[str]]:
        """The release found under ``root`` (or fetched) and, unless chosen, the words with ``min_clips`` clips."""
        notes: list[str] = []
        version = self.options.version or self._present_version(root)
        if version is None:
            self._ensure_data(root, download)  # raises, or downloads the default release
            version = self._present_version(root) or VERSIONS[0]
        if self.options.version is None:
            notes.append(f"gsc: Speech Commands {version} (found in {self.folder(root, version)})")
        counts = self.training_counts(root, version, download)
        words = self.options.words
        if words is None:
            words = [w for w in WORDS if counts.get(w, 0) >= self.options.min_clips]
            left_out = [f"{w} ({counts.get(w, 0)})" for w in WORDS if w not in words]
            if len(words) < 2:
                raise DataNotFoundError(
                    f"only {len(words)} of the paper's 14 words have at least {self.options.min_clips} training "
                    f"clips in {self.folder(root, version)} (clips per word: "
                    f"{', '.join(f'{w} {counts.get(w, 0)}' for w in WORDS)}); lower --option min_clips=N, "
                    f"choose --option words=..., or pass --download to fetch the full dataset")
            if left_out:
                notes.append(f"gsc: learning {len(words)} words with at least {self.options.min_clips} training "
                             f"clips: {', '.join(f'{w} ({counts[w]})' for w in words)}; left out, too few clips: "
                             f"{', '.join(left_out)} (choose with --option words=... or --option min_clips=N)")
        else:
            empty = [w for w in words if not counts.get(w)]
            if empty:
                raise DataNotFoundError(
                    f"no training clips of {', '.join(empty)} in {self.folder(root, version)}; choose other "
                    f"--option words=..., or pass --download to fetch the full dataset")
        return self.with_options({**self.options.model_dump(), "version": version, "words": words}), notes

    def training_counts(self, root: Path, version: str, download: bool = False) -> dict[str, int]:
        """Training clips (those not in ``testing_list.txt``) of every word present in the release."""
        folder = self.folder(root, version)
        if not _has_words(folder, ALL_WORDS):
            self._ensure_data(root, download, version)
        test_files = _read_list(folder / "testing_list.txt")
        return {w: sum(1 for p in (folder / w).glob("*.wav") if f"{w}/{p.name}" not in test_files)
                for w in ALL_WORDS if (folder / w).is_dir()}

    def _ensure_data(self, root: Path, download: bool, version: str | None = None) -> None:
        """Download ``version`` (default: the option, else v0.02), or say where the data was looked for."""
        version = version or self.options.version
        if download:
            download_speech_commands(Path(root), version or VERSIONS[0])
            return
        base = Path(root) / "SpeechCommands"
        if version is None:
            raise DataNotFoundError(
                f"Speech Commands not found in {base} (looked for speech_commands_v0.02 and speech_commands_v0.01 "
                f"with {{word}}/*.wav folders); pass --download to fetch v0.02 ({DOWNLOAD_SIZE['v0.02']}), or "
                f"--option version=v0.01 --download for v0.01 ({DOWNLOAD_SIZE['v0.01']})")
        other = [v for v in VERSIONS if v != version and _has_words(base / f"speech_commands_{v}", ALL_WORDS)]
        hint = f"; {other[0]} is there: pass --option version={other[0]} to use it" if other else ""
        raise DataNotFoundError(
            f"Speech Commands {version} not found in {base / f'speech_commands_{version}'} (expected {{word}}/*.wav "
            f"folders){hint}; or pass --download to fetch {version} ({DOWNLOAD_SIZE[version]})")

    # -- data ------------------------------------------------------------------------------
    def recordings(self, root: Path, split: Literal["train", "test"],
                   download: bool = False) -> tuple[list[Path], list[int], list[str]]:
        if split not in ("train", "test"):
            raise ConfigError(f"unknown split {split!r} for {self.name!r}; use 'train' or 'test'")
        folder = self.folder(root)
        if not _has_words(folder, self.words):
            self._ensure_data(root, download, self.options.version)
            folder = self.folder(root)
        test_files = _read_list(folder / "testing_list.txt")
        paths, labels, speakers = [], [], []
        for label, word in enumerate(self.words):
            for path in sorted((folder / word).glob("*.wav")) if (folder / word).is_dir() else []:
                in_test = f"{word}/{path.name}" in test_files
                if in_test == (split == "test"):
                    paths.append(path)
                    labels.append(label)
                    speakers.append(path.name.split("_nohash_")[0])
        if not paths:
            raise DataNotFoundError(f"no {split} clips of the words {', '.join(self.words)} in {folder}; "
                                    f"pass --download to fetch the full dataset")
        # The official validation list stays in training: the core holds out its own validation rows.
        return paths, labels, speakers


def _has_words(folder: Path, words: list[str]) -> bool:
    return any((folder / w).is_dir() for w in words)


def held_out_clips(folder: Path) -> set[str]:
    """``word/file.wav`` of every clip in the release's testing and validation lists (speakers no split trains on)."""
    return _read_list(folder / "testing_list.txt") | _read_list(folder / "validation_list.txt")


def _read_list(path: Path) -> set[str]:
    if not path.exists():
        return set()
    return {line.strip() for line in path.read_text().splitlines() if line.strip()}


def download_speech_commands(root: Path, version: str) -> None:
    """Fetch the release with torchaudio's own downloader (it verifies and extracts the archive)."""
    try:
        from torchaudio.datasets import SPEECHCOMMANDS

        SPEECHCOMMANDS(str(root), url=f"speech_commands_{version}", download=True)
    except Exception as exc:  # torchaudio raises URLError, OSError or RuntimeError here
        raise DataNotFoundError(f"could not download Speech Commands {version} into {root} ({exc}); "
                                f"fetch it by hand into {Path(root) / 'SpeechCommands'}") from None
