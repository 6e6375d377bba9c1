"""The user's config file: the data root and the registry, set once with ``modgraph config set``.

Read after command-line flags and environment variables and before the defaults. The file is
a small TOML file in the platform's user config folder (``MODGRAPH_CONFIG`` names another).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from modgraph.errors import ConfigError
from modgraph.storage.safe_io import load_bounded

# What a user types (``modgraph config set data-root PATH``) -> the key stored in the file.
CONFIG_KEYS = {"data-root": "data_root", "registry": "registry"}


def config_path() -> Path:
    """Where the config file is (it may not exist yet)."""
    env = os.environ.get("MODGRAPH_CONFIG")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_config_dir("modgraph")) / "config.toml"


def read_config() -> dict[str, str]:
    """The stored settings by typed name (``data-root``), empty when there is no file."""
    path = config_path()
    try:  # bounded in size and nesting; a FIFO or a device there is refused, never read
        raw = load_bounded(path, "the config file", ConfigError) if os.path.lexists(path) else {}
    except ConfigError as exc:
        raise ConfigError(f"{exc}; fix it or delete it and set the values again with modgraph config set") from None
    except FileNotFoundError:
        raw = {}
    stored = {stored: typed for typed, stored in CONFIG_KEYS.items()}
    return {stored[k]: str(v) for k, v in raw.items() if k in stored}


def configured(key: str) -> str | None:
    """The value of ``key`` (``data-root`` or ``registry``) in the config file, or None."""
    return read_config().get(key) or None


def _check_key(key: str) -> str:
    if key not in CONFIG_KEYS:
        from modgraph.errors import did_you_mean

        raise ConfigError(f"unknown setting {key!r}{did_you_mean(key, CONFIG_KEYS)}; "
                          f"the settings are {', '.join(CONFIG_KEYS)}")
    return key


def _write(values: dict[str, str]) -> Path:
    from modgraph.storage.outputs import output_file

    path = config_path()
    text = "".join(f"{CONFIG_KEYS[k]} = {json.dumps(v)}\n" for k, v in sorted(values.items()))
    with output_file(path) as tmp:  # only a regular file is replaced (a FIFO or a device there is refused)
        tmp.write_text(text, encoding="utf-8")
    return path


def set_value(key: str, value: str) -> Path:
    """Store ``key`` = ``value`` (a folder, made absolute); returns the config file's path."""
    values = read_config()
    values[_check_key(key)] = str(Path(value).expanduser().resolve())
    return _write(values)


def unset_value(key: str) -> Path:
    """Remove ``key`` from the config file; returns the config file's path."""
    values = read_config()
    values.pop(_check_key(key), None)
    return _write(values)
