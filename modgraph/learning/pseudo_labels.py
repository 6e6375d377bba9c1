"""Labels for unpaired samples, spread from the paired ones through a modality's latent space.

With few samples paired (``--paired-fraction``), an associator sees few distinct sources.
Label spreading (Zhou et al., 2004) on a k-nearest-neighbour graph of the VAE's latent
means carries the paired samples' classes to the unpaired ones that lie in the same
clusters; those it gives a confident class may join the associator's sources. It uses no
label beyond the paired samples' and no recognizer.

Where a modality's data come in groups that each hold every class in about the same
proportions (FSDD: each speaker says each digit 50 times), the spread classes can be balanced
within each group: an optimal-transport (Sinkhorn) rescaling of each group's class
distributions so that the group's class totals match the paired rows' class proportions. A
speaker with no paired "three" then still gets three-mass, on the rows whose spread
distribution leans most toward it, instead of its threes taking a neighbouring cluster's class.
"""

from __future__ import annotations

import torch

NEIGHBOURS = 20
ALPHA = 0.99
ITERATIONS = 30
BALANCE_ITERATIONS = 100


def knn(z: torch.Tensor, k: int, chunk: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """Distances and indices of each row's k nearest other rows, (N, k) each, in row chunks."""
    dists, index = [], []
    for start in range(0, len(z), chunk):
        d = torch.cdist(z[start:start + chunk], z)
        rows = torch.arange(len(d))
        d[rows, rows + start] = float("inf")  # not its own neighbour
        values, idx = d.topk(min(k, len(z) - 1), largest=False)
        dists.append(values)
        index.append(idx)
    return torch.cat(dists), torch.cat(index)


def balance_within(p: torch.Tensor, groups: torch.Tensor, prior: torch.Tensor,
                   iterations: int = BALANCE_ITERATIONS) -> torch.Tensor:
    """Rows' class distributions ``p`` (N, C), rescaled so each group's class totals follow ``prior``.

    Sinkhorn's alternating normalisation within each group: columns to the group's size times
    ``prior``, rows back to 1. Rows with no mass (no labelled row reached them) stay at zero.
    """
    out = p.clone()
    reached = p.sum(1) > 0
    for g in groups.unique():
        rows = ((groups == g) & reached).nonzero().flatten()
        if len(rows) == 0:
            continue
        q = p[rows].clamp_min(1e-12)
        q = q / q.sum(1, keepdim=True)
        for _ in range(iterations):
            q = q / q.sum(0, keepdim=True) * (len(rows) * prior).clamp_min(1e-12)
            q = q / q.sum(1, keepdim=True)
        out[rows] = q
    return out


def spread_labels(z: torch.Tensor, known: torch.Tensor, labels: torch.Tensor, num_classes: int,
                  neighbours: int = NEIGHBOURS, alpha: float = ALPHA,
                  iterations: int = ITERATIONS,
                  groups: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Class and confidence (share of the spread mass, 0..1) for every row of ``z``.

    ``known``: boolean mask of the rows whose ``labels`` are given (the other rows' labels
    are not read). Latent dimensions are standardised first; edges weigh exp(-(d/sigma)^2)
    with sigma the mean distance to the k-th neighbour; the graph is symmetrised and
    normalised as D^-1/2 W D^-1/2. A row that no labelled row reaches gets confidence 0.
    ``groups``: a group id per row; if given, each group's class distributions are balanced
    to the labelled rows' class proportions (:func:`balance_within`).
    """
    n = len(z)
    z = z.detach().float()
    z = (z - z.mean(0)) / z.std(0).clamp_min(1e-6)
    if n < 2:
        scores = torch.zeros(n, num_classes)
    else:
        dist, idx = knn(z, neighbours)
        sigma = dist[:, -1].mean().clamp_min(1e-6)
        weight = torch.exp(-(dist / sigma) ** 2).flatten()
        # The symmetrised graph as an edge list: both directions of every kNN edge, half weight each.
        rows = torch.arange(n).repeat_interleave(idx.shape[1])
        src, dst = torch.cat([rows, idx.flatten()]), torch.cat([idx.flatten(), rows])
        weight = torch.cat([weight, weight]) / 2
        degree = torch.zeros(n).index_add_(0, src, weight).clamp_min(1e-12).rsqrt()
        weight = (degree[src] * weight * degree[dst]).unsqueeze(1)
        seed = torch.zeros(n, num_classes)
        seed[known.nonzero().flatten(), labels[known]] = 1.0
        scores = seed.clone()
        for _ in range(iterations):
            scores = alpha * torch.zeros_like(scores).index_add_(0, src, weight * scores[dst]) + (1 - alpha) * seed
    if groups is not None and bool(known.any()):
        prior = torch.bincount(labels[known], minlength=num_classes).float()
        scores = balance_within(scores, groups, prior / prior.sum())
    total = scores.sum(1)
    confidence, classes = scores.max(1)
    confidence = torch.where(total > 0, confidence / total.clamp_min(1e-12), torch.zeros_like(confidence))
    return classes, confidence


def join_confident(mu: torch.Tensor, logvar: torch.Tensor, labels: torch.Tensor, rest_mu: torch.Tensor,
                   rest_logvar: torch.Tensor, withheld: torch.Tensor, num_classes: int,
                   threshold: float, groups: torch.Tensor | None = None,
                   rest_groups: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict]:
    """An associator's sources: the paired rows, then the unpaired rows labels spread to with >= ``threshold``.

    ``groups`` / ``rest_groups``: group ids of the paired and unpaired rows, to balance the
    spread classes within each group (:func:`spread_labels`); both or neither.

    Returns latent means, log-variances and classes of the joined rows, and a record for the
    edge: rows added, unpaired rows, the threshold, and the share of the added rows whose
    ``withheld`` (true) label the spreading got right; nothing else reads ``withheld``.
    """
    known = torch.cat([torch.ones(len(mu), dtype=torch.bool), torch.zeros(len(rest_mu), dtype=torch.bool)])
    both = None if groups is None else torch.cat([groups, rest_groups]).cpu()
    classes, confidence = spread_labels(torch.cat([mu, rest_mu]).cpu(), known,
                                        torch.cat([labels, torch.zeros_like(withheld)]).cpu(), num_classes,
                                        groups=both)
    keep = confidence[len(mu):] >= threshold
    guessed = classes[len(mu):][keep]
    on_device = keep.to(mu.device)
    record = {"confidence": threshold, "rows": int(keep.sum()), "unpaired_rows": len(rest_mu),
              "balanced_groups": None if groups is None else len(both.unique()),
              "accuracy": float((guessed == withheld[keep]).float().mean()) if len(guessed) else None}
    return (torch.cat([mu, rest_mu[on_device]]), torch.cat([logvar, rest_logvar[on_device]]),
            torch.cat([labels, guessed]), record)
