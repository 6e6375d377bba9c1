"""The hooks a modgraph plugin implements: the plugin author's reference.

Every hook is called with keyword arguments only. A plugin marks its functions with
``@modgraph.hookimpl`` and lists its module under the ``modgraph`` entry-point group.
"""

from __future__ import annotations

from typing import Callable

import pluggy

hookspec = pluggy.HookspecMarker("modgraph")
hookimpl = pluggy.HookimplMarker("modgraph")


@hookspec
def register_modalities(register: Callable[[object], None]) -> None:
    """Register the modalities this plugin provides.

    Call ``register(modality)`` once per modality, where ``modality`` is an instance of a
    :class:`modgraph.Modality` subclass. Register cheap descriptors only: no trained
    model and no loaded dataset. The modality's ``name`` becomes a graph node and a file
    name in the registry, so it must be unique among installed plugins; a duplicate is
    an error that names both distributions.
    """
