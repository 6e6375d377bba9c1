"""A registry's model card: a README.md that says what is in it, written from file headers alone.

Nodes with their data, options, metrics and training settings; edges with pairing and
accuracy; a mermaid picture of the graph; the datasets' licences; the commands that retrain it.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping

import networkx as nx

from modgraph.app.cli_options import settings_argv
from modgraph.errors import printable
from modgraph.storage.outputs import check_output, write_bytes_atomically
from modgraph.storage.registry import Registry
from modgraph.settings import LinkSettings, NodeSettings

# Link settings whose unset value is resolved per target (or source) modality: a value both
# directions share was given, or agrees with the defaults; one that differs was each side's default.
_PER_MODALITY = [name for name, field in LinkSettings.model_fields.items() if field.default is None]


def _pct(value) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def _cell(value) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _number(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _settings(model, values: dict):
    """``values`` as settings, unvalidated: a header is shown as it is, whatever wrote it."""
    return model.model_construct(**{k: v for k, v in values.items() if k in model.model_fields and v is not None})


def node_command(name: str, meta: dict, default_options: dict | None = None) -> str:
    """The ``modgraph add-modality`` line that retrains node ``name`` as its header records it.

    ``default_options``: the plugin's option defaults, to leave out options that equal them
    (None: the plugin is not installed here, every stored option is written out).
    """
    t = meta.get("training") or {}
    options = {key: value for key, value in sorted((meta.get("options") or {}).items())
               if default_options is None or default_options.get(key) != value}
    settings = _settings(NodeSettings, {**t, "latent_dim": ((meta.get("config") or {}).get("vae") or {}).get(
        "latent_dim"), "options": options, "exclude": (meta.get("data") or {}).get("exclude") or {}})
    argv = ["modgraph", "add-modality", name, *settings_argv(settings)]
    if t.get("precision") not in (None, "fp32"):
        argv += ["--precision", str(t["precision"])]
    if (t.get("processes") or 1) > 1:
        argv += ["--nproc", str(t["processes"])]
    return shlex.join(argv)


def link_command(source: str, target: str, forward: dict, backward: dict | None) -> str:
    """The ``modgraph link`` line for the edge ``source -> target`` (and back, when ``backward`` is given)."""
    t, back = forward.get("training") or {}, (backward or {}).get("training") or {}
    shared = {k: v for k, v in t.items() if k not in _PER_MODALITY or backward is None or back.get(k) == v}
    settings = _settings(LinkSettings, {**shared, "pairing": forward.get("pairing"),
                                        "paired_fraction": forward.get("paired_fraction"),
                                        "exclude": t.get("exclude") or {}, "one_way": backward is None})
    return shlex.join(["modgraph", "link", source, target, *settings_argv(settings)])


def reproduce_commands(graph: nx.DiGraph, default_options: Mapping[str, dict] | None = None) -> list[str]:
    """Shell lines that retrain the graph: every node, then every link (a pair trained together in one line)."""
    default_options = default_options or {}
    lines = [node_command(name, meta, default_options.get(name)) for name, meta in sorted(graph.nodes(data=True))]
    done = set()
    # A pair linked together is named in the order it was linked: its first-written direction.
    for source, target in sorted(graph.edges(), key=lambda e: (graph.edges[e].get("created") or "", e)):
        if (source, target) in done:
            continue
        backward = graph.edges[target, source] if graph.has_edge(target, source) else None
        lines.append(link_command(source, target, graph.edges[source, target], backward))
        done.update({(source, target), (target, source)})
    return lines


def mermaid(graph: nx.DiGraph) -> str:
    """The graph as a mermaid flowchart: nodes with their latent size, edges with their accuracy."""
    lines = ["```mermaid", "flowchart LR"]
    for name, meta in sorted(graph.nodes(data=True)):
        latent = ((meta.get("config") or {}).get("vae") or {}).get("latent_dim")
        lines.append(f'  {name}["{name}<br/>latent {latent}"]')
    for source, target, meta in sorted(graph.edges(data=True)):
        arrow = "-.->" if meta.get("stale") else "-->"
        label = _pct((meta.get("metrics") or {}).get("accuracy")) + (" stale" if meta.get("stale") else "")
        lines.append(f'  {source} {arrow}|"{label}"| {target}')
    lines.append("```")
    return "\n".join(lines)


def _node_section(name: str, meta: dict) -> list[str]:
    m, t, d = meta.get("metrics") or {}, meta.get("training") or {}, meta.get("data") or {}
    history = t.get("history") or []
    seconds = sum(h.get("seconds") or 0 for h in history)
    classes = [c.get("name") for c in meta.get("classes") or []]
    lines = [f"### {name}", "",
             f"- plugin: {meta.get('plugin')} {meta.get('plugin_version')} (modgraph {meta.get('modgraph_version')}); "
             f"written {meta.get('created')}",
             f"- classes ({len(classes)}): {', '.join(_cell(c) for c in classes)}",
             f"- metrics: recognizer test accuracy {_pct(m.get('recognizer_accuracy'))}, VAE reconstruction "
             f"accuracy {_pct(m.get('reconstruction_accuracy'))} (n={m.get('test_samples')}), "
             f"validation loss {_number(m.get('val_loss'))}",
             f"- data: {d.get('train_rows')} training rows ({d.get('augmented_rows')} augmented), "
             f"{d.get('val_samples')} validation, {d.get('test_samples')} test"
             + (f"; excluded {_cell(d.get('exclude'))}" if d.get("exclude") else ""),
             f"- options: `{_cell(meta.get('options') or {})}`",
             f"- training: {t.get('epochs')} VAE epochs, {t.get('recognizer_epochs')} recognizer epochs, batch "
             f"{t.get('batch_size')}, lr {_number(t.get('lr'))}, kl_weight {_number(t.get('kl_weight'))}, "
             f"vae_target {t.get('vae_target')}, seed {t.get('seed')}, {t.get('precision')} on {t.get('device')} "
             f"x{t.get('processes')}" + (f", {seconds:.1f} s of VAE training" if seconds else ""),
             ""]
    return lines


def _edge_rows(graph: nx.DiGraph) -> list[str]:
    rows = ["| associator | pairing | paired fraction | test accuracy | validation accuracy | epochs (kept) | seed | state |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for source, target, meta in sorted(graph.edges(data=True)):
        m, t = meta.get("metrics") or {}, meta.get("training") or {}
        rows.append(f"| {source} → {target} | {meta.get('pairing')} | {meta.get('paired_fraction')} | "
                    f"{_pct(m.get('accuracy'))} (n={m.get('test_samples')}) | {_pct(m.get('val_accuracy'))} | "
                    f"{t.get('epochs')} ({t.get('epoch_kept')}) | {t.get('seed')} | "
                    f"{'stale: re-link' if meta.get('stale') else 'current'} |")
    return rows


def _dataset(meta: dict, modality) -> dict | None:
    """A node's dataset facts: as its header records them, else as the installed plugin states them."""
    stored = meta.get("dataset")
    if isinstance(stored, dict) and stored.get("name"):
        return stored
    info = getattr(modality, "dataset", None)
    return None if info is None else info.model_dump()


def card_modalities(registry: Registry) -> Mapping[str, object]:
    """The installed modalities, loaded only when a node's header does not state its dataset:
    loading plugins imports torch, and ``modgraph card`` answers from headers."""
    if all(isinstance(meta.get("dataset"), dict) for _, meta in registry.graph().nodes(data=True)):
        return {}
    from modgraph.plugins import PluginHost

    return PluginHost().modalities()


def _dataset_rows(graph: nx.DiGraph, modalities: Mapping[str, object]) -> list[str]:
    rows = ["| modality | dataset | licence (as the plugin states it) | source | citation |",
            "| --- | --- | --- | --- | --- |"]
    for name, meta in sorted(graph.nodes(data=True)):
        modality = modalities.get(name)
        info = _dataset(meta, modality)
        if info is not None:
            rows.append(f"| {name} | {_cell(info.get('name'))} | {_cell(info.get('licence'))} | "
                        f"{_cell(info.get('url', ''))} | {_cell(info.get('citation', ''))} |")
        elif modality is None:
            rows.append(f"| {name} | plugin {meta.get('plugin')} not installed here | not stated | | |")
        else:
            rows.append(f"| {name} | not stated by {meta.get('plugin')} | not stated | | |")
    return rows


# Licences as plugins state them (``CC BY-SA 4.0; ...``) -> the identifiers a model hub's card header takes.
_HUB_LICENCES = {"mit": "mit", "apache-2.0": "apache-2.0", "cc0 1.0": "cc0-1.0", "cc by 4.0": "cc-by-4.0",
                 "cc by-sa 3.0": "cc-by-sa-3.0", "cc by-sa 4.0": "cc-by-sa-4.0", "cc by-nc 4.0": "cc-by-nc-4.0",
                 "cc by-nc-sa 4.0": "cc-by-nc-sa-4.0"}


def _hub_licence(datasets: list[dict | None]) -> str:
    """One hub licence identifier when every dataset states the same known one alone, else ``other``."""
    found = {_HUB_LICENCES.get(str((d or {}).get("licence", "")).strip().lower()) for d in datasets}
    return found.pop() if len(found) == 1 and None not in found else "other"


def hub_metadata(graph: nx.DiGraph, modalities: Mapping[str, object]) -> str:
    """The card's YAML front matter in the Hugging Face model-card format, so a hub shows its
    licence, datasets, tags and metrics (strings are written as JSON, which YAML reads as they are)."""
    datasets = [_dataset(meta, modalities.get(name)) for name, meta in sorted(graph.nodes(data=True))]
    names = sorted({d["name"] for d in datasets if d})
    tags = ["modgraph", "cross-modal", "vae", *sorted(graph.nodes)]
    lines = ["---", "library_name: modgraph", f"license: {_hub_licence(datasets)}"]
    if lines[-1].endswith("other"):
        lines += ["license_name: see-datasets", "license_link: LICENSE"]
    lines += ["datasets:", *(f"- {json.dumps(n)}" for n in names)] if names else ["datasets: []"]
    lines += ["tags:", *(f"- {json.dumps(t)}" for t in tags), "metrics:", "- accuracy", "---", ""]
    return "\n".join(lines)


def model_card(registry: Registry, modalities: Mapping[str, object] | None = None,
               only: list[str] | None = None) -> str:
    """The markdown card of ``registry``, read from headers (no tensor is loaded).

    ``modalities``: installed modalities by name (``PluginHost().modalities()``), for the
    datasets' licences and the option defaults left out of the commands; missing ones are said so.
    ``only``: describe the subgraph of these modalities (the nodes and the edges between them).
    """
    modalities = modalities or {}
    graph = registry.graph()
    if only is not None:
        graph = graph.subgraph(only).copy()
    defaults = {name: m.options_model().model_dump(mode="json") for name, m in modalities.items()
                if hasattr(m, "options_model")}
    versions = sorted({(meta.get("plugin"), meta.get("plugin_version")) for _, meta in graph.nodes(data=True)})
    core = sorted({meta.get("modgraph_version") for *_, meta in [*graph.nodes(data=True), *graph.edges(data=True)]}
                  - {None})
    lines = [hub_metadata(graph, modalities),
             f"# modgraph registry: {graph.number_of_nodes()} modalities, {graph.number_of_edges()} associators", "",
             "Written by `modgraph card` from the registry's file headers. Translate with "
             "`modgraph translate --from A --to B FILE`; measure with `modgraph eval --from A --to B`.", "",
             f"- plugins: {', '.join(f'{p} {v}' for p, v in versions) or 'none'}",
             f"- modgraph versions that wrote the files: {', '.join(core) or 'none'}", "",
             "## Graph", "", mermaid(graph), "",
             "Edge labels: test accuracy of the translation as the target's recognizer reads it; dashed: stale "
             "(an endpoint was retrained after linking; routing skips it).", "",
             "## Modalities", ""]
    for name, meta in sorted(graph.nodes(data=True)):
        lines += _node_section(name, meta)
    lines += ["## Associators", ""]
    lines += _edge_rows(graph) if graph.number_of_edges() else ["None."]
    lines += ["", "## Datasets", ""]
    lines += _dataset_rows(graph, modalities) if graph.number_of_nodes() else ["None."]
    lines += ["", "## Reproduce", "",
              "Each node, then each link, as recorded in the headers (give `--data-root` where the datasets are):",
              "", "```sh", *reproduce_commands(graph, defaults), "```", ""]
    return printable("\n".join(lines), keep="\n")  # header strings may hold terminal escapes


def describe_graph(registry: Registry) -> dict:
    """Nodes and edges with their metrics, as plain data (``modgraph graph``), from headers alone."""
    g = registry.graph()
    nodes = [{"name": n, "plugin": d.get("plugin"), "latent_dim": (d.get("config") or {}).get("vae", {})
              .get("latent_dim"), "options": d.get("options"), "metrics": d.get("metrics"),
              "classes": [str(c.get("name")) for c in d.get("classes") or [] if isinstance(c, dict)],
              "created": d.get("created")} for n, d in g.nodes(data=True)]
    edges = [{"source": a, "target": b, "pairing": d.get("pairing"), "paired_fraction": d.get("paired_fraction"),
              "metrics": d.get("metrics"), "stale": d.get("stale"), "created": d.get("created")}
             for a, b, d in g.edges(data=True)]
    return {"registry": str(registry.root), "nodes": nodes, "edges": edges}


def write_card(graph, output=None) -> str:
    """The card of a :class:`Registry` (or a :class:`modgraph.api.ModGraph`'s registry, with its plugins' dataset
    facts); written to ``output`` if given."""
    if output is not None:
        check_output(output)  # a FIFO or a device is refused before the card is made, never opened
    if isinstance(graph, Registry):
        text = model_card(graph, card_modalities(graph))
    else:
        text = model_card(graph.registry, graph.available_modalities())
    if output is not None:
        write_bytes_atomically(output, text.encode("utf-8"))
    return text
