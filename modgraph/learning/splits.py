"""Which rows of a split train, validate and count: exclusions, the validation hold-out, target labels.

Shared by both training phases and evaluation, so that every phase selects rows alike.
"""

from __future__ import annotations

import torch

from modgraph.errors import ConfigError
from modgraph.modality import FeatureSet, Modality

VAL_FRACTION = 0.1


def group_ids(features: FeatureSet, key: str | None) -> torch.Tensor | None:
    """A group id per row for grouping ``key`` of ``features``; None without one (or no such grouping)."""
    if key is None or key not in features.groups:
        return None
    names = {name: i for i, name in enumerate(sorted(set(features.groups[key])))}
    return torch.tensor([names[v] for v in features.groups[key]], dtype=torch.long)


def select_rows(features: FeatureSet, exclude: dict[str, list[str]] | None = None,
                include: dict[str, list[str]] | None = None) -> FeatureSet:
    """Rows whose group values are not excluded (and are included, when ``include`` is given)."""
    mask = torch.ones(len(features), dtype=torch.bool)
    for groups, keep in ((exclude, False), (include, True)):
        for key, values in (groups or {}).items():
            if key not in features.groups:
                raise ConfigError(f"these data have no {key!r} grouping (they have: "
                                  f"{', '.join(features.groups) or 'none'})")
            hit = torch.tensor([v in set(values) for v in features.groups[key]], dtype=torch.bool)
            mask &= hit if keep else ~hit
    return features if bool(mask.all()) else features.subset(mask)


def split_validation(features: FeatureSet, seed: int, fraction: float = VAL_FRACTION) -> tuple[FeatureSet, FeatureSet]:
    """Hold out a fraction of origins (an original and its augmented copies stay together)."""
    origins = features.origin.unique()
    gen = torch.Generator().manual_seed(seed + 7919)
    n_val = max(1, int(round(fraction * len(origins)))) if len(origins) > 1 else 0
    val_origins = origins[torch.randperm(len(origins), generator=gen)[:n_val]]
    in_val = torch.isin(features.origin, val_origins)
    return features.subset(~in_val), features.subset(in_val & ~features.augmented)


def target_labels(features: FeatureSet, modality: Modality) -> torch.Tensor:
    """Class labels, -1 on rows whose group value is in ``modality.target_exclude``."""
    y = features.y.clone()
    for key, values in modality.target_exclude.items():
        if key in features.groups:
            drop = torch.tensor([v in values for v in features.groups[key]], dtype=torch.bool)
            y[drop] = -1
    return y


def paired_classes(y: torch.Tensor, mapping: dict[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows whose class pairs with a target class, and those target classes."""
    keep = torch.tensor([int(c) in mapping for c in y.tolist()], dtype=torch.bool)
    expected = torch.tensor([mapping[int(c)] for c in y[keep].tolist()], dtype=torch.long)
    return keep, expected
