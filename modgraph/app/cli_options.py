"""Command-line options made from a settings model, and the argv that gives a model back.

Each field of a :mod:`modgraph.settings` model becomes one click option named after it
(``paired_fraction`` -> ``--paired-fraction``), so the CLI, the API, ``plan`` and the stored
header cannot disagree. Unset options stay unset: the model's default applies.
"""

from __future__ import annotations

import json
import types
import typing
from typing import Any

import click
from pydantic import BaseModel

from modgraph.errors import ConfigError
from modgraph.storage.safe_io import parse_json, parse_toml, read_bounded

# Fields whose flag is not their name with dashes (a mapping or list is typed one item per option).
_FLAGS = {"options": "--option", "texts": "--text"}


def flag(name: str) -> str:
    return _FLAGS.get(name, "--" + name.replace("_", "-"))


def _inner(annotation):
    """``X`` of ``X | None``."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return next(a for a in typing.get_args(annotation) if a is not type(None))
    return annotation


def _is_groups(annotation) -> bool:
    """A ``dict[str, list[str]]`` field: repeatable ``GROUP=V1,V2`` options."""
    return typing.get_origin(_inner(annotation)) is dict


def _is_list(annotation) -> bool:
    return typing.get_origin(_inner(annotation)) is list


def _click_type(annotation) -> tuple[Any, bool]:
    """The click type of a field, and whether it is a flag."""
    inner = _inner(annotation)
    if inner is bool:
        return None, True
    if typing.get_origin(inner) is typing.Literal:
        return click.Choice(list(typing.get_args(inner))), False
    return {int: int, float: float, str: str}.get(inner, str), False


def _option(name: str, field):
    """The click option of one settings field (unset stays None, so the model's default applies)."""
    help_text = field.description or ""
    if _is_groups(field.annotation):
        return click.option(flag(name), name, multiple=True, metavar="GROUP=VALUE", help=help_text)
    if _is_list(field.annotation):
        return click.option(flag(name), name, multiple=True, help=help_text)
    kind, is_flag = _click_type(field.annotation)
    if is_flag:
        return click.option(flag(name), name, is_flag=True, default=None, help=help_text)
    if field.default is not None and not field.is_required():
        help_text += f"  [default: {field.default}]"
    return click.option(flag(name), name, type=kind, default=None, help=help_text)


def settings_options(model: type[BaseModel]):
    """A decorator adding one option per field of ``model`` (``--options-file`` beside ``--option``)."""

    def decorate(f):
        for name, field in reversed(list(model.model_fields.items())):
            if name == "options":
                f = click.option("--options-file", type=click.Path(dir_okay=False),
                                 help="Modality options from a TOML file.")(f)
                f = click.option("--option", "options", multiple=True, metavar="KEY=VALUE",
                                 help="A modality option (repeatable).")(f)
            else:
                f = _option(name, field)(f)
        return f

    return decorate


def pairs(values: tuple[str, ...], what: str) -> dict[str, list[str]]:
    """``GROUP=V1,V2`` options as a mapping of lists."""
    out: dict[str, list[str]] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{item!r} is not key=value", param_hint=what)
        out.setdefault(key.strip(), []).extend(v.strip() for v in value.split(","))
    return out


def options_mapping(values: tuple[str, ...], options_file: str | None) -> dict:
    """``--option key=value`` (values parsed as JSON where they can be) over a TOML file."""
    merged: dict = {}
    if options_file:
        try:  # size and nesting bounded; a FIFO or a device is refused, never read
            merged.update(parse_toml(read_bounded(options_file, what="--options-file", error=ConfigError, follow=True),
                                     f"--options-file {options_file}"))
        except FileNotFoundError:
            raise ConfigError(f"--options-file {options_file} does not exist") from None
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{item!r} is not key=value", param_hint="--option")
        try:
            merged[key.strip()] = parse_json(value, "--option", ConfigError)
        except ConfigError:  # not JSON (or nested past the cap): the text itself
            merged[key.strip()] = value
    return merged


def settings_from_cli(model, params: dict[str, Any]):
    """The validated settings of the options a command got; removes them from ``params``."""
    values = {}
    for name, field in model.model_fields.items():
        if name == "options":
            values[name] = options_mapping(params.pop("options", ()), params.pop("options_file", None))
        elif _is_groups(field.annotation):
            values[name] = pairs(params.pop(name, ()), flag(name))
        elif _is_list(field.annotation):
            values[name] = list(params.pop(name, ()))
        elif name in params:
            value = params.pop(name)
            if value is not None:
                values[name] = value
    return model.parse(values)


def option_value(value: Any) -> str:
    """What ``--option key=VALUE`` needs so the CLI reads back ``value`` (it parses JSON first)."""
    if isinstance(value, str):
        try:
            parse_json(value, "an option value", ConfigError)
        except ConfigError:
            return value
    return json.dumps(value)


def settings_argv(settings: BaseModel) -> list[str]:
    """The options that give ``settings`` back through :func:`settings_from_cli` (unset ones left out)."""
    argv: list[str] = []
    for name, value in settings.given().items():
        if name == "options":
            argv += [a for key, v in value.items() for a in ("--option", f"{key}={option_value(v)}")]
        elif isinstance(value, dict):
            argv += [a for key, vs in value.items() for a in (flag(name), f"{key}={','.join(vs)}")]
        elif isinstance(value, list):
            argv += [a for v in value for a in (flag(name), str(v))]
        elif value is True:
            argv.append(flag(name))
        elif value is not None and value is not False:
            argv += [flag(name), str(value)]
    return argv
