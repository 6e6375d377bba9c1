"""The layout shows the layers: no import loop in modgraph/, function-level imports included,
every module docs/architecture.md names exists, and no function or constant is defined twice."""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "modgraph"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imported(node: ast.AST, here: str, known: set[str]) -> set[str]:
    """The modgraph modules an import statement names (``from modgraph.x import y`` may name module x.y)."""
    found = set()
    if isinstance(node, ast.Import):
        found |= {a.name for a in node.names if a.name in known}
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.startswith("modgraph"):
        base = node.module
        for alias in node.names:
            if f"{base}.{alias.name}" in known:
                found.add(f"{base}.{alias.name}")
            elif base in known:
                found.add(base)
    return found - {here}


def import_graph() -> nx.DiGraph:
    mods = modules()
    graph = nx.DiGraph()
    graph.add_nodes_from(mods)
    for name, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text())):
            for target in imported(node, name, set(mods)):
                if target != "modgraph":  # the package facade re-exports lazily, by name
                    graph.add_edge(name, target)
    return graph


def test_no_import_loop_even_through_function_level_imports():
    cycles = list(nx.simple_cycles(import_graph()))
    assert not cycles, f"import loops in modgraph/: {cycles[:5]}"


def test_the_core_is_layered_into_subpackages():
    top = sorted(p.stem for p in PACKAGE.glob("*.py"))
    # the facade, the plugin contract and the public kit stay at the top; the rest lives in its layer
    assert len(top) <= 12, top
    for layer in ("app", "learning", "inference", "storage", "features", "runtime"):
        assert (PACKAGE / layer / "__init__.py").exists(), layer


def test_architecture_names_only_modules_that_exist():
    text = (ROOT / "docs" / "architecture.md").read_text()
    named = set(re.findall(r"`(modgraph(?:/[a-z_]+)+\.py)`", text))
    assert named, "docs/architecture.md names no module by its path"
    missing = sorted(n for n in named if not (ROOT / n).exists())
    assert not missing, f"docs/architecture.md names modules that do not exist: {missing}"
    every = {str(p.relative_to(ROOT)) for p in PACKAGE.rglob("*.py") if p.name != "__init__.py"}
    unnamed = sorted(every - named)
    assert not unnamed, f"docs/architecture.md does not name these modules: {unnamed}"


def test_no_function_or_constant_defined_twice_in_the_core():
    seen = defaultdict(list)
    for name, path in modules().items():
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not node.name.startswith("_"):
                seen[node.name].append(name)
            elif isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Name) and target.id.isupper() and not target.id.startswith("_"):
                        seen[target.id].append(name)
    twice = {k: v for k, v in seen.items() if len(v) > 1}
    assert not twice, f"defined in more than one module: {twice}"
