"""Which target samples an associator aims at.

Eq. 7 pairs a source sample with any training sample of the paired class. Some of those
the target's own VAE cannot reproduce recognisably (a shirt its decoder turns into a
coat). Aiming at them teaches the associator outputs that fall between classes.
``faithful_targets`` keeps the samples whose reconstruction the target's recognizer
names with at least a given confidence. It uses the target modality's own models and
labels only; a threshold of 0 keeps every sample (the paper's protocol).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from safetensors.torch import load_file

from modgraph.features.cache import write_shard
from modgraph.learning.models import Recognizer, VAE

CLASS_FLOOR = 0.1  # the share of each class kept whatever its confidence
# The threshold the built-in modalities use. A recognizer trained by modgraph (label
# smoothing 0.05 over 10 classes) answers at most about 0.955, so 0.93 means "near-certain".
# Measured on the benchmark's nodes: 0.93 beat 0 in every direction tried, and did at least
# as well as 0.9 in the three directions tried with both (docs/tuning.md).
FAITHFUL_CONFIDENCE = 0.93


@torch.no_grad()
def reconstruction_probabilities(vae: VAE, recognizer: Recognizer, x, batch_size: int = 256) -> torch.Tensor:
    """The recognizer's class probabilities (N, classes) on each row's VAE reconstruction (posterior mean)."""
    vae.eval()
    recognizer.eval()
    device = next(vae.parameters()).device
    out = []
    for s in range(0, len(x), batch_size):  # small batches: 256 ran 1.7x faster than 2048 on a CPU
        xb = torch.as_tensor(x[s:s + batch_size]).to(device)
        out.append(torch.softmax(recognizer(vae.decode(vae.encode(xb)[0])).float(), 1).cpu())
    return torch.cat(out) if out else torch.zeros(0, recognizer.config.num_classes)


def reconstruction_confidence(vae: VAE, recognizer: Recognizer, x, y: torch.Tensor,
                              batch_size: int = 256) -> torch.Tensor:
    """The recognizer's probability of each row's own class on the row's VAE reconstruction."""
    probs = reconstruction_probabilities(vae, recognizer, x, batch_size)
    return probs.gather(1, y.clamp(min=0).view(-1, 1)).flatten()


def cached_confidence(cache_dir: Path, key: list[str | bytes], rows: int, compute) -> torch.Tensor:
    """``compute()`` (``rows`` confidences), kept on disk under ``cache_dir/confidence`` by a hash of ``key``.

    The key must name everything the confidences depend on (the node's training time, the
    rows); linking one modality to several others then scores its samples once.
    """
    digest = hashlib.sha1()
    for part in key:
        digest.update(part if isinstance(part, bytes) else part.encode())
        digest.update(b"\0")
    path = Path(cache_dir) / "confidence" / f"{digest.hexdigest()[:24]}.safetensors"
    if path.exists():
        try:
            cached = load_file(str(path))["confidence"]
            if cached.shape == (rows,):
                return cached
        except Exception:  # a damaged cache file is recomputed, never trusted
            pass
    confidence = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    write_shard(path, {"confidence": confidence}, {"kind": "reconstruction confidence"})
    return confidence


def faithful_targets(confidence: torch.Tensor, y: torch.Tensor, min_confidence: float) -> torch.Tensor:
    """``y`` with -1 on rows whose ``confidence`` (see :func:`reconstruction_confidence`) is under ``min_confidence``.

    An absolute threshold drops more of an ambiguous class (shirts) than of a clear one
    (trousers), which is the point. So that no class is left without targets, each keeps
    at least its most confident ``CLASS_FLOOR`` share. Rows already at -1 stay so.
    """
    if not 0.0 <= min_confidence < 1.0:
        raise ValueError(f"min_confidence must be in [0, 1), not {min_confidence}")
    if min_confidence == 0.0 or len(y) == 0:
        return y
    out = torch.where(confidence >= min_confidence, y, torch.full_like(y, -1))
    for c in y.unique().tolist():
        if c < 0:
            continue
        rows = (y == c).nonzero().flatten()
        top = confidence[rows].argsort(descending=True, stable=True)[:max(1, round(len(rows) * CLASS_FLOOR))]
        out[rows[top]] = c
    return out
