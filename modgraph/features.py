"""Where data and cached features live, and the cache itself.

A modality's features for a split are computed once and stored as safetensors under the
cache folder, so later epochs and commands pay only for the model.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from modgraph.modality import FeatureSet, Modality

CACHE_FORMAT = "1"


def default_data_root() -> Path:
    env = os.environ.get("MODGRAPH_DATA")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("modgraph")) / "data"


def default_cache_dir() -> Path:
    env = os.environ.get("MODGRAPH_CACHE")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("modgraph")) / "features"


def _cache_path(modality: Modality, root: Path, split: str, cache_dir: Path) -> Path:
    key = f"{CACHE_FORMAT}|{modality.cache_key()}|{Path(root).resolve()}|{split}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return cache_dir / f"{modality.name}-{split}-{digest}.safetensors"


def load_split(modality: Modality, root: Path, split: str, download: bool = False,
               cache_dir: Path | None = None, use_cache: bool = True) -> FeatureSet:
    """The split's features, from the cache when present, else computed and cached."""
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = _cache_path(modality, Path(root), split, cache_dir)
    if use_cache and path.exists():
        try:
            tensors = load_file(str(path))
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                groups = json.loads(f.metadata().get("groups", "{}"))
            return FeatureSet(x=tensors["x"], y=tensors["y"], origin=tensors["origin"],
                              augmented=tensors["augmented"], groups=groups)
        except (SafetensorError, OSError, KeyError, ValueError):
            pass  # a damaged cache entry is rebuilt below
    features = modality.load_features(Path(root), split, download=download)
    if use_cache:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        save_file({"x": features.x.contiguous().float(), "y": features.y.long(),
                   "origin": features.origin.long(), "augmented": features.augmented.bool()},
                  str(tmp), metadata={"groups": json.dumps(features.groups), "key": modality.cache_key()})
        os.replace(tmp, path)
    return features
