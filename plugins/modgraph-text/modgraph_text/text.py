"""The ``text`` modality: a word or short phrase, as one-hot characters, in twenty concepts.

Data is generated (see :mod:`modgraph_text.spellings`), so there is nothing to download;
files are UTF-8 ``.txt`` files whose first non-empty line is the text.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar, Literal

import torch
from pydantic import Field, field_validator

from modgraph import (ClassInfo, ConfigError, FAITHFUL_CONFIDENCE, FeatureSet, InputFileError, Modality,
                      ModalityOptions, RecognizerConfig, TrainingDefaults, VAEConfig)
from modgraph_text.encoding import (ALPHABET_DESCRIPTION, ALPHABET_SIZE, MAX_LENGTH, decode, encode, fold,
                                    random_edits, unsupported_characters)
from modgraph_text.spellings import CLEAN_VARIANTS, CONCEPTS, generate_spellings

MAX_FILE_BYTES = 64 * 1024  # a text input is a word or a phrase; a bigger file is the wrong file


class TextOptions(ModalityOptions):
    """How the data is generated and augmented (``--option key=value``)."""

    train_per_class: int = Field(1000, ge=10, le=100_000, description="training rows per concept")
    test_per_class: int = Field(100, ge=10, le=100_000, description="test rows per concept")
    typo_rate: float = Field(0.2, ge=0.0, le=0.9, description="share of rows that are one-edit typos")
    seed: int = Field(0, ge=0, description="generates a different (but fixed) draw of rows")
    variants: list[Literal["word", "digit", "phrase"]] = Field(
        default_factory=lambda: list(CLEAN_VARIANTS),
        description="which clean spellings to generate (typos are made from these); 'word' is required")
    edit_rate: float = Field(0.3, ge=0.0, le=1.0,
                             description="share of training rows given a random one-letter edit on the fly")


    @field_validator("variants", mode="before")
    @classmethod
    def _comma_separated(cls, value):
        return [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value

    @field_validator("variants")
    @classmethod
    def _word_is_required(cls, value: list[str]) -> list[str]:
        if "word" not in value:
            raise ValueError(f"must include 'word' (every concept has one; digits and phrases are extra), got {value}")
        return sorted(set(value), key=CLEAN_VARIANTS.index)


class Text(Modality):
    """Words and short phrases: digits zero..nine, go/stop/left/right and eight traffic-sign phrases."""

    name = "text"
    description = f"a word or short phrase, up to {MAX_LENGTH} characters, one-hot per character"
    classes = [ClassInfo(name=concept, concept=concept) for concept in CONCEPTS]
    input_shape = (MAX_LENGTH, ALPHABET_SIZE)
    default_latent_dim = 32
    reconstruction_loss = "bce"
    input_suffixes = (".txt",)
    output_suffix = ".txt"
    # link_source_noise 0: associators from text train on the encoder's mean. The posteriors are
    # wide (sigma about 0.86 against a spread of the means of about 0.46), so samples of
    # "turn left" land on "keep left": text -> gtsrb 90.1% sampled, 99.9% from the mean.
    training_defaults = TrainingDefaults(epochs=30, batch_size=128, lr=2e-3, kl_weight=0.5, recognizer_epochs=10,
                                         link_epochs=10, link_pairs_per_epoch=20000, link_candidates=8,
                                         link_target_confidence=FAITHFUL_CONFIDENCE, link_source_noise=0.0)
    options_model: ClassVar[type[ModalityOptions]] = TextOptions
    needs_data: ClassVar[bool] = False  # generated from a seed: there is no folder to miss
    # An associator into text aims at the plain word: "7", "seven" and "the number seven"
    # blended decode to no word at all.
    target_exclude: ClassVar[dict[str, list[str]]] = {"variant": ["digit", "phrase", "typo"]}

    # -- architectures -------------------------------------------------------------------
    def vae_config(self, latent_dim: int) -> VAEConfig:
        return VAEConfig(input_shape=self.input_shape, latent_dim=latent_dim, architecture="mlp",
                         hidden=[512, 256], output="sigmoid")

    def recognizer_config(self) -> RecognizerConfig:
        return RecognizerConfig(input_shape=self.input_shape, num_classes=len(self.classes), architecture="mlp",
                                hidden=256, dropout=0.2)

    # -- data ----------------------------------------------------------------------------
    def load_features(self, root: Path, split: Literal["train", "test"], download: bool = False) -> FeatureSet:
        """Generated rows (``root`` and ``download`` are unused); ``groups["variant"]`` tells word/digit/phrase/typo."""
        if split not in ("train", "test"):
            raise ConfigError(f"split must be 'train' or 'test', got {split!r}")
        per_class = self.options.train_per_class if split == "train" else self.options.test_per_class
        rows = generate_spellings(split, per_class, self.options.typo_rate, self.options.seed,
                                  tuple(self.options.variants))
        x = torch.stack([encode(fold(row.text)[0]) for row in rows])
        y = torch.tensor([row.label for row in rows], dtype=torch.int64)
        return FeatureSet(x=x, y=y, groups={"variant": [row.variant for row in rows]})

    def augment_batch(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """A random one-letter edit (substitution, deletion or swap) in ``edit_rate`` of the rows.

        The VAE learns to reconstruct the unedited row from the edited one, and the
        recognizer to classify it, so typos never generated still land near their concept.
        Rows shorter than four characters and the first character are left alone.
        """
        return random_edits(x, self.options.edit_rate, generator)

    # -- files ---------------------------------------------------------------------------
    def read_file(self, path: Path) -> tuple[torch.Tensor, list[str]]:
        """The first non-empty line of a UTF-8 text file, folded and encoded, with notes."""
        path = Path(path)
        if not path.is_file():
            problem = "not a file" if path.exists() else "no such file"
            raise InputFileError(f"{path}: {problem} (expected a .txt file holding a word or short phrase)")
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise InputFileError(f"{path}: {size} bytes is too long for a word or short phrase "
                                 f"(at most {MAX_FILE_BYTES}); give a file whose first line is the text")
        data = path.read_bytes()
        try:
            content = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise InputFileError(f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
        if "\x00" in content or any(ord(c) < 32 and c not in "\t\n\r\f\v" for c in content):
            raise InputFileError(f"{path}: holds control characters, so it looks binary; expected a .txt file")
        lines = [line for line in content.splitlines() if line.strip()]
        if not lines:
            raise InputFileError(f"{path}: holds no text (empty or blank lines only)")
        notes = [f"used the first of {len(lines)} non-empty lines"] if len(lines) > 1 else []
        text, fold_notes = fold(lines[0])
        notes += fold_notes
        bad = unsupported_characters(text)
        if bad:
            raise InputFileError(f"{path}: unsupported characters {', '.join(map(repr, bad))}; "
                                 f"text may use {ALPHABET_DESCRIPTION}")
        if len(text) > MAX_LENGTH:
            text = text[:MAX_LENGTH].rstrip()
            notes.append(f"truncated to {MAX_LENGTH} characters: {text!r}")
        return encode(text), notes

    def read_text(self, text: str) -> torch.Tensor:
        """A literal string (``modgraph translate --text``); over-long text is an error, never cut."""
        folded, _ = fold(text)
        if not folded:
            raise InputFileError(f"text {text!r} is empty; give a word or short phrase")
        bad = unsupported_characters(folded)
        if bad:
            raise InputFileError(f"text {text!r} has unsupported characters {', '.join(map(repr, bad))}; "
                                 f"text may use {ALPHABET_DESCRIPTION}")
        if len(folded) > MAX_LENGTH:
            raise InputFileError(f"text {text!r} has {len(folded)} characters; the text modality takes at most "
                                 f"{MAX_LENGTH}")
        return encode(folded)

    def write_file(self, x: torch.Tensor, path: Path) -> list[Path]:
        """The decoded string and a newline, UTF-8; the file appears complete or not at all."""
        if tuple(x.shape) != self.input_shape:
            raise ValueError(f"{self.name} writes tensors shaped {self.input_shape}, got {tuple(x.shape)}")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(decode(x) + "\n", encoding="utf-8")
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return [path]

    def decode(self, x: torch.Tensor) -> str:
        """The string a feature tensor or a decoder output spells (see :func:`modgraph_text.decode`)."""
        return decode(x)
