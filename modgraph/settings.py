"""The settings of every command, defined once.

``NodeSettings`` (``add-modality``), ``LinkSettings`` (``link``), ``TranslateSettings``,
``EvalSettings`` and ``ReadSettings`` are the single source of the CLI options
(:mod:`modgraph.app.cli_options` builds them from the fields), the API's keyword arguments,
``plan``'s spec and argv, and the ``training`` header stored with the result. An unset value
(None) of a training setting means the modality's :class:`~modgraph.modality.TrainingDefaults`;
``resolve`` fills it in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from modgraph.errors import ConfigError, validation_message

# Bounds keep a typo from allocating gigabytes before anything fails.
MAX_EPOCHS = 100_000
MAX_BATCH = 65_536
MAX_LATENT = 4096  # VAEConfig's bound
MAX_SEED = 2**32 - 1
MAX_SAMPLES = 1000
MAX_SCALE = 16
# Anchored translation (modgraph.inference.anchors): neighbours an input's latent is anchored to.
DEFAULT_ANCHOR = 20
MAX_ANCHOR = 1000
GroupValues = dict[str, list[str]]


def comma_separated(*fields: str, item: Callable[[str], Any] = str):
    """A pydantic validator that reads ``"a,b"`` as ``[item("a"), item("b")]`` for ``fields`` (lists pass as they are).

    ``--option words=go,left`` arrives as a string, ``--option 'words=["go", "left"]'`` as a
    list; a plugin's options model writes ``_words = comma_separated("words")``.
    """

    def split(cls, value):
        if isinstance(value, str):
            try:
                return [item(part.strip()) for part in value.split(",") if part.strip()]
            except ValueError:
                kind = {int: "integers", float: "numbers"}.get(item, "values")
                raise ValueError(f"give a list of {kind} such as [a, b] or a,b, not {value!r}") from None
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            return [part for v in value for part in split(cls, v)]  # repeated options, each maybe a,b
        return value

    return field_validator(*fields, mode="before")(split)


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)
    what: ClassVar[str] = "settings"

    @classmethod
    def parse(cls, values: dict[str, Any], what: str | None = None):
        """Validated settings, or a :class:`ConfigError` of "field: message" lines joined in one."""
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            raise ConfigError(validation_message(what or cls.what, exc, list(cls.model_fields))) from None

    def given(self) -> dict[str, Any]:
        """The settings that differ from their unset defaults (what a command line must name)."""
        return {k: v for k, v in self.model_dump().items() if v != type(self).model_fields[k].default
                and not (isinstance(v, (dict, list)) and not v)}


class NodeSettings(_Settings):
    """``modgraph add-modality NAME``: how a modality's VAE and recognizer train."""

    what: ClassVar[str] = "add-modality settings"
    latent_dim: int | None = Field(None, ge=1, le=MAX_LATENT, description="Latent size [default: the modality's].")
    epochs: int | None = Field(None, ge=1, le=MAX_EPOCHS, description="VAE epochs [default: the modality's].")
    recognizer_epochs: int | None = Field(None, ge=1, le=MAX_EPOCHS,
                                          description="Recognizer epochs [default: the modality's].")
    batch_size: int | None = Field(None, ge=1, le=MAX_BATCH, description="Batch size [default: the modality's].")
    lr: float | None = Field(None, gt=0, description="Learning rate [default: the modality's].")
    kl_weight: float | None = Field(None, ge=0, description="lambda_int of Eq. 6 [default: the modality's].")
    vae_target: Literal["input", "original"] | None = Field(
        None, description="What an augmented copy reconstructs: itself (Eq. 6) or its original "
                          "[default: the modality's].")
    seed: int = Field(0, ge=0, le=MAX_SEED, description="Random seed.")
    options: dict[str, Any] = Field(default_factory=dict, description="Modality options (--option key=value).")
    exclude: GroupValues = Field(default_factory=dict,
                                 description="Leave rows out of training, e.g. speaker=jackson (repeatable).")

    def resolve(self, modality) -> "ResolvedNode":
        """Every value, unset ones from the modality's defaults."""
        d = modality.training_defaults
        return ResolvedNode(
            latent_dim=modality.default_latent_dim if self.latent_dim is None else self.latent_dim,
            epochs=self.epochs or d.epochs, recognizer_epochs=self.recognizer_epochs or d.recognizer_epochs,
            batch_size=self.batch_size or d.batch_size, lr=self.lr or d.lr,
            kl_weight=d.kl_weight if self.kl_weight is None else self.kl_weight,
            vae_target=self.vae_target or d.vae_target, seed=self.seed,
            options=modality.options.model_dump(mode="json"), exclude=self.exclude)


class ResolvedNode(BaseModel):
    """A node's settings with the modality's defaults filled in (what is stored and compared)."""

    model_config = ConfigDict(extra="forbid")
    latent_dim: int
    epochs: int
    recognizer_epochs: int
    batch_size: int
    lr: float
    kl_weight: float
    vae_target: Literal["input", "original"]
    seed: int
    options: dict[str, Any]
    exclude: GroupValues

    def training_header(self) -> dict[str, Any]:
        """The settings part of a node's stored ``training`` header (latent, options and
        exclusions are stored in the VAE config, ``options`` and ``data``)."""
        return self.model_dump(include={"epochs", "batch_size", "lr", "kl_weight", "recognizer_epochs", "seed",
                                        "vae_target"})


class LinkSettings(_Settings):
    """``modgraph link SOURCE TARGET``: how the associators between two modalities train."""

    what: ClassVar[str] = "link settings"
    pairing: Literal["concept", "index"] = Field(
        "concept", description="concept: classes with the same concept; index: class k with class k.")
    paired_fraction: float = Field(1.0, gt=0, le=1, description="Fraction of each modality's training samples "
                                                               "that may appear in pairs.")
    epochs: int | None = Field(None, ge=1, le=MAX_EPOCHS, description="Associator epochs [default: the target "
                                                                      "modality's].")
    batch_size: int | None = Field(None, ge=1, le=MAX_BATCH, description="Batch size [default: the target's].")
    lr: float | None = Field(None, gt=0, description="Learning rate [default: the target's].")
    kl_weight: float | None = Field(
        None, ge=0, description="lambda_crs of Eq. 7 [default: the target VAE's lambda_int, so z_ji lives "
                                        "where its decoder was trained].")
    seed: int = Field(0, ge=0, le=MAX_SEED, description="Random seed.")
    candidates: int | None = Field(
        None, ge=1, le=1024, description="Partners of the class drawn per sample, the loss taking the closest; 1 is "
                                         "the paper's Eq. 7 [default: the target modality's].")
    target_confidence: float | None = Field(
        None, ge=0, lt=1, description="Aim only at target samples whose reconstruction the target's recognizer "
                                      "gives at least this probability of their class; 0 aims at all, as the paper "
                                      "[default: the target modality's].")
    source_noise: float | None = Field(
        None, ge=0, description="Train on mu + S * sigma * eps of the source encoder; 1 samples q(z|x) as "
                                        "the paper, 0 takes the mean, as translate does [default: the source "
                                        "modality's].")
    pseudo_label_confidence: float | None = Field(
        None, gt=0, le=1, description="With --paired-fraction below 1: unpaired source samples whose class label "
                                      "spreading in the latent space gives at least this confidence join the "
                                      "sources; 1 uses the paired samples only, as the paper [default: the source "
                                      "modality's].")
    select: Literal["loss", "accuracy"] | None = Field(
        None, description="Keep the epoch of lowest validation loss, or the lowest-loss epoch among those whose "
                          "validation translation accuracy (as the target's recognizer reads it) is within one "
                          "standard error of the best [default: the target modality's].")
    exclude: GroupValues = Field(default_factory=dict, description="Leave rows out of the pairs (repeatable).")
    one_way: bool = Field(False, description="Train only SOURCE->TARGET.")

    def side(self, modality) -> tuple[float, float]:
        """A modality's label-spreading threshold as a source and its target confidence as a target."""
        d = modality.training_defaults
        return (d.link_pseudo_label_confidence if self.pseudo_label_confidence is None
                else self.pseudo_label_confidence,
                d.link_target_confidence if self.target_confidence is None else self.target_confidence)

    def resolve(self, source, target) -> "ResolvedLink":
        """The settings of the associator from modality ``source`` into modality ``target``.

        Training budget, partners, target confidence and the kept epoch follow the target
        modality; source noise and label spreading follow the source.
        """
        d, s = target.training_defaults, source.training_defaults
        return ResolvedLink(
            pairing=self.pairing, paired_fraction=self.paired_fraction,
            epochs=self.epochs or d.link_epochs, batch_size=self.batch_size or d.batch_size, lr=self.lr or d.lr,
            kl_weight=d.kl_weight if self.kl_weight is None else self.kl_weight, seed=self.seed,
            candidates=self.candidates or d.link_candidates,
            target_confidence=d.link_target_confidence if self.target_confidence is None else self.target_confidence,
            source_noise=s.link_source_noise if self.source_noise is None else self.source_noise,
            pseudo_label_confidence=s.link_pseudo_label_confidence if self.pseudo_label_confidence is None
            else self.pseudo_label_confidence,
            select=self.select or d.link_select, exclude=self.exclude)


class ResolvedLink(BaseModel):
    """One associator's settings with the modalities' defaults filled in."""

    model_config = ConfigDict(extra="forbid")
    pairing: Literal["concept", "index"]
    paired_fraction: float
    epochs: int
    batch_size: int
    lr: float
    kl_weight: float
    seed: int
    candidates: int
    target_confidence: float
    source_noise: float
    pseudo_label_confidence: float
    select: Literal["loss", "accuracy"]
    exclude: GroupValues

    def training_header(self) -> dict[str, Any]:
        """The settings part of an associator's stored ``training`` header (``pairing`` and
        ``paired_fraction`` head the header itself)."""
        return self.model_dump(exclude={"pairing", "paired_fraction"})


class JobResources(BaseModel):
    """What one job of a graph spec asks of each machine it runs on (``modgraph train``; Ray's task resources)."""

    model_config = ConfigDict(extra="forbid")
    cpus: int = Field(1, ge=1, le=1024, description="CPU cores per machine; its processes share them as threads")
    gpus: int | None = Field(None, ge=0, le=64, description="GPUs per machine; unset: 1 where there are GPUs, else 0")
    nodes: int = Field(1, ge=1, le=1024, description="machines the job spans (torchrun multi-node rendezvous)")


class LinkSpec(LinkSettings):
    """One link of a graph spec: its two modalities and ``link``'s settings."""

    what: ClassVar[str] = "link"
    source: str
    target: str
    args: list[str] = Field(default_factory=list, description="more command-line arguments, passed as they are")
    resources: JobResources = Field(default_factory=JobResources, description="what its job asks (modgraph train)")

    @model_validator(mode="after")
    def _two_modalities(self):
        if self.source == self.target:
            raise ValueError(f"a link joins two modalities, not {self.source!r} with itself")
        return self

    def settings(self) -> LinkSettings:
        return LinkSettings(**self.model_dump(exclude={"source", "target", "args", "resources"}))

    def directions(self) -> list[tuple[str, str]]:
        forward = (self.source, self.target)
        return [forward] if self.one_way else [forward, (self.target, self.source)]


class NodeSpec(NodeSettings):
    """One node of a graph spec: ``add-modality``'s settings and extra arguments."""

    what: ClassVar[str] = "modality"
    args: list[str] = Field(default_factory=list, description="more command-line arguments, passed as they are")
    resources: JobResources = Field(default_factory=JobResources, description="what its job asks (modgraph train)")

    def settings(self) -> NodeSettings:
        return NodeSettings(**self.model_dump(exclude={"args", "resources"}))


# -- using a trained graph: translate, eval, read ---------------------------------------------------
def _anchor(default: int, what: str):
    return Field(default, ge=0, le=MAX_ANCHOR, strict=True, description=what)


class ReadSettings(_Settings):
    """``modgraph read --modality NAME FILE...``: what a node's recognizer reads besides files."""

    what: ClassVar[str] = "read settings"
    texts: list[str] = Field(default_factory=list, description="A literal input (text-like modalities; repeatable).")
    recursive: bool = Field(False, description="Read the files of a folder's subfolders too.")
    all: bool = Field(False, description="Print a line for every input (without it, a long batch shows its "
                                         "first 20 and how many more; warnings and errors are always shown).")


class _RouteSettings(_Settings):
    via: list[str] = Field(default_factory=list,
                           description="Force the path through these modalities, in order (A,B or repeated).")
    _via = comma_separated("via")


class TranslateSettings(ReadSettings, _RouteSettings):
    """``modgraph translate --from A --to B FILE...``: how inputs are translated and written."""

    what: ClassVar[str] = "translate settings"
    samples: int = Field(1, ge=1, le=MAX_SAMPLES, strict=True, description="Outputs drawn per input.")
    scale: int = Field(1, ge=1, le=MAX_SCALE, strict=True,
                       description=f"Write image outputs this many times larger (1-{MAX_SCALE}, nearest neighbour).")
    anchor: int = _anchor(DEFAULT_ANCHOR, "Translate each input as the mean of the K training samples nearest to it "
                                          "of the class the source recognizer reads, so that unusual inputs (typed "
                                          "digits, other microphones) land where the associator learnt; 0: the "
                                          "latent as it is (the paper's translation; eval measures the same default).")
    sheet: Path | None = Field(None, description="Also write a contact sheet PNG here: each input beside its outputs, "
                                                "labelled with what the recognizers read (a long batch: its first "
                                                "inputs, and how many more there were).")
    batch_size: int = Field(256, ge=1, le=MAX_BATCH, strict=True, description="Inputs read and translated at once.")


class EvalSettings(_RouteSettings):
    """``modgraph eval --from A --to B``: which rows are translated and how."""

    what: ClassVar[str] = "eval settings"
    split: Literal["test", "train", "all"] = Field("test", description="The split whose rows are translated.")
    include: GroupValues = Field(default_factory=dict,
                                 description="Only rows of these groups, e.g. speaker=lucas (repeatable).")
    anchor: int = _anchor(DEFAULT_ANCHOR, "Measure translations anchored to K neighbours, as translate writes them; "
                                          "0: the paper's translation (as translate --anchor 0 writes it).")


# -- modgraph tune: where it searches and how long ---------------------------------------------------
class SearchRange(BaseModel):
    """Where ``modgraph tune`` looks for one setting: ``low``..``high`` (``log``: on a log scale) or one of ``choices``.

    ``times_default``: ``low`` and ``high`` are multiples of the modality's own default for the
    setting (epochs 0.5..2 of a modality whose default is 8: 4..16). A setting whose field is an
    int is drawn as an int.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    low: float | None = None
    high: float | None = None
    log: bool = False
    times_default: bool = False
    choices: list[int | float | str] | None = None

    @model_validator(mode="after")
    def _range_or_choices(self):
        if self.choices is not None:
            if not self.choices or self.low is not None or self.high is not None:
                raise ValueError("give low and high, or a non-empty list of choices, not both")
        elif self.low is None or self.high is None or self.low > self.high:
            raise ValueError("give low <= high, or a list of choices")
        elif (self.log or self.times_default) and self.low <= 0:
            raise ValueError("a log or times_default range needs low > 0")
        return self

    def bounds(self, default: float) -> tuple[float, float]:
        """``low`` and ``high``, multiplied by ``default`` when they are stated as multiples of it."""
        scale = default if self.times_default else 1.0
        return self.low * scale, self.high * scale


# The core's search spaces (a modality's TrainingDefaults may replace them): what a new modality
# usually gets wrong is the balance of reconstruction and KL (kl_weight) and the learning rate.
NODE_SEARCH_SPACE = {
    "latent_dim": SearchRange(low=0.5, high=2.0, log=True, times_default=True),
    "kl_weight": SearchRange(low=0.01, high=2.0, log=True),
    "lr": SearchRange(low=1e-4, high=1e-2, log=True),
    "batch_size": SearchRange(low=0.25, high=2.0, log=True, times_default=True),
    "epochs": SearchRange(low=0.5, high=2.0, times_default=True),
}
LINK_SEARCH_SPACE = {
    "kl_weight": SearchRange(low=0.01, high=2.0, log=True),
    "lr": SearchRange(low=1e-4, high=1e-2, log=True),
    "batch_size": SearchRange(low=0.25, high=2.0, log=True, times_default=True),
    "epochs": SearchRange(low=0.5, high=2.0, times_default=True),
}
# The settings a search space may name (the rest say what to train on, not how).
NODE_TUNABLE = ("latent_dim", "epochs", "recognizer_epochs", "batch_size", "lr", "kl_weight", "vae_target")
LINK_TUNABLE = ("epochs", "batch_size", "lr", "kl_weight", "candidates", "target_confidence", "source_noise",
                "pseudo_label_confidence", "select")


def check_search_space(space: dict[str, SearchRange], link: bool = False) -> dict[str, SearchRange]:
    """``space`` if it names only tunable settings and its fixed values are valid ones (else ValueError)."""
    model, tunable = (LinkSettings, LINK_TUNABLE) if link else (NodeSettings, NODE_TUNABLE)
    for name, where in space.items():
        if name not in tunable:
            raise ValueError(f"{name!r} cannot be searched; searchable: {', '.join(tunable)}")
        values = where.choices if where.choices is not None else [] if where.times_default else [where.low, where.high]
        for value in values:
            model.parse({name: value}, f"search range of {name}")
    return space


class TuneSettings(_Settings):
    """``modgraph tune NAME`` / ``modgraph tune A B``: the search for training settings that learn."""

    what: ClassVar[str] = "tune settings"
    trials: int | None = Field(None, ge=1, le=100_000, description="Trials this process runs (the study keeps "
                                                                    "earlier ones) [default: 20, or as many as "
                                                                    "--minutes allows].")
    minutes: float | None = Field(None, gt=0, description="Start no trial after this many minutes.")
    storage: str | None = Field(None, description="An Optuna storage URL that several processes or machines can "
                                                  "share (sqlite:///tune.db, postgresql://...) [default: a SQLite "
                                                  "file in REGISTRY-tune/ beside the registry].")
    study: str | None = Field(None, description="The study's name in the storage [default: NAME, or A--B].")
    prune_after: int = Field(3, ge=0, le=1000, description="Finished trials before hopeless ones are pruned (a "
                                                           "trial below the median of earlier ones at the same "
                                                           "point of its training).")
    sampler_seed: int | None = Field(None, ge=0, le=MAX_SEED, description="Seed of the sampler that proposes "
                                                                          "settings [default: random].")
    output: str | None = Field(None, description="Write the best settings here, as a graph spec that plan and "
                                                 "add-modality --options-file read [default: NAME-tuned.toml].")
    apply: bool = Field(False, description="Then train the best settings into the registry (add-modality or link).")
