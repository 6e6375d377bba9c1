"""Shortest associator paths through the graph; ties go to the better measured accuracy."""

from __future__ import annotations

import math

import networkx as nx

from modgraph.errors import NoRouteError, NotInRegistryError, did_you_mean


def usable(graph: nx.DiGraph) -> nx.DiGraph:
    """The graph without stale edges (an endpoint was retrained after linking)."""
    return nx.subgraph_view(graph, filter_edge=lambda a, b: not graph.edges[a, b].get("stale", False))


def _path_score(graph: nx.DiGraph, path: list[str]) -> float:
    score = 1.0
    for a, b in zip(path[:-1], path[1:]):
        acc = (graph.edges[a, b].get("metrics") or {}).get("accuracy")
        score *= acc if isinstance(acc, (int, float)) and not math.isnan(acc) else 0.5
    return score


def _shortest(graph: nx.DiGraph, source: str, target: str) -> list[str]:
    g = usable(graph)
    try:
        paths = list(nx.all_shortest_paths(g, source, target))
    except nx.NetworkXNoPath:
        reachable = sorted(nx.descendants(g, source))
        stale = [f"{a}->{b}" for a, b, d in graph.edges(data=True) if d.get("stale")]
        hint = f" (stale associators, retrain them with modgraph link: {', '.join(stale)})" if stale else ""
        raise NoRouteError(
            f"no associator path from {source} to {target}; reachable from {source}: "
            f"{', '.join(reachable) or 'nothing'}{hint}. Train one with: modgraph link {source} {target}") from None
    return max(paths, key=lambda p: _path_score(graph, p))


def find_route(graph: nx.DiGraph, source: str, target: str, via: list[str] | None = None) -> list[str]:
    """The modalities visited from source to target, both included."""
    for name in [source, target, *(via or [])]:
        if name not in graph:
            close = did_you_mean(name, graph.nodes)
            raise NotInRegistryError(f"modality {name!r} is not in the registry (it has: "
                                     f"{', '.join(sorted(graph.nodes)) or 'nothing'})"
                                     + (close or f"; train it with: modgraph add-modality {name}"))
    if source == target and not via:
        return [source]
    stops = [source, *(via or []), target]
    path = [source]
    for a, b in zip(stops[:-1], stops[1:]):
        path += _shortest(graph, a, b)[1:] if a != b else []
    return path
