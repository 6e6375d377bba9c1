"""Plugins use modgraph's public surface only, and their modules do not import each other in a loop."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import modgraph

PLUGINS = Path(__file__).resolve().parent.parent / "plugins"
MODULES = sorted(PLUGINS.glob("*/modgraph_*/**/*.py"))


def imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) of every import statement in a file, top-level or inside functions."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            found.append((node.module, [alias.name for alias in node.names]))
    return found


def module_name(path: Path) -> str:
    package_root = next(p for p in path.parents if p.name.startswith("modgraph_")).parent
    return ".".join(path.relative_to(package_root).with_suffix("").parts).removesuffix(".__init__")


def test_there_are_plugin_modules():
    assert {module_name(p) for p in MODULES} >= {"modgraph_audio.fsdd", "modgraph_vision.mnist", "modgraph_text.text"}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PLUGINS)))
def test_plugins_import_only_the_public_modgraph_package(path):
    for module, names in imports(path):
        if module == "modgraph" or module.startswith("modgraph."):
            assert module == "modgraph", f"{path} imports {module}; plugins import from `modgraph` only"
            missing = set(names) - set(modgraph.__all__)
            assert not missing, f"{path} imports {sorted(missing)}, which `modgraph` does not export"


def test_every_public_name_resolves():
    for name in modgraph.__all__:
        assert getattr(modgraph, name) is not None


def test_every_error_is_exported():
    from modgraph import errors

    defined = {name for name, value in vars(errors).items()
               if isinstance(value, type) and issubclass(value, errors.ModgraphError)}
    assert defined <= set(modgraph.__all__)


@pytest.mark.parametrize("package", sorted({module_name(p).split(".")[0] for p in MODULES}))
def test_plugin_modules_do_not_import_each_other_in_a_loop(package):
    graph = {module_name(p): {m for m, _ in imports(p) if m.startswith(package + ".")}
             for p in MODULES if module_name(p).startswith(package)}

    def visit(node: str, trail: tuple[str, ...]) -> None:
        assert node not in trail, f"import loop: {' -> '.join((*trail[trail.index(node):], node))}"
        for after in graph.get(node, ()):
            visit(after, (*trail, node))

    for start in graph:
        visit(start, ())


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PLUGINS)))
def test_plugins_take_field_from_modgraph(path):
    """``from modgraph import Field``: everything a plugin needs for its options comes from modgraph."""
    for module, names in imports(path):
        assert not (module == "pydantic" and "Field" in names), f"{path} imports Field from pydantic, not modgraph"
