"""``modgraph export --space DIR``: a folder that runs ``modgraph serve``'s page on a hub's Space as it
stands (app.py, requirements.txt, the graph's archive, the card as README with the Space header),
and :func:`run_space`, what that app.py calls.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from modgraph import __version__
from modgraph.errors import ConfigError

ARCHIVE_NAME = "graph.tar"
FILES = ("app.py", "requirements.txt", "README.md", ARCHIVE_NAME)
APP = '''"""A modgraph graph as a Gradio Space: the page of `modgraph serve` over the archive beside this file."""

from pathlib import Path

from modgraph.app.space import run_space

run_space(Path(__file__).resolve().parent / "{archive}")
'''


def space_header(title: str, gradio_version: str) -> str:
    """The YAML block a hub reads at the top of a Space's README."""
    return "\n".join(["---", f"title: {title}", "emoji: 🔀", "colorFrom: blue", "colorTo: green", "sdk: gradio",
                      f"sdk_version: {gradio_version}", "app_file: app.py", "pinned: false", "---", ""])


def requirements(plugins: dict[str, str | None]) -> str:
    """modgraph with the page, and the plugin distributions the graph's nodes were made by."""
    lines = [f"modgraph[app]=={__version__}"]
    lines += [f"{name}=={version}" if version else name for name, version in sorted(plugins.items())
              if name and name not in ("modgraph", "local")]
    return "\n".join(lines) + "\n"


def write_space(mg, folder: str | Path, only: list[str] | None = None) -> dict:
    """Write the Space folder for ``mg``'s registry (or the ``only`` modalities); returns what was written.

    The folder must not exist or be empty: a Space is written whole, never over other files.
    """
    import gradio

    from modgraph.storage.archive import export_registry
    from modgraph.storage.card import model_card

    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise ConfigError(f"--space {folder}: give a new or empty folder (a Space is written whole)")
    folder.mkdir(parents=True, exist_ok=True)
    report = export_registry(mg.registry, folder / ARCHIVE_NAME, only=only, modalities=mg.available_modalities())
    manifest = report["manifest"]
    card = model_card(mg.registry, mg.available_modalities(), only=manifest["modalities"])
    title = "modgraph: " + ", ".join(manifest["modalities"])
    (folder / "README.md").write_text(space_header(title[:60], gradio.__version__) + card, encoding="utf-8")
    (folder / "requirements.txt").write_text(requirements(manifest["plugins"]), encoding="utf-8")
    (folder / "app.py").write_text(APP.format(archive=ARCHIVE_NAME), encoding="utf-8")
    return {"folder": str(folder), "files": [str(folder / f) for f in FILES], "manifest": manifest}


def run_space(archive: str | Path) -> None:
    """Import ``archive`` into a fresh registry and serve the page where a Space expects it
    (``GRADIO_SERVER_NAME``, ``GRADIO_SERVER_PORT``; 127.0.0.1:7860 when they are not set)."""
    from modgraph.api import ModGraph
    from modgraph.app.page_server import bind, guard_images, is_loopback, make_app, make_server
    from modgraph.storage.archive import import_archive
    from modgraph.storage.registry import Registry

    host = os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1")
    port = int(os.environ.get("GRADIO_SERVER_PORT", "7860"))
    guard_images()
    with tempfile.TemporaryDirectory(prefix="modgraph-space-") as workdir:
        registry = Registry(Path(workdir) / "registry")
        import_archive(registry, archive)
        mg = ModGraph(registry=registry.root, device="cpu", progress=False)
        sock = bind(host, port)
        server = make_server(make_app(mg, Path(workdir) / "page", loopback_only=is_loopback(host)))
        print(f"Serving {Path(archive).name} on http://{host}:{sock.getsockname()[1]}/", flush=True)
        server.run(sockets=[sock])
