"""A graph's training as independent jobs: the nodes first, then the associators between them.

A graph spec (TOML or JSON) names modalities with their settings and the links between
them; :func:`make_plan` turns it into stages of ``modgraph`` command lines that any
scheduler can run in parallel, leaving out what the registry already holds up to date.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from modgraph.errors import ConfigError, NotInRegistryError
from modgraph.modality import _validation_message


class ModalitySpec(BaseModel):
    """One node: the settings of ``modgraph add-modality NAME`` (unset: the modality's default)."""

    model_config = ConfigDict(extra="forbid")
    latent_dim: int | None = Field(None, ge=1)
    epochs: int | None = Field(None, ge=1)
    recognizer_epochs: int | None = Field(None, ge=1)
    batch_size: int | None = Field(None, ge=1)
    lr: float | None = Field(None, gt=0)
    kl_weight: float | None = Field(None, ge=0)
    vae_target: Literal["input", "original"] | None = None
    seed: int = 0
    options: dict[str, Any] = Field(default_factory=dict, description="modality options (--option key=value)")
    exclude: dict[str, list[str]] = Field(default_factory=dict, description="rows left out, e.g. speaker")
    args: list[str] = Field(default_factory=list, description="more command-line arguments, passed as they are")


class LinkSpec(BaseModel):
    """One link: the settings of ``modgraph link SOURCE TARGET``."""

    model_config = ConfigDict(extra="forbid")
    source: str
    target: str
    pairing: Literal["concept", "index"] = "concept"
    paired_fraction: float = Field(1.0, gt=0, le=1)
    one_way: bool = False
    epochs: int | None = Field(None, ge=1)
    batch_size: int | None = Field(None, ge=1)
    lr: float | None = Field(None, gt=0)
    kl_weight: float | None = Field(None, ge=0)
    seed: int = 0
    exclude: dict[str, list[str]] = Field(default_factory=dict)
    args: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _two_modalities(self):
        if self.source == self.target:
            raise ValueError(f"a link joins two modalities, not {self.source!r} with itself")
        return self

    def directions(self) -> list[tuple[str, str]]:
        forward = (self.source, self.target)
        return [forward] if self.one_way else [forward, (self.target, self.source)]


class GraphSpec(BaseModel):
    """Modalities by name, the links between them, and arguments every command gets (``args``)."""

    model_config = ConfigDict(extra="forbid")
    modalities: dict[str, ModalitySpec] = Field(default_factory=dict)
    links: list[LinkSpec] = Field(default_factory=list)
    args: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _each_direction_once(self):
        seen: dict[tuple[str, str], int] = {}
        for i, link in enumerate(self.links):
            for direction in link.directions():
                if direction in seen:
                    raise ValueError(f"links {seen[direction] + 1} and {i + 1} both train "
                                     f"{direction[0]} -> {direction[1]}")
                seen[direction] = i
        return self


def read_spec(path: str | Path) -> GraphSpec:
    """A graph spec from a ``.toml`` or ``.json`` file; errors name the file and the field."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".json":
            raw = json.loads(path.read_text())
        else:
            import tomllib

            with open(path, "rb") as fh:
                raw = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read the graph spec {path}: {exc.strerror or exc}") from None
    except ValueError as exc:  # JSONDecodeError and TOMLDecodeError
        raise ConfigError(f"the graph spec {path} is not valid {path.suffix.lstrip('.') or 'TOML'}: {exc}") from None
    try:
        return GraphSpec.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_validation_message(f"graph spec {path}", exc)) from None


# -- command lines -------------------------------------------------------------------------------
def _option_value(value: Any) -> str:
    """What ``--option key=VALUE`` needs so the CLI reads back ``value`` (it parses JSON first)."""
    if isinstance(value, str):
        try:
            json.loads(value)
        except ValueError:
            return value
    return json.dumps(value)


def _flags(pairs: list[tuple[str, Any]]) -> list[str]:
    out = []
    for flag, value in pairs:
        if value is None or value is False:
            continue
        out += [flag] if value is True else [flag, str(value)]
    return out


def _excludes(exclude: dict[str, list[str]]) -> list[str]:
    return [arg for key, values in exclude.items() for arg in ("--exclude", f"{key}={','.join(values)}")]


def node_argv(name: str, spec: ModalitySpec) -> list[str]:
    argv = ["modgraph", "add-modality", name]
    argv += _flags([("--latent-dim", spec.latent_dim), ("--epochs", spec.epochs),
                    ("--recognizer-epochs", spec.recognizer_epochs), ("--batch-size", spec.batch_size),
                    ("--lr", spec.lr), ("--kl-weight", spec.kl_weight), ("--vae-target", spec.vae_target),
                    ("--seed", spec.seed or None)])
    for key, value in spec.options.items():
        argv += ["--option", f"{key}={_option_value(value)}"]
    return argv + _excludes(spec.exclude)


def link_argv(spec: LinkSpec) -> list[str]:
    argv = ["modgraph", "link", spec.source, spec.target, "--pairing", spec.pairing]
    argv += _flags([("--paired-fraction", spec.paired_fraction if spec.paired_fraction != 1.0 else None),
                    ("--epochs", spec.epochs), ("--batch-size", spec.batch_size), ("--lr", spec.lr),
                    ("--kl-weight", spec.kl_weight), ("--seed", spec.seed or None), ("--one-way", spec.one_way)])
    return argv + _excludes(spec.exclude)


# -- what the registry already holds ---------------------------------------------------------------
def _same(recorded, wanted) -> bool:
    if isinstance(wanted, float) or isinstance(recorded, float):
        try:
            return abs(float(recorded) - float(wanted)) <= 1e-12 * max(1.0, abs(float(wanted)))
        except (TypeError, ValueError):
            return False
    return recorded == wanted


def _differences(recorded: dict, wanted: dict) -> list[str]:
    return [f"{key} {recorded.get(key)!r} recorded, {value!r} wanted" for key, value in wanted.items()
            if not _same(recorded.get(key), value)]


def _sorted_groups(groups: dict | None) -> dict[str, list[str]]:
    return {k: sorted(v) for k, v in sorted((groups or {}).items())}


def node_changes(mg, name: str, spec: ModalitySpec) -> list[str]:
    """Why NAME's node must be (re)trained to match ``spec``; empty when it is up to date."""
    modality = mg.modality(name, spec.options or None)
    try:
        meta = mg.registry.node_metadata(name)
    except NotInRegistryError:
        return ["not in the registry"]
    d = modality.training_defaults
    training = meta.get("training") or {}
    recorded = {"latent_dim": ((meta.get("config") or {}).get("vae") or {}).get("latent_dim"),
                **{k: training.get(k) for k in ("epochs", "recognizer_epochs", "batch_size", "lr", "kl_weight",
                                                  "seed")},
                "vae_target": training.get("vae_target", "input"),  # nodes from before the setting: Eq. 6
                "options": meta.get("options") or {},
                "exclude": _sorted_groups((meta.get("data") or {}).get("exclude"))}
    wanted = {"latent_dim": spec.latent_dim or modality.default_latent_dim, "epochs": spec.epochs or d.epochs,
              "recognizer_epochs": spec.recognizer_epochs or d.recognizer_epochs,
              "batch_size": spec.batch_size or d.batch_size, "lr": spec.lr or d.lr,
              "kl_weight": d.kl_weight if spec.kl_weight is None else spec.kl_weight, "seed": spec.seed,
              "vae_target": spec.vae_target or d.vae_target,
              "options": modality.options.model_dump(mode="json"), "exclude": _sorted_groups(spec.exclude)}
    return _differences(recorded, wanted)


def link_changes(mg, spec: LinkSpec, graph, retrained: set[str]) -> list[str]:
    """Why the link's associators must be trained; empty when both (or the one) are up to date."""
    reasons = [f"{name} is retrained in stage 1" for name in (spec.source, spec.target) if name in retrained]
    if reasons:
        return reasons
    for source, target in spec.directions():
        if not graph.has_edge(source, target):
            reasons.append(f"no associator {source} -> {target}")
            continue
        edge = graph.edges[source, target]
        if edge.get("stale"):
            reasons.append(f"{source} -> {target} is stale (a modality was retrained after it was linked)")
            continue
        d = mg.modality(target).training_defaults
        training = edge.get("training") or {}
        recorded = {"pairing": edge.get("pairing"), "paired_fraction": edge.get("paired_fraction"),
                    **{k: training.get(k) for k in ("epochs", "batch_size", "lr", "kl_weight", "seed")},
                    "exclude": _sorted_groups(training.get("exclude"))}
        wanted = {"pairing": spec.pairing, "paired_fraction": spec.paired_fraction,
                  "epochs": spec.epochs or d.link_epochs, "batch_size": spec.batch_size or d.batch_size,
                  "lr": spec.lr or d.lr, "kl_weight": d.kl_weight if spec.kl_weight is None else spec.kl_weight,
                  "seed": spec.seed, "exclude": _sorted_groups(spec.exclude)}
        reasons += [f"{source} -> {target}: {r}" for r in _differences(recorded, wanted)]
    return reasons


# -- the plan ----------------------------------------------------------------------------------------
def make_plan(mg, spec: GraphSpec, registry_arg: str | Path | None = None,
              data_root_arg: str | Path | None = None) -> dict:
    """Stage 1: one ``add-modality`` job per node to (re)train; stage 2: one ``link`` job per link.

    Jobs within a stage are independent; a stage-2 job ``needs`` the stage-1 jobs of its
    two modalities. Jobs whose result the registry already holds (same settings, not
    stale) are listed under ``up_to_date`` instead. Every command names the registry
    (and the data root, when given), so it lands in the same place from any folder.
    """
    registry = Path(registry_arg if registry_arg is not None else mg.registry.root).resolve()
    common = ["--registry", str(registry)]
    if data_root_arg is not None:
        common += ["--data-root", str(Path(data_root_arg).resolve())]
    common += spec.args
    in_registry = set(mg.registry.node_names())
    for link in spec.links:
        for name in (link.source, link.target):
            if name not in spec.modalities and name not in in_registry:
                raise ConfigError(f"the link {link.source} -- {link.target} needs modality {name!r}, which is "
                                  f"neither under [modalities] in the spec nor in registry {registry}; add "
                                  f"[modalities.{name}] to the spec")
    nodes, links, up_to_date, retrained = [], [], [], set()
    for name, node_spec in spec.modalities.items():
        argv = node_argv(name, node_spec) + common + node_spec.args
        job = {"id": f"node:{name}", "kind": "add-modality", "modality": name, "argv": argv,
               "command": shlex.join(argv)}
        reasons = node_changes(mg, name, node_spec)
        if reasons:
            retrained.add(name)
            nodes.append({**job, "reasons": reasons})
        else:
            up_to_date.append(job)
    graph = mg.graph()
    for link in spec.links:
        argv = link_argv(link) + common + link.args
        job = {"id": f"link:{link.source}--{link.target}", "kind": "link", "source": link.source,
               "target": link.target, "argv": argv, "command": shlex.join(argv)}
        reasons = link_changes(mg, link, graph, retrained)
        if reasons:
            needs = [f"node:{n}" for n in (link.source, link.target) if n in retrained]
            links.append({**job, "needs": needs, "reasons": reasons})
        else:
            up_to_date.append(job)
    return {"registry": str(registry),
            "stages": [{"stage": 1, "kind": "add-modality", "jobs": nodes},
                       {"stage": 2, "kind": "link", "jobs": links}],
            "up_to_date": up_to_date}


def plan_lines(plan: dict) -> list[str]:
    """The plan as shell lines: a comment per stage, then one command per job."""
    lines = []
    for stage in plan["stages"]:
        jobs = stage["jobs"]
        after = ", after stage 1 has finished" if stage["stage"] == 2 else ""
        lines.append(f"# stage {stage['stage']}: {len(jobs)} {stage['kind']} job(s), independent "
                     f"(run them in parallel{after})")
        lines += [job["command"] for job in jobs]
    if plan["up_to_date"]:
        lines.append(f"# up to date, not run: {', '.join(job['id'] for job in plan['up_to_date'])}")
    return lines
