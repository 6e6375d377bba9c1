"""docs/cli.md is the CLI's own help: regenerated from the click commands, it is unchanged."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_docs_cli_md_is_generated_from_the_commands():
    # A fresh process: click caches each command's help option the first time a test builds it.
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "cli_reference.py"), "--check"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_every_command_has_a_section():
    from modgraph.app.cli import main

    text = (ROOT / "docs" / "cli.md").read_text()
    for name in main.commands:
        assert f"\n## modgraph {name}\n" in text, name
