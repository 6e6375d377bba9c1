"""``modgraph new-plugin`` writes, for each kind of data, a plugin that installs, passes the kit, trains and links.

One kind goes the whole real path, ``pip install`` (no network, no build isolation, into a folder
of its own rather than the shared environment) and the entry point in a fresh ``modgraph`` process; the others are put on ``sys.path`` and added to a
plugin host, which the entry point would do the same way.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from modgraph.api import ModGraph
from modgraph.app.cli import main
from modgraph.app.new_plugin import KINDS, new_plugin
from modgraph.errors import ConfigError

FAST = {"epochs": 2, "recognizer_epochs": 2}


def _load(folder: Path, name: str):
    """The generated package, imported from ``folder`` (removed from sys.path and sys.modules afterwards)."""
    sys.path.insert(0, str(folder))
    importlib.invalidate_caches()
    return importlib.import_module(f"modgraph_{name}")


@pytest.fixture
def generated(tmp_path):
    """Writes generated plugins and forgets their modules when the test ends."""
    names = []

    def make(name: str, kind: str) -> Path:
        names.append(name)
        new_plugin(name, kind, tmp_path / "plugins")
        return tmp_path / "plugins" / f"modgraph-{name}"

    yield make
    for name in names:
        for module in [m for m in sys.modules if m == f"modgraph_{name}" or m.startswith(f"modgraph_{name}.")]:
            del sys.modules[module]
    sys.path[:] = [p for p in sys.path if not p.startswith(str(tmp_path))]


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_kind_passes_its_tests_trains_and_links_to_a_toy_node(kind, generated, toy_host, toy_data, tmp_path):
    name = f"new{kind}"
    folder = generated(name, kind)
    assert {p.name for p in folder.iterdir()} == {"pyproject.toml", "README.md", f"modgraph_{name}", "tests"}
    _imports_only_the_public_modgraph_package(folder / f"modgraph_{name}")
    package = _load(folder, name)
    own_tests = _module_from(folder / "tests" / f"test_{name}.py")
    own_tests.test_registers_through_the_hook()
    own_tests.test_the_kit_passes_on_the_generated_data(tmp_path / "generated")  # the kit, learnability included
    own_tests.test_the_kit_passes_on_files(tmp_path / "files")

    toy_host.add_plugin(package, name=name, distribution=f"modgraph-{name}", version=package.__version__)
    graph = ModGraph(device="cpu", progress=False, plugins=toy_host)
    report = graph.add_modality(name, **FAST)
    assert 0.0 <= report["metrics"]["reconstruction_accuracy"] <= 1.0
    graph.add_modality("toyimg", **FAST)
    linked = graph.link(name, "toyimg", epochs=1)
    assert set(linked["metrics"]) == {f"{name}->toyimg", f"toyimg->{name}"}


def _imports_only_the_public_modgraph_package(package: Path):
    import ast

    import modgraph

    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                assert node.module == "modgraph" or not node.module.startswith(("modgraph.", "pydantic")), \
                    f"{path.name} imports from {node.module}"
                if node.module == "modgraph":
                    assert {a.name for a in node.names} <= set(modgraph.__all__), f"{path.name}: {ast.unparse(node)}"


def _module_from(path: Path):
    spec = importlib.util.spec_from_file_location(f"generated_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_entry_point_is_found_after_pip_install(generated, tmp_path):
    """The real path: pip builds and installs the package (offline) into a folder of its own, which a new
    process finds on its path: modgraph loads the plugin through its entry point. The shared environment
    is left alone (the folder is not .venv's site-packages)."""
    folder, site = generated("newpip", "vector"), tmp_path / "site"
    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(site), str(folder)], check=True, env=env, capture_output=True, cwd=tmp_path)
    assert (site / "modgraph_newpip" / "modality.py").is_file()
    env.update(PYTHONPATH=str(site), MODGRAPH_LOAD_PLUGINS="modgraph-newpip")
    listed = subprocess.run([sys.executable, "-m", "modgraph", "plugins"], env=env, capture_output=True, text=True,
                            cwd=tmp_path)
    assert listed.returncode == 0 and "modgraph-newpip 0.1.0: newpip" in listed.stdout, listed.stdout + listed.stderr


def test_the_cli_writes_the_package_and_refuses_what_it_cannot(tmp_path):
    result = CliRunner().invoke(main, ["new-plugin", "tones", "--kind", "audio", "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "modgraph-tones" / "modgraph_tones" / "modality.py").is_file()
    assert "pip install -e" in result.output
    again = CliRunner().invoke(main, ["new-plugin", "tones", "--dir", str(tmp_path)])
    assert again.exit_code != 0 and "exists already" in again.output
    with pytest.raises(ConfigError, match="must be a modality name"):
        new_plugin("Tones", "audio", tmp_path)
