"""The registry's graph drawn as a PNG (matplotlib and networkx): each node with its data and its
recognizer's accuracy, each associator with its measured translation accuracy.
"""

from __future__ import annotations

from pathlib import Path

import networkx as nx


def _percent(value) -> str:
    return f"{100 * value:.1f}%" if isinstance(value, (int, float)) else "?"


def node_label(name: str, meta: dict, dataset: str | None) -> str:
    metrics = meta.get("metrics") or {}
    lines = [name]
    if dataset:
        lines.append(dataset if len(dataset) <= 24 else dataset[:23] + "…")
    lines.append(f"recognizer {_percent(metrics.get('recognizer_accuracy'))}")
    return "\n".join(lines)


def draw_graph(graph: nx.DiGraph, out: Path, datasets: dict[str, str] | None = None) -> Path:
    """Write ``graph`` to the PNG ``out``; ``datasets`` names each node's data (default: its plugin)."""
    from matplotlib.figure import Figure

    datasets = datasets or {}
    fig = Figure(figsize=(7, 4.5), dpi=100)
    ax = fig.add_subplot()
    ax.set_axis_off()
    if len(graph) == 0:
        ax.text(0.5, 0.5, "the registry is empty: train a modality with modgraph add-modality", ha="center")
    else:
        positions = nx.circular_layout(graph) if len(graph) > 2 else nx.spring_layout(graph, seed=0)
        labels = {n: node_label(n, d, datasets.get(n) or d.get("plugin")) for n, d in graph.nodes(data=True)}
        nx.draw_networkx_nodes(graph, positions, ax=ax, node_size=4200, node_color="#dbeafe", edgecolors="#1d4ed8")
        nx.draw_networkx_labels(graph, positions, labels=labels, ax=ax, font_size=7)
        current = [(a, b) for a, b, d in graph.edges(data=True) if not d.get("stale")]
        stale = [(a, b) for a, b, d in graph.edges(data=True) if d.get("stale")]
        for edges, style in ((current, "solid"), (stale, "dashed")):
            nx.draw_networkx_edges(graph, positions, edgelist=edges, ax=ax, style=style, node_size=4200,
                                   arrowsize=14, connectionstyle="arc3,rad=0.12")
        edge_labels = {(a, b): _percent((d.get("metrics") or {}).get("accuracy")) + (" stale" if d.get("stale") else "")
                       for a, b, d in graph.edges(data=True)}
        nx.draw_networkx_edge_labels(graph, positions, edge_labels=edge_labels, ax=ax, font_size=7,
                                     connectionstyle="arc3,rad=0.12", label_pos=0.3)
        ax.margins(0.15)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out
