"""docs/cli.md is the CLI's own help: regenerated from the click commands, it is unchanged."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _generator():
    spec = importlib.util.spec_from_file_location("cli_reference", ROOT / "scripts" / "cli_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docs_cli_md_is_generated_from_the_commands():
    generator = _generator()
    assert (ROOT / "docs" / "cli.md").read_text() == generator.render(), \
        "docs/cli.md is stale: run python scripts/cli_reference.py"


def test_every_command_has_a_section():
    from modgraph.app.cli import main

    text = (ROOT / "docs" / "cli.md").read_text()
    for name in main.commands:
        assert f"\n## modgraph {name}\n" in text, name
