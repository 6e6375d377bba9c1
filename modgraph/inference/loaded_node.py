"""A trained node loaded for use: its plugin, VAE, recognizer, normalisation and anchors."""

from __future__ import annotations

from dataclasses import dataclass

from modgraph.learning.models import Recognizer, VAE
from modgraph.modality import Modality


@dataclass
class LoadedNode:
    modality: Modality
    vae: VAE
    recognizer: Recognizer
    stats: dict
    meta: dict
    anchors: tuple | None = None  # (latent means, classes) of training samples: modgraph.inference.anchors
