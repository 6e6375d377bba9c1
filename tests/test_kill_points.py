"""``kill -9`` at every rename of ``import``, ``add-modality`` and ``link``: readers stay consistent, and the next
writer lands all or none and leaves no leftover (issue 29).

Each case runs the command in a child process that dies (``os._exit``, no cleanup runs) just before
its N-th ``os.replace`` into the registry, or just after the last one. CI kills import at the journal's
rename, the first and the last file's and after them (the renames between take the same path);
``MODGRAPH_KILL_ALL=1`` kills at every one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import toyplugin

from modgraph.storage.journal import TEMPORARY

TESTS = Path(__file__).parent
CHILD = r"""
import json, os, sys
import toyplugin
from modgraph.api import ModGraph
from modgraph.plugins import PluginHost

args = json.loads(sys.argv[1])
count, real_replace = [0], os.replace

def replace(src, dst):
    if not os.path.abspath(dst).startswith(args["registry"] + os.sep):  # the feature cache's writes
        return real_replace(src, dst)
    count[0] += 1
    if count[0] == args["kill_before"]:
        os._exit(137)
    real_replace(src, dst)
    if args["kill_before"] == 0 and count[0] == args["renames"]:
        os._exit(137)  # after the last rename, before the journal is removed

os.replace = replace
host = PluginHost(load_entry_points=False)
host.add_plugin(toyplugin, name="toy", distribution=toyplugin.DISTRIBUTION, version=toyplugin.__version__)
mg = ModGraph(registry=args["registry"], data_root=args["data"], cache_dir=args["cache"], device="cpu",
              progress=False, plugins=host)
if args["op"] == "import":
    from modgraph.storage.archive import import_archive
    import_archive(mg.registry, args["archive"], force=True)
elif args["op"] == "add-modality":
    mg.add_modality("toycolor", epochs=1, recognizer_epochs=1)
else:
    mg.link("toyimg", "toyaudio", epochs=1)
print(json.dumps({"renames": count[0]}))
"""


def _graph(registry: Path, data_root: Path, cache_dir: Path):
    from modgraph.api import ModGraph
    from modgraph.plugins import PluginHost

    host = PluginHost(load_entry_points=False)
    host.add_plugin(toyplugin, name="toy", distribution=toyplugin.DISTRIBUTION, version=toyplugin.__version__)
    return ModGraph(registry=registry, data_root=data_root, cache_dir=cache_dir, device="cpu", progress=False,
                    plugins=host)


def _run(op: str, kill_before: int, renames: int, paths: dict) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
           "MODGRAPH_NUM_THREADS": "1", "MODGRAPH_LOAD_PLUGINS": ""}
    args = {"op": op, "kill_before": kill_before, "renames": renames, **{k: str(v) for k, v in paths.items()}}
    return subprocess.run([sys.executable, "-c", CHILD, json.dumps(args)], env=env, capture_output=True, text=True,
                          timeout=300)


def _stamps(root: Path) -> dict[str, str]:
    """Each registry file's ``created`` stamp (which version of it is there)."""
    from modgraph.storage.registry import Registry

    registry = Registry(root)
    g = registry.graph()
    return {**{n: g.nodes[n]["created"] for n in g.nodes}, **{f"{a}--{b}": d["created"] for a, b, d in g.edges(data=True)}}


def _consistent(root: Path, data: Path, cache: Path) -> None:
    """graph, eval and translate agree: every edge they route fits its nodes; the next writer leaves nothing."""
    mg = _graph(root, data, cache)
    g = mg.graph()
    for a, b, meta in g.edges(data=True):
        if meta["stale"]:
            continue
        assert meta["source_node_created"] == g.nodes[a]["created"] and meta["target_node_created"] == g.nodes[b]["created"]
        assert 0 <= mg.evaluate(a, b, anchor=0)["accuracy"] <= 1
        x = mg.features(mg.node(a).modality, "test").x[:2]
        assert mg.translate(a, b, x).shape[:2] == (2, 1)
    with mg.registry.lock():  # what every write does first
        pass
    for folder in (root, root / "nodes", root / "edges"):
        left = [p.name for p in folder.iterdir() if TEMPORARY.match(p.name) or p.name.endswith(".json")]
        assert not left, left


@pytest.fixture
def setup(trained, isolated_env, tmp_path):
    """A registry whose toyimg was retrained since (its edges stale), and an archive of the original graph."""
    from modgraph.storage.archive import export_registry

    archive = tmp_path / "graph.tar"
    export_registry(trained.registry, archive)
    original = _stamps(trained.registry.root)
    trained.add_modality("toyimg", epochs=1, recognizer_epochs=1)
    paths = {"registry": tmp_path / "target", "data": isolated_env["data"], "cache": isolated_env["cache"],
             "archive": archive}
    return paths, original


@pytest.mark.parametrize("op", ["import", "add-modality", "link"])
def test_a_kill_at_each_rename_leaves_a_consistent_registry(setup, isolated_env, op):
    paths, original = setup
    target = paths["registry"]

    def fresh():
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(isolated_env["registry"], target)
        return _stamps(target)

    fresh()
    done = _run(op, -1, 0, paths)  # how many renames the command makes into the registry
    assert done.returncode == 0, done.stderr
    renames = json.loads(done.stdout.strip().splitlines()[-1])["renames"]
    assert renames == {"import": 8, "add-modality": 1, "link": 3}[op]  # the journal's, then each file's
    points = [*range(1, renames + 1), 0]  # 0: after the last rename
    if not os.environ.get("MODGRAPH_KILL_ALL"):  # CI: the journal's rename, the first and last file's, after
        points = [p for p in points if p in (1, 2, renames, 0)]
    for kill_before in points:
        before = fresh()
        result = _run(op, kill_before, renames, paths)
        assert result.returncode == 137, result.stderr
        _consistent(target, paths["data"], paths["cache"])
        after = _stamps(target)
        if op == "import":  # all or none: the journal is the first rename
            assert after == (before if kill_before == 1 else original), kill_before
        elif op == "link":
            changed = {k for k in after if after[k] != before.get(k)}
            assert changed in (set(), {"toyimg--toyaudio", "toyaudio--toyimg"}), (kill_before, changed)
