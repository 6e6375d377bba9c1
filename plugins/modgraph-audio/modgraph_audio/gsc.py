"""The ``gsc`` modality: Google Speech Commands, the paper's 14 words, as 40x101 MFCCs.

Reads torchaudio's ``SPEECHCOMMANDS`` layout, ``<root>/SpeechCommands/speech_commands_v0.0N/
{word}/{speaker}_nohash_{n}.wav`` with ``testing_list.txt``; v0.02 by default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from modgraph import ClassInfo, DatasetInfo, ConfigError, DataNotFoundError, FAITHFUL_CONFIDENCE, TrainingDefaults
from modgraph_audio.speech import SpeechModality, SpeechOptions
from modgraph_audio.speech_profiles import GSC_PROFILE

# The paper's 14 words, in its order; each word is its own concept.
WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
         "go", "stop", "left", "right"]


class GSCOptions(SpeechOptions):
    """Options of the ``gsc`` modality (``--option version=v0.01``)."""

    version: Literal["v0.01", "v0.02"] = Field("v0.02", description="Speech Commands release")
    augment_copies: int = Field(1, ge=0, le=50, description="augmented copies of each training clip")


class GSC(SpeechModality):
    """Google Speech Commands (Warden 2018): 1-second spoken words, 16 kHz."""

    name = "gsc"
    description = "Google Speech Commands, 14 words (zero..nine, go, stop, left, right), 40x101 MFCCs"
    dataset = DatasetInfo(name="Speech Commands", licence="CC BY 4.0",
                          url="https://www.tensorflow.org/datasets/catalog/speech_commands",
                          citation="P. Warden, Speech Commands: A Dataset for Limited-Vocabulary Speech Recognition "
                                   "(arXiv:1804.03209), 2018")
    classes = [ClassInfo(name=w, concept=w) for w in WORDS]
    # The full v0.02 set has ~54,000 clips of these words: a few epochs go a long way.
    training_defaults = TrainingDefaults(epochs=8, batch_size=128, lr=1e-3, kl_weight=1.0,
                                         recognizer_epochs=4, link_epochs=5,
                                         link_pairs_per_epoch=20000, link_candidates=8,
                                         link_target_confidence=FAITHFUL_CONFIDENCE)
    options_model = GSCOptions
    speech_profile = GSC_PROFILE
    feature_version = "1"
    options: GSCOptions

    def folder(self, root: Path) -> Path:
        return Path(root) / "SpeechCommands" / f"speech_commands_{self.options.version}"

    def recordings(self, root: Path, split: Literal["train", "test"],
                   download: bool = False) -> tuple[list[Path], list[int], list[str]]:
        if split not in ("train", "test"):
            raise ConfigError(f"unknown split {split!r} for {self.name!r}; use 'train' or 'test'")
        folder = self.folder(root)
        if not any((folder / w).is_dir() for w in WORDS):
            if not download:
                raise DataNotFoundError(
                    f"Speech Commands {self.options.version} not found in {folder} (expected {{word}}/*.wav "
                    f"folders); pass --download to fetch it (2.3 GB for v0.02)")
            download_speech_commands(Path(root), self.options.version)
        test_files = _read_list(folder / "testing_list.txt")
        paths, labels, speakers = [], [], []
        for label, word in enumerate(WORDS):
            for path in sorted((folder / word).glob("*.wav")) if (folder / word).is_dir() else []:
                in_test = f"{word}/{path.name}" in test_files
                if in_test == (split == "test"):
                    paths.append(path)
                    labels.append(label)
                    speakers.append(path.name.split("_nohash_")[0])
        if not paths:
            raise DataNotFoundError(f"no {split} clips of the words {', '.join(WORDS)} in {folder}; "
                                    f"pass --download to fetch the full dataset")
        # The official validation list stays in training: the core holds out its own validation rows.
        return paths, labels, speakers


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
