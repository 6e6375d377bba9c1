"""What a modality plugin provides: classes, shapes, architectures, data and file I/O.

Subclass :class:`Modality`, fill in the class attributes and the abstract methods, and
register an instance from the ``register_modalities`` hook.
"""

from __future__ import annotations

import abc
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

import torch
from pydantic import BaseModel, ConfigDict

from modgraph.errors import ConfigError, PluginError
from modgraph.models import AssociatorConfig, RecognizerConfig, VAEConfig

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


class ClassInfo(BaseModel):
    """One class of a modality: its label name and the concept it stands for.

    Concepts are what ``link --pairing concept`` matches across modalities (for example
    the MNIST class ``7`` and the FSDD class ``7`` share the concept ``seven``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    concept: str


class TrainingDefaults(BaseModel):
    """A modality's default budget for the intra-modal phase (CLI options override)."""

    model_config = ConfigDict(extra="forbid")
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    kl_weight: float = 1.0
    recognizer_epochs: int = 3
    link_epochs: int = 5
    # Pairs drawn per associator epoch into this modality (None: one pass over the paired
    # source rows). A fixed number keeps the training steps when few samples are paired.
    link_pairs_per_epoch: int | None = None


class ModalityOptions(BaseModel):
    """Options a modality accepts (``--option key=value``); subclass to add fields."""

    model_config = ConfigDict(extra="forbid")


@dataclass
class FeatureSet:
    """A split's features, computed once and cached.

    ``x`` holds raw features (before normalisation), ``y`` class indices, ``origin`` the
    index of the original sample each row comes from (augmented copies share their
    original's origin; rows with one origin are never split across train and
    validation), ``augmented`` whether a row is an augmented copy, and ``groups`` an
    optional named grouping per row (for example ``speaker``).
    """

    x: torch.Tensor
    y: torch.Tensor
    origin: torch.Tensor | None = None
    augmented: torch.Tensor | None = None
    groups: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self):
        n = len(self.x)
        if self.origin is None:
            self.origin = torch.arange(n)
        if self.augmented is None:
            self.augmented = torch.zeros(n, dtype=torch.bool)
        if not (len(self.y) == len(self.origin) == len(self.augmented) == n):
            raise ValueError("FeatureSet fields must all have one row per sample")
        for key, values in self.groups.items():
            if len(values) != n:
                raise ValueError(f"FeatureSet group {key!r} must have one entry per row")

    def __len__(self) -> int:
        return len(self.x)

    def subset(self, mask_or_index: torch.Tensor) -> "FeatureSet":
        index = mask_or_index.nonzero().flatten() if mask_or_index.dtype == torch.bool else mask_or_index
        idx = index.tolist()
        return FeatureSet(
            x=self.x[index], y=self.y[index], origin=self.origin[index], augmented=self.augmented[index],
            groups={k: [v[i] for i in idx] for k, v in self.groups.items()},
        )

    def originals(self) -> "FeatureSet":
        return self.subset(~self.augmented)


class Modality(abc.ABC):
    """Base class of every modality.

    Class attributes a subclass sets: ``name`` (lower-case, a graph node name),
    ``description``, ``classes`` (ordered: position = label index), ``input_shape``
    (the model input, without batch), ``default_latent_dim``, ``reconstruction_loss``
    (``"bce"`` for data in [0, 1], ``"mse"`` for standardised features),
    ``input_suffixes`` (file suffixes ``read_file`` accepts), ``output_suffix``.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    classes: list[ClassInfo]
    input_shape: tuple[int, ...]
    default_latent_dim: int = 64
    reconstruction_loss: Literal["bce", "mse"] = "bce"
    input_suffixes: tuple[str, ...] = ()
    output_suffix: str = ""
    training_defaults: TrainingDefaults = TrainingDefaults()
    options_model: ClassVar[type[ModalityOptions]] = ModalityOptions
    # False for modalities that generate their data (nothing to find or download).
    needs_data: ClassVar[bool] = True
    # Bump when features change so caches built by older code are not reused.
    feature_version: ClassVar[str] = "1"

    # Filled in by the plugin host when the modality is registered.
    distribution: str = "local"
    distribution_version: str = "0"

    def __init__(self, options: ModalityOptions | None = None):
        self.options = options if options is not None else self.options_model()

    # -- identity -------------------------------------------------------------------
    def validate_descriptor(self) -> None:
        """Checked by the host at registration: a bad descriptor is the plugin's bug."""
        if not NAME_PATTERN.match(getattr(self, "name", "") or ""):
            raise PluginError(f"modality name {getattr(self, 'name', None)!r} must match {NAME_PATTERN.pattern}")
        if not self.classes:
            raise PluginError(f"modality {self.name!r} declares no classes")

    def with_options(self, values: dict) -> "Modality":
        """A copy of this modality configured with validated ``values``."""
        from pydantic import ValidationError

        try:
            options = self.options_model(**values)
        except ValidationError as exc:
            raise ConfigError(_validation_message(f"options for {self.name!r}", exc)) from None
        clone = type(self)(options)
        clone.distribution = self.distribution
        clone.distribution_version = self.distribution_version
        return clone

    @property
    def class_names(self) -> list[str]:
        return [c.name for c in self.classes]

    @property
    def concepts(self) -> list[str]:
        return [c.concept for c in self.classes]

    def cache_key(self) -> str:
        """Identifies the features this modality computes (options included)."""
        return f"{self.name}-v{self.feature_version}-{self.options.model_dump_json()}"

    # -- architectures --------------------------------------------------------------
    @abc.abstractmethod
    def vae_config(self, latent_dim: int) -> VAEConfig:
        """The VAE architecture for this modality with the given latent size."""

    @abc.abstractmethod
    def recognizer_config(self) -> RecognizerConfig:
        """The recognizer (the evaluation classifier of the paper's section 4.2)."""

    def associator_config(self, source_dim: int, target_dim: int) -> AssociatorConfig:
        """The associator into this modality's latent space (override to change it)."""
        return AssociatorConfig(source_dim=source_dim, target_dim=target_dim)

    # -- data ------------------------------------------------------------------------
    @abc.abstractmethod
    def load_features(self, root: Path, split: Literal["train", "test"], download: bool = False) -> FeatureSet:
        """Raw features of a split found under ``root``.

        Raise :class:`modgraph.errors.DataNotFoundError` naming the path looked in and
        the flag that downloads (``--download``) when the data is missing and
        ``download`` is false.
        """

    def fit_normalization(self, x: torch.Tensor) -> dict[str, list[float]]:
        """Statistics computed on the training features, stored with the model."""
        return {}

    def normalize(self, x: torch.Tensor, stats: dict[str, list[float]]) -> torch.Tensor:
        """Raw features to model input."""
        return x

    def denormalize(self, x: torch.Tensor, stats: dict[str, list[float]]) -> torch.Tensor:
        """Model output back to raw features."""
        return x

    def augment_batch(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Cheap on-the-fly augmentation of a normalised training batch (default: none)."""
        return x

    # -- files -----------------------------------------------------------------------
    @abc.abstractmethod
    def read_file(self, path: Path) -> tuple[torch.Tensor, list[str]]:
        """Read a user's file into raw features of ``input_shape``.

        Returns the features and notes about conversions made (for example "converted
        RGB to grayscale"). Raise :class:`modgraph.errors.InputFileError` for a file
        that is not this modality's kind of data.
        """

    def read_files(self, paths: list[Path]) -> tuple[torch.Tensor, list[list[str]]]:
        """Batched ``read_file``; override when a batch can be processed faster."""
        items = [self.read_file(p) for p in paths]
        return torch.stack([x for x, _ in items]), [notes for _, notes in items]

    def read_text(self, text: str) -> torch.Tensor:
        """Features from a literal string given on the command line (text-like modalities)."""
        from modgraph.errors import InputFileError

        raise InputFileError(f"modality {self.name!r} does not take literal text; give a file instead")

    @abc.abstractmethod
    def write_file(self, x: torch.Tensor, path: Path) -> list[Path]:
        """Write one raw-feature sample to ``path`` (and companions); return what was written."""


def _validation_message(what: str, exc) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ())) or "value"
        parts.append(f"{loc}: {err.get('msg')}")
    return f"invalid {what}: " + "; ".join(parts)
