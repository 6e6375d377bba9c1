"""``modgraph new-plugin``: writes a modality plugin package that installs, passes the kit and trains as it stands.

The files come from the templates in ``plugin_templates/`` (``string.Template``, ``${name}`` style):
a common ``modality.py`` and one ``encoding.py`` per kind of data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from string import Template

from modgraph.errors import ConfigError
from modgraph.storage.safe_io import NAME_PATTERN

TEMPLATES = Path(__file__).resolve().parent / "plugin_templates"

_READ_TEXT = '''
    def read_text(self, text: str) -> torch.Tensor:
        """Features from a literal string (``translate --text``); InputFileError for what is not a word."""
        return encoding.encode(text)

    def picture(self, x: torch.Tensor) -> str:
        """A sample drawn on translate --sheet's contact sheet: the word it spells."""
        return encoding.decode(x)
'''


@dataclass(frozen=True)
class Kind:
    """What differs between kinds of data beyond ``encoding.py``."""

    description: str
    loss: str
    latent: int
    extra_members: str = ""
    dependencies: tuple[str, ...] = ()


KINDS = {
    "image": Kind("16x16 grayscale images (PNG)", "bce", 8, dependencies=("pillow",)),
    "audio": Kind("64-sample mono clips at 8 kHz (wav)", "mse", 8),
    "text": Kind("words of up to 8 letters (txt)", "bce", 8, extra_members=_READ_TEXT),
    "vector": Kind("vectors of 16 numbers (csv)", "mse", 6),
}


def new_plugin(name: str, kind: str = "vector", folder: str | Path = ".") -> list[Path]:
    """Write the package ``modgraph-NAME`` under ``folder`` for a modality of ``kind``; return the files written.

    Refuses a name that is not a valid node name and a folder that exists already.
    """
    if not NAME_PATTERN.match(name or ""):
        raise ConfigError(f"plugin name {name!r} must be a modality name matching {NAME_PATTERN.pattern} "
                          f"(lower case, e.g. 'tones')")
    if kind not in KINDS:
        raise ConfigError(f"unknown kind {kind!r}; choose one of {', '.join(KINDS)}")
    target = Path(folder) / f"modgraph-{name}"
    if target.exists():
        raise ConfigError(f"{target} exists already; choose another --dir or name, or remove it")
    spec, package = KINDS[kind], f"modgraph_{name}"
    values = {"name": name, "kind": kind, "package": package, "Class": _class_name(name),
              "description": spec.description, "loss": spec.loss, "latent": str(spec.latent),
              "read_text": spec.extra_members,
              "extra_dependencies": "".join(f', "{d}"' for d in spec.dependencies)}
    files = {"pyproject.toml": "pyproject.toml.tmpl", "README.md": "README.md.tmpl",
             f"{package}/__init__.py": "__init__.py.tmpl", f"{package}/modality.py": "modality.py.tmpl",
             f"{package}/encoding.py": f"encoding_{kind}.py.tmpl", f"tests/test_{name}.py": "test_plugin.py.tmpl"}
    written = []
    for relative, template in files.items():
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(Template((TEMPLATES / template).read_text()).substitute(values))
        written.append(path)
    return written


def _class_name(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_") if part) or "Modality"
