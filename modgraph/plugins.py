"""The plugin manager: loads the ``modgraph`` entry points on first use and collects modalities.

``MODGRAPH_LOAD_PLUGINS`` (a comma-separated list of distribution or entry-point names)
restricts which entry points load; an empty value loads none.
"""

from __future__ import annotations

import importlib.metadata
import os
from dataclasses import dataclass, field

import pluggy

from modgraph import hookspecs
from modgraph.errors import DuplicateModalityError, PluginError, UnknownModalityError, did_you_mean

ENTRY_POINT_GROUP = "modgraph"


@dataclass
class PluginInfo:
    """One loaded plugin: its distribution, version and the modalities it registered."""

    name: str
    distribution: str
    version: str
    modalities: list[str] = field(default_factory=list)


class PluginHost:
    """Owns the pluggy manager and the name -> modality table."""

    def __init__(self, load_entry_points: bool = True):
        self.pm = pluggy.PluginManager("modgraph")
        self.pm.add_hookspecs(hookspecs)
        self._load_entry_points = load_entry_points
        self._extra: list[tuple[object, str, str, str]] = []
        self._modalities: dict | None = None
        self._plugins: list[PluginInfo] = []

    def add_plugin(self, plugin: object, name: str, distribution: str = "local", version: str = "0") -> None:
        """Register a plugin object directly (tests, notebooks, embedded use)."""
        self._extra.append((plugin, name, distribution, version))
        self._modalities = None

    def _entry_points(self):
        allowed = os.environ.get("MODGRAPH_LOAD_PLUGINS")
        allow = None if allowed is None else {s.strip() for s in allowed.split(",") if s.strip()}
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = ep.dist.name if ep.dist is not None else "unknown"
            if allow is not None and ep.name not in allow and dist not in allow:
                continue
            yield ep, dist, (ep.dist.version if ep.dist is not None else "0")

    def _load(self) -> dict:
        if self._modalities is not None:
            return self._modalities
        sources = []
        if self._load_entry_points:
            for ep, dist, version in self._entry_points():
                try:
                    plugin = ep.load()
                except Exception as exc:  # a broken plugin must not hide the others' names
                    raise PluginError(f"plugin {ep.name!r} from distribution {dist!r} failed to load: {exc}") from exc
                sources.append((plugin, ep.name, dist, version))
        sources.extend(self._extra)
        table: dict = {}
        self._plugins = []
        for plugin, name, dist, version in sources:
            if self.pm.get_plugin(name) is None:
                self.pm.register(plugin, name=name)
            info = PluginInfo(name=name, distribution=dist, version=version)
            hook = self.pm.subset_hook_caller("register_modalities", remove_plugins=[
                p for p in self.pm.get_plugins() if p is not plugin])

            def register(modality, _info=info):
                from modgraph.modality import Modality

                if not isinstance(modality, Modality):
                    raise PluginError(f"plugin {_info.name!r} registered {modality!r}, which is not a modgraph.Modality")
                modality.validate_descriptor()
                if modality.name in table:
                    other = table[modality.name].distribution
                    raise DuplicateModalityError(
                        f"modality {modality.name!r} is registered by both {other!r} and {_info.distribution!r}; "
                        f"uninstall one, or restrict plugins with MODGRAPH_LOAD_PLUGINS")
                modality.distribution = _info.distribution
                modality.distribution_version = _info.version
                table[modality.name] = modality
                _info.modalities.append(modality.name)

            hook(register=register)
            self._plugins.append(info)
        self.pm.check_pending()
        self._modalities = table
        return table

    def modalities(self) -> dict:
        return dict(self._load())

    def plugins(self) -> list[PluginInfo]:
        self._load()
        return list(self._plugins)

    def get(self, name: str):
        table = self._load()
        if name not in table:
            known = ", ".join(sorted(table)) or "none"
            dists = ", ".join(f"{p.distribution} {p.version}" for p in self._plugins) or "none"
            raise UnknownModalityError(
                f"unknown modality {name!r}; installed modalities: {known} (plugins: {dists})"
                + (did_you_mean(name, table) or "; install a plugin that provides it, e.g. "
                                                "pip install -e plugins/modgraph-<name>"))
        return table[name]
