"""Routing over hand-built graphs: shortest paths, ties by accuracy, --via, stale edges, errors."""

from __future__ import annotations

import networkx as nx
import pytest

from modgraph.errors import NoRouteError, NotInRegistryError
from modgraph.inference.routing import find_route, usable


def graph(*edges, nodes=()) -> nx.DiGraph:
    """Edges as (source, target) or (source, target, accuracy) or (source, target, accuracy, stale)."""
    g = nx.DiGraph()
    g.add_nodes_from(nodes)
    for edge in edges:
        a, b, *rest = edge
        attrs = {}
        if rest and rest[0] is not None:
            attrs["metrics"] = {"accuracy": rest[0]}
        if len(rest) > 1:
            attrs["stale"] = rest[1]
        g.add_edge(a, b, **attrs)
    return g


def test_direct_edge_is_the_route():
    assert find_route(graph(("a", "b"), ("b", "a")), "a", "b") == ["a", "b"]


def test_cascade_when_there_is_no_direct_edge():
    g = graph(("a", "b"), ("b", "c"), ("c", "b"), ("b", "a"))
    assert find_route(g, "a", "c") == ["a", "b", "c"]
    assert find_route(g, "c", "a") == ["c", "b", "a"]


def test_shortest_path_wins_over_a_more_accurate_longer_one():
    g = graph(("a", "d", 0.5), ("a", "b", 1.0), ("b", "c", 1.0), ("c", "d", 1.0))
    assert find_route(g, "a", "d") == ["a", "d"]


@pytest.mark.parametrize("better", ["b", "c"])
def test_equal_length_paths_go_to_the_higher_product_of_accuracies(better):
    worse = "c" if better == "b" else "b"
    g = graph(("a", better, 0.9), (better, "d", 0.9), ("a", worse, 1.0), (worse, "d", 0.8))  # 0.81 > 0.80
    assert find_route(g, "a", "d") == ["a", better, "d"]


def test_an_edge_without_metrics_counts_as_half():
    g = graph(("a", "b", None), ("b", "d", 1.0), ("a", "c", 0.6), ("c", "d", 0.9))  # 0.5 < 0.54
    assert find_route(g, "a", "d") == ["a", "c", "d"]
    g = graph(("a", "b", float("nan")), ("b", "d", 1.0), ("a", "c", 0.6), ("c", "d", 0.8))  # 0.5 > 0.48
    assert find_route(g, "a", "d") == ["a", "b", "d"]


def test_via_forces_the_path_through_the_given_stops_in_order():
    g = graph(("a", "d"), ("a", "b"), ("b", "d"), ("d", "c"), ("c", "d"), ("b", "c"))
    assert find_route(g, "a", "d") == ["a", "d"]
    assert find_route(g, "a", "d", via=["b"]) == ["a", "b", "d"]
    assert find_route(g, "a", "d", via=["b", "c"]) == ["a", "b", "c", "d"]
    assert find_route(g, "a", "d", via="b c".split()) == ["a", "b", "c", "d"]
    with pytest.raises(NoRouteError, match="from d to b"):
        find_route(g, "a", "d", via=["d", "b"])  # each leg must exist


def test_same_source_and_target_is_the_node_itself():
    assert find_route(graph(nodes=["a"]), "a", "a") == ["a"]
    assert find_route(graph(("a", "b"), ("b", "a")), "a", "a", via=["b"]) == ["a", "b", "a"]


def test_no_route_lists_reachable_modalities_and_suggests_link():
    g = graph(("a", "b"), ("b", "c"), nodes=["d"])
    with pytest.raises(NoRouteError) as info:
        find_route(g, "a", "d")
    message = str(info.value)
    assert "no associator path from a to d" in message
    assert "reachable from a: b, c" in message
    assert "modgraph link a d" in message
    with pytest.raises(NoRouteError, match="reachable from d: nothing"):
        find_route(g, "d", "a")


def test_stale_edges_are_skipped_and_named():
    g = graph(("a", "b", 1.0, True), ("b", "a", 1.0, False))
    assert list(usable(g).edges) == [("b", "a")]
    with pytest.raises(NoRouteError) as info:
        find_route(g, "a", "b")
    assert "stale" in str(info.value) and "a->b" in str(info.value)
    assert find_route(g, "b", "a") == ["b", "a"]


def test_a_stale_shortcut_falls_back_to_a_longer_fresh_path():
    g = graph(("a", "c", 1.0, True), ("a", "b", 0.9, False), ("b", "c", 0.9, False))
    assert find_route(g, "a", "c") == ["a", "b", "c"]


def test_a_modality_not_in_the_graph_is_not_in_registry():
    g = graph(("a", "b"))
    for args in (("x", "b"), ("a", "x"), ("a", "b", ["x"])):
        with pytest.raises(NotInRegistryError) as info:
            find_route(g, *args)
        assert "'x'" in str(info.value) and "a, b" in str(info.value)
        assert "modgraph add-modality x" in str(info.value)
