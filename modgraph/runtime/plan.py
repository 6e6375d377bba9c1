"""A graph's training as independent jobs: the nodes first, then the associators between them.

A graph spec (TOML or JSON) names modalities with their settings and the links between
them; :func:`make_plan` turns it into stages of ``modgraph`` command lines that any
scheduler can run in parallel, leaving out what the registry already holds up to date.
"""

from __future__ import annotations

import shlex
from pathlib import Path


from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from modgraph.app.cli_options import settings_argv
from modgraph.errors import ConfigError, DataNotFoundError, NotInRegistryError, validation_message
from modgraph.settings import LinkSpec, NodeSettings, NodeSpec
from modgraph.storage.safe_io import load_bounded

class GraphSpec(BaseModel):
    """Modalities by name, the links between them, and arguments every command gets (``args``)."""

    model_config = ConfigDict(extra="forbid")
    modalities: dict[str, NodeSpec] = Field(default_factory=dict)
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
        raw = load_bounded(path, "the graph spec", ConfigError)  # size and nesting bounded, never a FIFO
    except FileNotFoundError:
        raise ConfigError(f"cannot read the graph spec {path}: no such file") from None
    try:
        return GraphSpec.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(validation_message(f"graph spec {path}", exc)) from None


def node_spec_in(path: str | Path, name: str) -> NodeSpec | None:
    """NAME's table in a graph spec (``modgraph tune`` writes one), or None when ``path`` is not a graph spec.

    ``add-modality --options-file`` reads both: a TOML of modality options, or a graph spec
    whose ``[modalities.NAME]`` table gives every setting.
    """
    try:  # bounded, and never a FIFO or a device
        raw = load_bounded(path, "the options file", ConfigError)
    except (OSError, ConfigError):
        return None  # not a spec we can read: read as options, which reports the problem
    if not (isinstance(raw, dict) and {"modalities", "links"} & set(raw)):
        return None
    spec = read_spec(path)
    if name not in spec.modalities:
        raise ConfigError(f"the graph spec {path} has no [modalities.{name}] table; it has "
                          f"{', '.join(spec.modalities) or 'none'}")
    return spec.modalities[name]


def under_spec(spec: NodeSpec, settings: NodeSettings) -> NodeSettings:
    """``settings`` over a spec's: what the command line gives wins, options are merged key by key."""
    values = {**spec.settings().given(), **settings.given()}
    values["options"] = {**spec.options, **settings.options}
    return NodeSettings.parse(values)


# -- command lines -------------------------------------------------------------------------------
def node_argv(name: str, spec: NodeSpec) -> list[str]:
    return ["modgraph", "add-modality", name, *settings_argv(spec.settings())]


def link_argv(spec: LinkSpec) -> list[str]:
    return ["modgraph", "link", spec.source, spec.target, *settings_argv(spec.settings())]


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


def node_changes(mg, name: str, spec: NodeSpec) -> list[str]:
    """Why NAME's node must be (re)trained to match ``spec``; empty when it is up to date."""
    modality = mg.modality(name, spec.options or None)
    try:
        record = mg.registry.node_record(name)
    except NotInRegistryError:
        return ["not in the registry"]
    try:  # options add-modality settles from the data (gsc's words) are compared settled
        modality, _notes = modality.for_data(mg.data_root)
    except DataNotFoundError:
        pass  # the data is not here: compared as given
    wanted = spec.settings().resolve(modality).model_dump()
    training = record.training
    recorded = {**{k: training.get(k) for k in wanted},
                "latent_dim": record.latent_dim,
                "options": record.options or {},
                "exclude": _sorted_groups(record.data.get("exclude"))}
    wanted["exclude"] = _sorted_groups(wanted["exclude"])
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
        if graph.edges[source, target].get("stale"):
            reasons.append(f"{source} -> {target} is stale (a modality was retrained after it was linked)")
            continue
        record = mg.registry.edge_record(source, target)
        wanted = spec.settings().resolve(mg.modality(source), mg.modality(target)).model_dump()
        recorded = {**{k: record.training.get(k) for k in wanted}, "pairing": record.pairing,
                    "paired_fraction": record.paired_fraction,
                    "exclude": _sorted_groups(record.training.get("exclude"))}
        wanted["exclude"] = _sorted_groups(wanted["exclude"])
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
