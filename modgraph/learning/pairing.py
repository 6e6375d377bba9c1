"""Which classes of two modalities pair up, and which samples may appear in pairs.

``concept`` pairs classes whose concept names match; ``index`` pairs class k with class
k (the paper's protocol for F-MNIST with digits), k being a class's number
(``Modality.class_numbers``: its position unless the modality numbers its classes itself).
"""

from __future__ import annotations

import torch

from modgraph.errors import ConfigError, PairingError
from modgraph.modality import FeatureSet, Modality

PAIRINGS = ("concept", "index")


def class_map(source: Modality, target: Modality, pairing: str) -> dict[int, int]:
    """Source class index -> target class index; an error when nothing pairs."""
    if pairing == "concept":
        first = {}
        for j, concept in enumerate(target.concepts):
            first.setdefault(concept, j)
        mapping = {i: first[c] for i, c in enumerate(source.concepts) if c in first}
    elif pairing == "index":
        # Class numbers both modalities have: a gsc node that learnt zero, one, five, eight pairs
        # "five" (number 5) with F-MNIST's class 5, not with whatever sits third in a list.
        target_of = {}
        for j, number in enumerate(target.class_numbers):
            target_of.setdefault(number, j)
        mapping = {i: target_of[n] for i, n in enumerate(source.class_numbers) if n in target_of}
    else:
        raise ConfigError(f"--pairing must be one of {', '.join(PAIRINGS)}, not {pairing!r}")
    if not mapping:
        raise PairingError(
            f"{source.name} and {target.name} share no concept: {source.name} has "
            f"{', '.join(source.concepts[:8])}{'...' if len(source.concepts) > 8 else ''}; {target.name} has "
            f"{', '.join(target.concepts[:8])}{'...' if len(target.concepts) > 8 else ''}. "
            f"Pair class k with class k instead with --pairing index")
    return mapping


def invert(mapping: dict[int, int]) -> dict[int, int]:
    inverse: dict[int, int] = {}
    for i, j in sorted(mapping.items()):
        inverse.setdefault(j, i)
    return inverse


def compose(maps: list[dict[int, int]]) -> dict[int, int]:
    """The class map of a path: source class -> final target class, where every hop pairs."""
    result = dict(maps[0])
    for m in maps[1:]:
        result = {i: m[j] for i, j in result.items() if j in m}
    return result


def paired_subset(features: FeatureSet, fraction: float, seed: int) -> torch.Tensor:
    """Row mask of the samples allowed in pairs: a class-stratified fraction of the originals.

    Augmented copies follow their original, so a fraction of 5% means 5% of the real
    recordings or images, never more.
    """
    if not 0.0 < fraction <= 1.0:
        raise ConfigError(f"--paired-fraction must be in (0, 1], not {fraction}")
    if fraction >= 1.0:
        return torch.ones(len(features), dtype=torch.bool)
    gen = torch.Generator().manual_seed(seed)
    originals = (~features.augmented).nonzero().flatten()
    keep_origins = []
    for c in features.y[originals].unique():
        rows = originals[features.y[originals] == c]
        origins = features.origin[rows].unique()
        k = max(1, round(fraction * len(origins)))
        keep_origins.append(origins[torch.randperm(len(origins), generator=gen)[:k]])
    keep = torch.cat(keep_origins)
    return torch.isin(features.origin, keep)
