"""What a modality plugin provides: classes, shapes, architectures, data and file I/O.

Subclass :class:`Modality`, fill in the class attributes and the abstract methods, and
register an instance from the ``register_modalities`` hook.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Literal, Sequence

import torch
from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator
from pydantic.fields import FieldInfo

from modgraph.errors import ConfigError, PluginError, validation_message
from modgraph.storage.safe_io import NAME_PATTERN  # noqa: F401  (plugins and the kit read it here)
from modgraph.learning.models import AssociatorConfig, RecognizerConfig, VAEConfig
from modgraph.settings import LINK_SEARCH_SPACE, NODE_SEARCH_SPACE, SearchRange, check_search_space



class ClassInfo(BaseModel):
    """One class of a modality: its label name and the concept it stands for.

    Concepts are what ``link --pairing concept`` matches across modalities (for example
    the MNIST class ``7`` and the FSDD class ``7`` share the concept ``seven``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    # The class's label name, as users read it (``"7"``, ``"stop"``).
    name: str
    # What the class stands for across modalities: ``link --pairing concept`` pairs equal concepts.
    concept: str
    # The class's number in the dataset's own full numbering, for a modality that learns only
    # some of its classes (gsc: the paper's word order, "five" is 5 wherever it sits in the
    # list). ``link --pairing index`` pairs equal numbers; None: the class's position.
    number: int | None = None


class DatasetInfo(BaseModel):
    """The dataset a modality learns from, as its plugin states it (shown on model cards).

    ``licence`` is the licence the plugin author found stated for the copy it reads, in
    words (for example ``"CC BY 4.0"``); ``url`` where it comes from; ``citation`` whom to cite.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    # The dataset's name.
    name: str
    # The licence stated for the copy the plugin reads, in words (e.g. "CC BY 4.0").
    licence: str
    # Where the dataset comes from.
    url: str = ""
    # Whom to cite.
    citation: str = ""


class TrainingDefaults(BaseModel):
    """A modality's default budget for the intra-modal phase (CLI options override)."""

    model_config = ConfigDict(extra="forbid")
    # VAE epochs of ``add-modality``.
    epochs: int = 10
    # Batch size of the VAE, the recognizer and associators into this modality.
    batch_size: int = 128
    # Adam learning rate of the VAE and of associators into this modality.
    lr: float = 1e-3
    # The KL term's weight, lambda_int of the paper's Eq. 6 (lower it when reconstructions are read at chance).
    kl_weight: float = 1.0
    # Recognizer epochs of ``add-modality``.
    recognizer_epochs: int = 3
    # Epochs of an associator into this modality (``link``).
    link_epochs: int = 5
    # Pairs drawn per associator epoch into this modality (None: one pass over the paired
    # source rows). A fixed number keeps the training steps when few samples are paired.
    link_pairs_per_epoch: int | None = None
    # Class-matched partners drawn per source sample when training an associator into this
    # modality; the loss takes the closest (1: the paper's Eq. 7 with one random partner).
    link_candidates: int = Field(1, ge=1)
    # An associator into this modality aims only at training samples whose VAE reconstruction
    # this modality's recognizer gives at least this probability of their class (modgraph.learning.targets;
    # 0: every sample, the paper's protocol). Recognizers train with label smoothing 0.05, so
    # their most confident answer is about 0.955.
    link_target_confidence: float = Field(0.0, ge=0.0, lt=1.0)
    # An associator *from* this modality trains on z = mu + link_source_noise * sigma * eps,
    # drawn from this modality's encoder (1: the paper's sample of q(z|x); 0: the posterior
    # mean, which is what translate feeds it). Lower it when the VAE's posteriors are wide
    # against the spread of their means, so that samples of one class land on another.
    link_source_noise: float = Field(1.0, ge=0.0)
    # With a paired fraction below 1, an associator *from* this modality also trains on
    # unpaired samples to which label spreading in this modality's latent space gives a class
    # with at least this confidence (modgraph.learning.pseudo_labels; 1: paired samples only, the paper's).
    link_pseudo_label_confidence: float = Field(0.5, gt=0.0, le=1.0)
    # A grouping of this modality's rows (a key of its dataset's groups, e.g. "speaker") within
    # which every class comes in about the same proportions: the spread classes are then
    # balanced within each group (modgraph.learning.pseudo_labels.balance_within). None: not balanced.
    link_spread_balance: str | None = None
    # What the VAE reconstructs from an augmented training copy: the copy itself ("input",
    # Eq. 6 as written) or the original it was made from ("original": a denoising VAE, whose
    # encoder learns to give a copy its original's latent, so the latent keeps what the
    # augmentation leaves alone). Rows that are not augmented copies always reconstruct themselves.
    vae_target: Literal["input", "original"] = "input"
    # Which epoch of an associator *into* this modality is kept: the lowest validation loss
    # ("loss"), or the lowest loss among the epochs whose validation translation accuracy, as
    # this modality's recognizer reads it, is within one standard error of the best ("accuracy";
    # modgraph.learning.training.kept_epoch). Both are measured on the validation split only.
    # The loss can be lowest while the outputs are a class average the recognizer misreads.
    link_select: Literal["loss", "accuracy"] = "accuracy"
    # Where ``modgraph tune NAME`` searches this modality's add-modality settings: setting name ->
    # SearchRange (default modgraph.settings.NODE_SEARCH_SPACE: latent size, kl_weight, learning rate,
    # batch size, epochs). Replace or extend it, e.g. ``{**NODE_SEARCH_SPACE, "kl_weight":
    # SearchRange(low=0.1, high=1.0, log=True)}``.
    search_space: dict[str, SearchRange] = Field(default_factory=lambda: dict(NODE_SEARCH_SPACE))
    # Where ``modgraph tune SOURCE NAME`` searches the link settings of associators into this modality
    # (default modgraph.settings.LINK_SEARCH_SPACE: kl_weight, learning rate, batch size, epochs).
    link_search_space: dict[str, SearchRange] = Field(default_factory=lambda: dict(LINK_SEARCH_SPACE))

    @field_validator("search_space", "link_search_space")
    @classmethod
    def _searchable(cls, space, info):
        return check_search_space(space, link=info.field_name == "link_search_space")


class ModalityOptions(BaseModel):
    """Options a modality accepts (``--option key=value``); subclass to add fields."""

    model_config = ConfigDict(extra="forbid")

    @classmethod
    def with_defaults(cls, **defaults: Any) -> type["ModalityOptions"]:
        """A subclass whose named fields default to the values given, bounds and descriptions kept.

        ``class FSDDOptions(SpeechOptions.with_defaults(trim_db=30.0)): ...`` changes a default
        without declaring the field a second time.
        """
        unknown = sorted(set(defaults) - set(cls.model_fields))
        if unknown:
            raise TypeError(f"{cls.__name__} has no option(s) {unknown}")
        fields = {name: (cls.model_fields[name].annotation,
                         FieldInfo.merge_field_infos(cls.model_fields[name], default=value))
                  for name, value in defaults.items()}
        return create_model(cls.__name__, __base__=cls, __module__=cls.__module__, **fields)


@dataclass
class FeatureSet:
    """A split's features, computed once and cached.

    ``x`` holds raw features (before normalisation), ``y`` class indices, ``origin`` the
    index of the original sample each row comes from (augmented copies share their
    original's origin; rows with one origin are never split across train and
    validation), ``augmented`` whether a row is an augmented copy, and ``groups`` an
    optional named grouping per row (for example ``speaker``). Read from the feature
    cache, ``x`` of a large split is a :class:`modgraph.features.shards.ShardedRows`: indexed
    like a tensor, it reads only the rows asked for.
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
        from modgraph.features.shards import is_rows

        return FeatureSet(
            x=self.x.take(index) if is_rows(self.x) else self.x[index], y=self.y[index], origin=self.origin[index], augmented=self.augmented[index],
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
    ``input_suffixes`` (file suffixes ``read_file`` accepts), ``output_suffix``, and
    optionally ``dataset`` (a :class:`DatasetInfo`: name and licence, for model cards).
    """

    # The graph node and registry file name (nodes/<name>.safetensors): lower case, unique among plugins.
    name: ClassVar[str]
    # One line shown by ``modgraph plugins`` and on model cards.
    description: ClassVar[str] = ""
    # The classes in label order (position = label index), each a ClassInfo with its concept.
    classes: list[ClassInfo]
    # One sample's model input shape, without the batch axis ((C, H, W) for a conv VAE).
    input_shape: tuple[int, ...]
    # The latent size when ``add-modality --latent-dim`` is not given.
    default_latent_dim: int = 64
    # "bce" for model inputs in [0, 1] (a sigmoid decoder), "mse" for standardised features.
    reconstruction_loss: Literal["bce", "mse"] = "bce"
    # File suffixes ``read_file`` accepts (lower case, with the dot).
    input_suffixes: tuple[str, ...] = ()
    # The suffix of the files ``write_file`` writes, with the dot.
    output_suffix: str = ""
    # The modality's training budget and link behaviour; CLI options override each field.
    training_defaults: TrainingDefaults = TrainingDefaults()
    # The ModalityOptions subclass of the ``--option key=value`` settings this modality accepts.
    options_model: ClassVar[type[ModalityOptions]] = ModalityOptions
    # False for modalities that generate their data (nothing to find or download).
    needs_data: ClassVar[bool] = True
    # The dataset's name and licence as the plugin states them (modgraph card); None: not stated.
    dataset: ClassVar[DatasetInfo | None] = None
    # Bump when features change so caches built by older code are not reused.
    feature_version: ClassVar[str] = "1"
    # Training rows an associator INTO this modality never aims at, by group value (e.g.
    # text: {"variant": ["phrase", "digit", "typo"]}): a class whose rows take several
    # forms would otherwise be aimed at their blend, which decodes to none of them.
    target_exclude: ClassVar[dict[str, list[str]]] = {}

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
            known = list(self.options_model.model_fields)
            raise ConfigError(validation_message(f"options for {self.name!r}", exc, known)) from None
        clone = type(self)(options)
        clone.distribution = self.distribution
        clone.distribution_version = self.distribution_version
        return clone

    def for_data(self, root: Path, download: bool = False) -> tuple["Modality", list[str]]:
        """This modality with the options that depend on the data under ``root`` settled, and notes for the user.

        ``add-modality`` trains (and stores the options of) what this returns, so a stored
        node never needs the data to know its classes. Override when a default is "what the
        data supports" (gsc: which release is there, which words have enough clips); the
        default returns the modality as it is and no notes. Raise
        :class:`modgraph.errors.DataNotFoundError` as ``load_features`` does.
        """
        return self, []

    @property
    def class_numbers(self) -> list[int]:
        """Each class's number (``ClassInfo.number``, else its position): what index pairing matches."""
        return [i if c.number is None else c.number for i, c in enumerate(self.classes)]

    @property
    def class_names(self) -> list[str]:
        """The class names in label order."""
        return [c.name for c in self.classes]

    @property
    def concepts(self) -> list[str]:
        """Each class's concept, in label order."""
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

    def feature_chunks(self, root: Path, split: Literal["train", "test"],
                       download: bool = False) -> Sequence[Callable[[], FeatureSet]] | None:
        """Optional: the split as chunks, for data too large to compute as one tensor.

        Return a sequence of callables, each computing one chunk's :class:`FeatureSet` (a
        few thousand rows; the same rows in the same order every time), or ``None`` (the
        default) to have :meth:`load_features` compute the split in one go. The feature
        cache writes each chunk to disk as a shard when it is computed, calls only the
        chunks an interrupted build did not finish, and afterwards reads rows lazily.
        ``origin`` values count within a chunk (0 .. rows - 1); the cache offsets them so
        that no two chunks share an origin. Listing the chunks must be cheap (list files,
        do not decode them) and raise :class:`modgraph.errors.DataNotFoundError` as
        ``load_features`` does.
        """
        return None

    def fit_normalization(self, x: torch.Tensor) -> dict[str, list[float]]:
        """Statistics computed on the training features, stored with the model."""
        return {}

    def fit_normalization_stream(self, chunks: Iterable[torch.Tensor]) -> dict[str, list[float]]:
        """Statistics of training features too large for memory, given as chunks of rows.

        Called instead of :meth:`fit_normalization` when the training split is read lazily
        from the feature cache. Override it with exact running sums (as the speech
        modalities do); the default fits :meth:`fit_normalization` on a uniform random
        sample of the rows of at most ``NORMALIZATION_SAMPLE_BYTES``.
        """
        if type(self).fit_normalization is Modality.fit_normalization:
            return {}  # nothing to fit: do not read the data
        return self.fit_normalization(sample_rows(chunks, NORMALIZATION_SAMPLE_BYTES, seed=0))

    def normalize(self, x: torch.Tensor, stats: dict[str, list[float]]) -> torch.Tensor:
        """Raw features to model input, on ``x``'s device (``torch.tensor(stats[...], device=x.device)``)."""
        return x

    def denormalize(self, x: torch.Tensor, stats: dict[str, list[float]]) -> torch.Tensor:
        """Model output back to raw features."""
        return x

    def augment_batch(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Cheap on-the-fly augmentation of a normalised training batch (default: none).

        ``x`` is on the training device (a GPU): make every tensor on ``x.device`` (random draws
        may be made where ``generator`` lives, then moved). ``modgraph.testing`` checks it on meta.
        """
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

    def example_files(self, root: Path, split: Literal["train", "test"]) -> list[tuple[int, Path]] | None:
        """Optional: the dataset's own files of ``split`` under ``root``, each with its class index.

        ``modgraph serve`` offers the first of each class as an example input, so return files
        ``read_file`` reads (the recordings themselves, not files rebuilt from features), in a fixed
        order, without decoding them. Raise :class:`modgraph.errors.DataNotFoundError` as
        ``load_features`` does when the data is missing. None (the default): the dataset is not
        kept as such files (the page then writes image and text examples from the test features).
        """
        return None

    @abc.abstractmethod
    def write_file(self, x: torch.Tensor, path: Path, *, scale: int = 1) -> list[Path]:
        """Write one raw-feature sample to ``path`` (and companions); return what was written.

        ``x`` may be on a GPU: move it to the CPU (``x.detach().cpu()``) before NumPy or file work.

        ``scale`` (``translate --scale``, 1-16): an image output is written ``scale`` times
        larger, nearest neighbour; other outputs ignore it. The host passes it only when it is
        not 1 and only to a ``write_file`` that declares it (:func:`takes_scale`), so an
        implementation without it keeps working; its images are then written at their own size.

        ``translate_files`` calls it from one writer thread, in order, while the next batch
        is read and translated: share no unguarded state with ``read_file``/``read_files``.
        """

    def picture(self, x: torch.Tensor) -> Any:
        """Optional: what one raw-feature sample looks like, for ``translate --sheet``'s contact sheet.

        Return a PIL image, a ``uint8`` NumPy array ``(H, W, 3)`` (or ``(H, W)``, grey), a string
        (drawn as text: text-like modalities), or None (the sheet shows the readings only). The
        sheet enlarges a small picture by whole multiples, nearest neighbour; label a picture
        that is not what it looks like (audio: "mel spectrogram"). ``x`` may be on a GPU.
        The default draws features shaped ``(1|3, H, W)`` or ``(H, W)`` as pixels and ``(N,)`` as
        a bar chart (one bar per value, 32 pixels high): values clamped to [0, 1] with
        ``reconstruction_loss="bce"``, else scaled from their minimum to their maximum; other shapes give None.
        """
        return default_picture(x, clamp=self.reconstruction_loss == "bce")


def takes_scale(modality: Modality) -> bool:
    """Whether ``modality.write_file`` declares ``scale`` (plugins written before it do not)."""
    import inspect

    try:
        parameters = inspect.signature(modality.write_file).parameters.values()
    except (TypeError, ValueError):  # a builtin or C-implemented callable: assume the old signature
        return False
    return any(p.name == "scale" or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def default_picture(x: torch.Tensor, clamp: bool):
    """``x`` as a ``uint8`` picture ``(H, W)`` or ``(H, W, 3)`` (see :meth:`Modality.picture`), or None."""
    x = torch.as_tensor(x).detach().to("cpu", torch.float32)
    if x.dim() == 1:  # a vector: one bar per value, filled from the bottom (a one-pixel strip shows nothing)
        heights = (_unit(x, clamp) * BAR_HEIGHT).round().long()
        return ((torch.arange(BAR_HEIGHT, 0, -1)[:, None] <= heights[None]).to(torch.uint8) * 255).numpy()
    if x.dim() == 3 and x.shape[0] in (1, 3):
        x = x[0] if x.shape[0] == 1 else x.permute(1, 2, 0)
    elif x.dim() != 2:
        return None
    return (_unit(x, clamp) * 255).round().to(torch.uint8).numpy()


BAR_HEIGHT = 32  # pixels of the default picture's bars for features shaped (N,)


def _unit(x: torch.Tensor, clamp: bool) -> torch.Tensor:
    """Values in [0, 1]: clamped (``bce`` features), else scaled from their minimum to their maximum."""
    x = torch.nan_to_num(x)
    if not clamp:
        low, high = float(x.min()), float(x.max())
        x = (x - low) / (high - low) if high > low else torch.zeros_like(x)
    return x.clamp(0, 1)


NORMALIZATION_SAMPLE_BYTES = 256 << 20


def sample_rows(chunks: Iterable[torch.Tensor], max_bytes: int, seed: int = 0) -> torch.Tensor:
    """A uniform random sample, without replacement, of the rows of ``chunks`` (at most ``max_bytes``).

    Every row gets a random key and the rows with the smallest keys are kept, so memory
    holds one chunk and the sample at a time.
    """
    gen = torch.Generator().manual_seed(seed)
    kept, keys = None, None
    for chunk in chunks:
        chunk = chunk.cpu()
        limit = max(1, max_bytes // max(1, chunk[0].numel() * chunk.element_size())) if len(chunk) else 1
        chunk_keys = torch.rand(len(chunk), generator=gen)
        kept = chunk if kept is None else torch.cat([kept, chunk])
        keys = chunk_keys if keys is None else torch.cat([keys, chunk_keys])
        if len(kept) > limit:
            best = torch.topk(keys, limit, largest=False).indices.sort().values
            kept, keys = kept[best], keys[best]
    if kept is None:
        raise ValueError("no rows to sample")
    return kept
