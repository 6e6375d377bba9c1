"""Anchored translation: a file's latent replaced by its nearest training latents of the class it reads as.

A user's file is often unlike the training data (a digit typed in a font, a voice on another
microphone). Its latent then lies where the associator was never trained, and the translation
is often of another class even when the source recognizer reads the file right. Anchoring replaces the latent by the mean of the ``k`` nearest latents of training
samples of the class the source recognizer reads, so the associator gets a latent like those it
learnt from, in the style of the nearest ones (docs/tuning.md says what it measured). What the source recognizer reads wrong stays wrong.

A node stores up to ``ANCHORS_PER_CLASS`` training latent means a class (``anchors.z`` and
``anchors.y`` in its file, written by ``add-modality``). ``translate`` anchors by default;
``--anchor 0`` is the paper's translation of the latent as it is, which ``eval`` measures.
"""

from __future__ import annotations

import torch

ANCHORS_PER_CLASS = 1000
_BATCH = 1024


@torch.no_grad()
def training_anchors(vae, x, y: torch.Tensor, rows: torch.Tensor, seed: int,
                     per_class: int = ANCHORS_PER_CLASS) -> dict[str, torch.Tensor]:
    """The stored tensors: latent means of up to ``per_class`` of ``rows`` (a seeded draw) per class.

    ``x`` are normalised training inputs (indexable by rows), ``rows`` the candidates (originals).
    """
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for c in y[rows].unique().tolist():
        members = rows[y[rows] == c]
        chosen.append(members[torch.randperm(len(members), generator=generator)[:per_class]])
    chosen = torch.cat(chosen).sort().values
    device = next(vae.parameters()).device
    means = [vae.encode(torch.as_tensor(x[chosen[i:i + _BATCH]]).to(device))[0].float().cpu()
             for i in range(0, len(chosen), _BATCH)]
    return {"anchors.z": torch.cat(means).contiguous(), "anchors.y": y[chosen].to(torch.int64).contiguous()}


def anchor_latents(z: torch.Tensor, classes: torch.Tensor, anchors: tuple[torch.Tensor, torch.Tensor],
                   k: int) -> torch.Tensor:
    """Each row of ``z`` replaced by the mean of its ``k`` nearest anchors of its class (kept where none)."""
    anchor_z, anchor_y = (t.to(z.device) for t in anchors)
    distances = torch.cdist(z.float(), anchor_z)
    distances = distances.masked_fill(anchor_y[None, :] != classes[:, None].to(anchor_y), float("inf"))
    k = min(k, len(anchor_z))
    nearest = distances.topk(k, dim=1, largest=False)
    found = torch.isfinite(nearest.values)  # a class with fewer than k anchors uses those it has
    weights = found.float()
    mean = (anchor_z[nearest.indices] * weights[..., None]).sum(1) / weights.sum(1, keepdim=True).clamp(min=1)
    return torch.where(found.any(1, keepdim=True), mean.to(z.dtype), z)
