"""Fixtures: an isolated environment per test, the toy plugin's data on disk, trained registries.

Every test gets its own registry, data root and feature cache under ``tmp_path`` and loads
no installed plugin unless it asks to; training happens once per session and is copied.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import toyplugin


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    """Registry, data and cache in ``tmp_path``; one thread; no installed entry point loads."""
    paths = {"registry": tmp_path / "registry", "data": tmp_path / "data", "cache": tmp_path / "cache"}
    monkeypatch.setenv("MODGRAPH_REGISTRY", str(paths["registry"]))
    monkeypatch.setenv("MODGRAPH_DATA", str(paths["data"]))
    monkeypatch.setenv("MODGRAPH_CACHE", str(paths["cache"]))
    monkeypatch.setenv("MODGRAPH_CONFIG", str(tmp_path / "config.toml"))  # never the user's own config file
    monkeypatch.setenv("MODGRAPH_NUM_THREADS", "1")
    monkeypatch.setenv("MODGRAPH_LOAD_PLUGINS", "")
    monkeypatch.chdir(tmp_path)  # default output folders (./translations) land in tmp_path too
    return paths


def _toy_host():
    from modgraph.plugins import PluginHost

    host = PluginHost(load_entry_points=False)
    host.add_plugin(toyplugin, name="toy", distribution=toyplugin.DISTRIBUTION, version=toyplugin.__version__)
    return host


def _graph(registry=None, data_root=None, cache_dir=None):
    from modgraph.api import ModGraph

    return ModGraph(registry=registry, data_root=data_root, cache_dir=cache_dir, device="cpu", progress=False,
                    plugins=_toy_host())


@pytest.fixture
def toy_host():
    """A plugin host holding only the toy plugin, added directly (no entry point)."""
    return _toy_host()


@pytest.fixture
def make_graph(isolated_env):
    """Builds ModGraphs with only the toy plugin; paths default to the test's environment."""
    return _graph


@pytest.fixture
def mg(isolated_env):
    """A ModGraph over the test's registry with only the toy plugin (no data written)."""
    return _graph()


@pytest.fixture(scope="session")
def toy_dataset(tmp_path_factory) -> Path:
    """The toy datasets, written once; tests copy them (``toy_data``) rather than share them."""
    return toyplugin.write_dataset(tmp_path_factory.mktemp("toy-dataset"))


@pytest.fixture
def toy_data(toy_dataset, isolated_env) -> Path:
    """The toy datasets at ``$MODGRAPH_DATA`` in their on-disk layout."""
    shutil.copytree(toy_dataset, isolated_env["data"])
    return isolated_env["data"]


@pytest.fixture(scope="session")
def trained_registry(tmp_path_factory, toy_dataset) -> Path:
    """A registry with all three toy modalities trained and toyimg<->toyaudio<->toycolor linked.

    toyaudio and toycolor share no concept, so they are linked with ``--pairing index``;
    there is no direct toyimg<->toycolor associator.
    """
    base = tmp_path_factory.mktemp("trained")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MODGRAPH_NUM_THREADS", "1")
        graph = _graph(registry=base / "registry", data_root=toy_dataset, cache_dir=base / "cache")
        for name in ("toyimg", "toyaudio", "toycolor"):
            graph.add_modality(name)
        graph.link("toyimg", "toyaudio")
        graph.link("toyaudio", "toycolor", pairing="index")
    return base / "registry"


@pytest.fixture
def trained(trained_registry, toy_data, isolated_env):
    """A ModGraph over a private copy of the trained registry, with the toy data in place."""
    shutil.copytree(trained_registry, isolated_env["registry"])
    return _graph()


@pytest.fixture
def install_distribution(tmp_path, monkeypatch):
    """Makes an installed-looking distribution (a dist-info folder on sys.path) with entry points.

    ``importlib.metadata`` finds it exactly as it finds a pip-installed plugin; the entry
    points name modules that must be importable (``toyplugin`` is, from the tests folder).
    """

    def install(name: str, version: str, entry_points: dict[str, str], modules: dict[str, str] = {}) -> Path:
        site = tmp_path / f"site-{name}"
        dist_info = site / f"{name.replace('-', '_')}-{version}.dist-info"
        dist_info.mkdir(parents=True)
        (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        lines = "".join(f"{ep} = {target}\n" for ep, target in entry_points.items())
        (dist_info / "entry_points.txt").write_text(f"[modgraph]\n{lines}")
        for module, source in modules.items():
            (site / f"{module}.py").write_text(source)
        monkeypatch.syspath_prepend(str(site))
        return site

    return install


@pytest.fixture
def toy_installed(install_distribution, monkeypatch):
    """``modgraph-toy`` installed through the entry-point group and the only plugin allowed to load."""
    install_distribution(toyplugin.DISTRIBUTION, toyplugin.__version__, {"toy": "toyplugin"})
    monkeypatch.setenv("MODGRAPH_LOAD_PLUGINS", toyplugin.DISTRIBUTION)
