"""Typed records of the registry's file headers: what a node or an edge file says about itself.

Headers are strings in safetensors; :class:`~modgraph.storage.registry.Registry` parses the JSON
fields and validates them here, so a wrong type is one clear error naming the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from modgraph.errors import RegistryCorruptError, validation_message


class _Record(BaseModel):
    # Files written by a newer modgraph may carry more fields; they are kept, not refused.
    model_config = ConfigDict(extra="allow")
    format_version: str
    created: str | None = None
    modgraph_version: str | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    training: dict[str, Any] = Field(default_factory=dict)


class NodeRecord(_Record):
    """A modality node: its VAE and recognizer configs, data, options, metrics and training settings."""

    kind: Literal["modality"]
    name: str
    plugin: str | None = None
    plugin_version: str | None = None
    config: dict[str, dict[str, Any]]
    preprocessing: dict[str, Any] = Field(default_factory=dict)
    options: dict[str, Any] | None = None
    classes: list[dict[str, Any]] = Field(default_factory=list)
    data: dict[str, Any] = Field(default_factory=dict)

    @property
    def latent_dim(self) -> int | None:
        return (self.config.get("vae") or {}).get("latent_dim")


class EdgeRecord(_Record):
    """An associator edge: its config, the class map it was trained on, pairing and metrics."""

    kind: Literal["associator"]
    source: str
    target: str
    config: dict[str, dict[str, Any]]
    class_map: list[tuple[int, int]]
    pairing: str | None = None
    paired_fraction: float | None = None
    source_node_created: str | None = None
    target_node_created: str | None = None

    @field_validator("class_map")
    @classmethod
    def _not_empty(cls, value):
        if not value:
            raise ValueError("an associator pairs at least one class")
        return value


def parse_record(model: type[_Record], header: dict, path: Path):
    """``header`` as a typed record; a header of the wrong shape is a :class:`RegistryCorruptError`."""
    try:
        return model.model_validate(header)
    except ValidationError as exc:
        raise RegistryCorruptError(validation_message(f"header in registry file {path}", exc)
                                   + "; delete it and retrain it") from None
