"""The plugin reference tables of docs/plugin-hooks.md, generated from the code so they cannot drift.

Each member of :class:`~modgraph.modality.Modality` and each field of the models a plugin fills in
(``TrainingDefaults``, ``ClassInfo``, ``DatasetInfo``, ``ModalityOptions``) is read from its class's
source: name, type as written, default, and the first sentence of its docstring or of the comment
above it. ``python -m modgraph.app.plugin_reference`` rewrites the tables; tests/test_docs.py fails
when they differ from the code.
"""

from __future__ import annotations

import ast
import inspect
import re
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs" / "plugin-hooks.md"
# Members of Modality that modgraph provides and a plugin neither sets nor overrides.
PROVIDED = {"validate_descriptor", "with_options", "class_numbers", "class_names", "concepts", "cache_key",
            "distribution", "distribution_version"}
TABLES = {  # marker name -> (module, class)
    "modality-members": ("modgraph.modality", "Modality"),
    "training-defaults": ("modgraph.modality", "TrainingDefaults"),
    "class-info": ("modgraph.modality", "ClassInfo"),
    "dataset-info": ("modgraph.modality", "DatasetInfo"),
    "modality-options": ("modgraph.modality", "ModalityOptions"),
}


@dataclass(frozen=True)
class Member:
    """One row of a reference table."""

    name: str
    kind: str  # "required", "optional", "provided", or "field"
    type: str
    default: str
    summary: str


def members(cls: type) -> list[Member]:
    """The public members declared in ``cls``'s own body, in source order."""
    lines, _ = inspect.getsourcelines(cls)
    source = textwrap.dedent("".join(lines))
    [node] = ast.parse(source).body
    out, previous = [], None
    abstract = getattr(cls, "__abstractmethods__", frozenset())
    for statement in node.body:
        member = _member(statement, source, abstract, previous)
        if member is not None:
            out.append(member)
        previous = (statement, member)
    return out


def _member(statement, source: str, abstract, previous) -> Member | None:
    if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return _method(statement, source, abstract)
    target = statement.target if isinstance(statement, ast.AnnAssign) else (
        statement.targets[0] if isinstance(statement, ast.Assign) and len(statement.targets) == 1 else None)
    if not isinstance(target, ast.Name) or target.id.startswith("_") or target.id == "model_config":
        return None
    summary = _comment_above(source, statement.lineno)
    if not summary and previous and previous[1] and previous[0].end_lineno == statement.lineno - 1:
        summary = previous[1].summary  # one comment over consecutive lines covers each of them
    annotation = getattr(statement, "annotation", None)
    shown = _segment(source, annotation) if annotation is not None else ""
    shown = re.sub(r"^ClassVar\[(.*)\]$", r"\1", shown)
    value = statement.value
    default, description = _default(source, value)
    kind = "provided" if target.id in PROVIDED else ("required" if value is None else "optional")
    return Member(target.id, kind, shown, default, _first_sentence(summary or description))


def _method(fn, source: str, abstract) -> Member | None:
    if fn.name.startswith("_"):
        return None
    is_property = any(isinstance(d, ast.Name) and d.id == "property" for d in fn.decorator_list)
    returns = _segment(source, fn.returns) if fn.returns is not None else ""
    if is_property:
        name, shown = fn.name, returns
    else:
        args = fn.args
        params = [a.arg for a in args.posonlyargs + args.args][1:]
        defaults = [_segment(source, d) for d in args.defaults]
        rendered = params[:len(params) - len(defaults)] + [
            f"{p}={d}" for p, d in zip(params[len(params) - len(defaults):], defaults)]
        if args.vararg is not None:
            rendered.append(f"*{args.vararg.arg}")
        elif args.kwonlyargs:
            rendered.append("*")
            rendered += [a.arg if d is None else f"{a.arg}={_segment(source, d)}"
                         for a, d in zip(args.kwonlyargs, args.kw_defaults)]
        if args.kwarg is not None:
            rendered.append(f"**{args.kwarg.arg}")
        name, shown = f"{fn.name}({', '.join(rendered)})", returns
    kind = "provided" if fn.name in PROVIDED else ("required" if fn.name in abstract else "optional")
    return Member(name, kind, shown, "", _first_sentence(ast.get_docstring(fn) or ""))


def _default(source: str, value) -> tuple[str, str]:
    """The default as written (a ``Field``'s first argument or factory) and a ``Field``'s description."""
    if value is None:
        return "", ""
    if isinstance(value, ast.Call) and getattr(value.func, "id", "") == "Field":
        keywords = {k.arg: k.value for k in value.keywords}
        description = keywords["description"].value if isinstance(keywords.get("description"), ast.Constant) else ""
        if value.args:
            return _segment(source, value.args[0]), description
        factory = keywords.get("default_factory")
        if isinstance(factory, ast.Lambda):
            return _segment(source, factory.body), description
        return (f"{_segment(source, factory)}()" if factory is not None else ""), description
    return _segment(source, value), ""


def _segment(source: str, node) -> str:
    return " ".join((ast.get_source_segment(source, node) or "").split())


def _comment_above(source: str, lineno: int) -> str:
    """The block of ``#`` lines directly above line ``lineno`` (1-based), as one text."""
    lines = source.splitlines()
    block, i = [], lineno - 2
    while i >= 0 and lines[i].strip().startswith("#"):
        block.insert(0, lines[i].strip().lstrip("#").strip())
        i -= 1
    return " ".join(block)


def _first_sentence(text: str) -> str:
    """The first sentence of the first paragraph: up to a full stop before a capital letter or the end."""
    paragraph = " ".join(text.strip().split("\n\n")[0].split())
    match = re.match(r"(.+?)\.(\s+[A-Z`(]|$)", paragraph)
    sentence = match.group(1) if match else paragraph.rstrip(".")
    return f"{sentence}." if sentence else ""


def table(cls: type) -> str:
    """The Markdown table of ``cls``'s members."""
    rows = members(cls)
    is_model = hasattr(cls, "model_fields")
    head = "| member | type | default | what it is |\n|---|---|---|---|" if is_model else \
        "| member | kind | type | default | what it is |\n|---|---|---|---|---|"
    lines = [head]
    for m in rows:
        cells = [f"`{m.name}`", _code(m.type), _code(m.default), _cell(m.summary)]
        if not is_model:
            cells.insert(1, m.kind)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _code(text: str) -> str:
    return f"`{_cell(text)}`" if text else ""


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def marker(name: str) -> tuple[str, str]:
    return f"<!-- generated: {name} (python -m modgraph.app.plugin_reference) -->", f"<!-- end generated: {name} -->"


def rendered(text: str) -> str:
    """``text`` (the hooks page) with every generated table replaced by the one the code gives now."""
    import importlib

    for name, (module, cls_name) in TABLES.items():
        start, end = marker(name)
        if start not in text or end not in text:
            raise ValueError(f"docs/plugin-hooks.md lacks the markers of the {name!r} table: {start} ... {end}")
        cls = getattr(importlib.import_module(module), cls_name)
        before, rest = text.split(start, 1)
        _, after = rest.split(end, 1)
        text = f"{before}{start}\n{table(cls)}\n{end}{after}"
    return text


def rewrite_docs(argv: list[str] | None = None) -> int:
    """Rewrite the tables in docs/plugin-hooks.md (``--check``: exit 1 when they are out of date)."""
    argv = sys.argv[1:] if argv is None else argv
    current = DOCS.read_text()
    fresh = rendered(current)
    if "--check" in argv:
        return int(fresh != current)
    if fresh != current:
        DOCS.write_text(fresh)
    return 0


if __name__ == "__main__":
    raise SystemExit(rewrite_docs())
