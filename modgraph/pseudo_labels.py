"""Labels for unpaired samples, spread from the paired ones through a modality's latent space.

With few samples paired (``--paired-fraction``), an associator sees few distinct sources.
Label spreading (Zhou et al., 2004) on a k-nearest-neighbour graph of the VAE's latent
means carries the paired samples' classes to the unpaired ones that lie in the same
clusters; those it gives a confident class may join the associator's sources. It uses no
label beyond the paired samples' and no recognizer.
"""

from __future__ import annotations

import torch

NEIGHBOURS = 20
ALPHA = 0.99
ITERATIONS = 30


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


def spread_labels(z: torch.Tensor, known: torch.Tensor, labels: torch.Tensor, num_classes: int,
                  neighbours: int = NEIGHBOURS, alpha: float = ALPHA,
                  iterations: int = ITERATIONS) -> tuple[torch.Tensor, torch.Tensor]:
    """Class and confidence (share of the spread mass, 0..1) for every row of ``z``.

    ``known``: boolean mask of the rows whose ``labels`` are given (the other rows' labels
    are not read). Latent dimensions are standardised first; edges weigh exp(-(d/sigma)^2)
    with sigma the mean distance to the k-th neighbour; the graph is symmetrised and
    normalised as D^-1/2 W D^-1/2. A row that no labelled row reaches gets confidence 0.
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
    total = scores.sum(1)
    confidence, classes = scores.max(1)
    confidence = torch.where(total > 0, confidence / total.clamp_min(1e-12), torch.zeros_like(confidence))
    return classes, confidence


def join_confident(mu: torch.Tensor, logvar: torch.Tensor, labels: torch.Tensor, rest_mu: torch.Tensor,
                   rest_logvar: torch.Tensor, withheld: torch.Tensor, num_classes: int,
                   threshold: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict]:
    """An associator's sources: the paired rows, then the unpaired rows labels spread to with >= ``threshold``.

    Returns latent means, log-variances and classes of the joined rows, and a record for the
    edge: rows added, unpaired rows, the threshold, and the share of the added rows whose
    ``withheld`` (true) label the spreading got right; nothing else reads ``withheld``.
    """
    known = torch.cat([torch.ones(len(mu), dtype=torch.bool), torch.zeros(len(rest_mu), dtype=torch.bool)])
    classes, confidence = spread_labels(torch.cat([mu, rest_mu]).cpu(), known,
                                        torch.cat([labels, torch.zeros_like(withheld)]), num_classes)
    keep = confidence[len(mu):] >= threshold
    guessed = classes[len(mu):][keep]
    on_device = keep.to(mu.device)
    record = {"confidence": threshold, "rows": int(keep.sum()), "unpaired_rows": len(rest_mu),
              "accuracy": float((guessed == withheld[keep]).float().mean()) if len(guessed) else None}
    return (torch.cat([mu, rest_mu[on_device]]), torch.cat([logvar, rest_logvar[on_device]]),
            torch.cat([labels, guessed]), record)
