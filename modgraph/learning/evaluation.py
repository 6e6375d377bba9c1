"""Recognition accuracy, the paper's measure: a recognizer trained on real data judges generated outputs.

``evaluate`` scores a route over a split, ``edge_accuracy`` one associator on its test
split, and ``translation_judge`` rates an associator on validation sources while it trains.
"""

from __future__ import annotations

import torch

from modgraph.errors import ConfigError
from modgraph.learning.models import Associator, Recognizer, VAE
from modgraph.learning.pairing import compose
from modgraph.learning.splits import paired_classes, select_rows
from modgraph.learning.targets import reconstruction_probabilities
from modgraph.learning.training import predict
from modgraph.runtime.progress import Progress
from modgraph.settings import DEFAULT_ANCHOR

EVAL_BATCH = 1024


def accuracy(recognizer: Recognizer, x: torch.Tensor, y: torch.Tensor) -> float:
    return (predict(recognizer, x) == y).float().mean().item() if len(y) else float("nan")


def reconstruction_accuracy(vae: VAE, recognizer: Recognizer, x, y: torch.Tensor) -> float:
    """How often the recognizer names the class of a reconstruction (Table 2's metric)."""
    if not len(y):
        return float("nan")
    return (reconstruction_probabilities(vae, recognizer, x).argmax(1) == y).float().mean().item()


@torch.no_grad()
def edge_accuracy(mg, source: str, target: str, assoc: Associator, mapping: dict[int, int], split: str) -> dict:
    """The share of ``split``'s source originals whose one-step translation the target's recognizer reads right."""
    src, dst = mg.node(source), mg.node(target)
    feats = mg.features(src.modality, split).originals()
    keep, expected = paired_classes(feats.y, mapping)
    feats = feats.subset(keep)
    device = mg.device
    correct = 0
    for s in range(0, len(feats), EVAL_BATCH):
        mu, _ = src.vae.encode(src.modality.normalize(feats.x[s:s + EVAL_BATCH], src.stats).to(device))
        z, _ = assoc.to(device).eval()(mu)
        pred = predict(dst.recognizer, dst.vae.decode(z))
        correct += int((pred == expected[s:s + EVAL_BATCH]).sum())
    return {"accuracy": correct / max(1, len(feats)), "n": len(feats)}


def route_class_map(mg, path: list[str]) -> dict[int, int]:
    """Source class -> target class along ``path`` (identity for a one-node path)."""
    if len(path) == 1:
        return {i: i for i in range(len(mg.node(path[0]).modality.classes))}
    g = mg.graph()
    return compose([{int(i): int(j) for i, j in g.edges[a, b]["class_map"]} for a, b in zip(path[:-1], path[1:])])


def evaluate(mg, source: str, target: str, via: list[str] | None = None, split: str = "test",
             include: dict[str, list[str]] | None = None, judge: Recognizer | None = None,
             anchor: int = DEFAULT_ANCHOR) -> dict:
    """Recognition accuracy of translations (``source == target``: VAE reconstruction accuracy).

    The source split is translated along the route, the target's recognizer (or ``judge``,
    any classifier of the target's normalised inputs) classifies each output, and the
    result is compared with the paired class. ``anchor`` k > 0 measures what ``translate``
    writes by default (:mod:`modgraph.inference.anchors`); 0 is the paper's translation. The result's
    ``anchor`` says which was measured: k, or 0 for the paper's translation (also when the source node
    stores no anchors, then ``anchors_missing`` is true); a one-node path is never anchored.
    """
    if split not in ("train", "test", "all"):
        raise ConfigError(f"--split must be test, train or all, not {split!r}")
    path = mg.route(source, target, via)
    src, dst = mg.node(source), mg.node(target)
    splits = ["train", "test"] if split == "all" else [split]
    feats = [select_rows(mg.features(src.modality, s), include=include).originals() for s in splits]
    keep, expected = paired_classes(torch.cat([f.y for f in feats]), route_class_map(mg, path))
    if not len(expected):
        chosen = f" with --include {', '.join(f'{k}={v}' for k, vs in include.items() for v in vs)}" if include else ""
        raise ConfigError(f"no {split} rows of {source} to evaluate{chosen}; nothing was measured")
    preds = []
    parts = [f.subset(kept).x for f, kept in zip(feats, keep.split([len(f) for f in feats]))]
    batches = sum(-(-len(x) // EVAL_BATCH) for x in parts)
    # Split by split, in batches: features left on disk are never loaded whole.
    with Progress(batches, f"{' -> '.join(path)}: translating and reading {split} rows",
                  getattr(mg, "progress", False), unit="batch", summary_after=2) as bar:
        for x in parts:
            for s in range(0, len(x), EVAL_BATCH):
                out = mg.translate_normalized(path, src.modality.normalize(x[s:s + EVAL_BATCH], src.stats),
                                              anchor=anchor)
                preds.append(predict(judge or dst.recognizer, out[:, 0]))
                bar.update()
    pred = torch.cat(preds) if preds else torch.zeros(0, dtype=torch.long)
    correct = pred == expected
    per_class = {dst.modality.classes[c].name: round(correct[expected == c].float().mean().item(), 4)
                 for c in expected.unique().tolist()}
    result = {"source": source, "target": target, "path": path, "split": split, "n": int(len(expected)),
              "accuracy": correct.float().mean().item() if len(expected) else float("nan"),
              "per_class": per_class}
    if len(path) > 1:
        result["anchor"] = anchor if src.anchors is not None else 0
        result["anchors_missing"] = bool(anchor) and src.anchors is None
    return result


def translation_judge(val_mu: torch.Tensor, val_y: torch.Tensor, mapping: dict[int, int], target, seed: int,
                      limit: int = 5000):
    """A function of an associator: the share of (up to ``limit``, drawn with ``seed``) validation
    sources whose translation the target's recognizer reads as the paired class."""
    keep, expected = paired_classes(val_y, mapping)
    rows = keep.nonzero().flatten()
    pick = torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed))[:limit]
    mu, expected = val_mu[rows[pick].to(val_mu.device)], expected[pick]

    @torch.no_grad()
    def judge(assoc: Associator) -> float:
        if not len(mu):
            return 0.0
        preds = [predict(target.recognizer, target.vae.decode(assoc(mu[s:s + EVAL_BATCH])[0]))
                 for s in range(0, len(mu), EVAL_BATCH)]
        return int((torch.cat(preds).cpu() == expected).sum()) / len(expected)
    judge.samples = len(mu)
    return judge


# A score this close to chance (1 / classes) means a model learnt next to nothing.
CHANCE_MARGIN = 0.05


def near_chance(accuracy: float | None, classes: int) -> bool:
    """Whether ``accuracy`` is within ``CHANCE_MARGIN`` of guessing among ``classes``."""
    return accuracy is not None and classes > 1 and accuracy == accuracy and accuracy < 1 / classes + CHANCE_MARGIN


def node_warnings(name: str, metrics: dict, classes: int) -> list[str]:
    """One line per figure of a new node at chance: what it means, the likely causes, what to try."""
    chance = f"at chance for {classes} classes ({100 / classes:.0f}%)"
    lines = []
    if near_chance(metrics.get("recognizer_accuracy"), classes):
        lines.append(f"{name}'s recognizer scores {100 * metrics['recognizer_accuracy']:.1f}%, {chance}: likely too "
                     f"few samples, or features that are mostly noise; try more --recognizer-epochs, more data, or "
                     f"modgraph tune {name}")
    elif near_chance(metrics.get("reconstruction_accuracy"), classes):
        lines.append(f"{name}'s VAE reconstructions are read right {100 * metrics['reconstruction_accuracy']:.1f}% of "
                     f"the time, {chance}: the VAE likely collapsed (a KL weight too strong for the data, a learning "
                     f"rate too high or too low, too little data, features mostly noise); try a smaller --kl-weight, "
                     f"another --lr, more --epochs or data, or modgraph tune {name}")
    return lines


def link_warning(source: str, target: str, metrics: dict, classes: int) -> str | None:
    """One line when an associator's translations are read right no more often than chance."""
    if not near_chance(metrics.get("accuracy"), classes):
        return None
    return (f"{source} -> {target} translations are read right {100 * metrics['accuracy']:.1f}% of the time, at "
            f"chance for {target}'s {classes} classes ({100 / classes:.0f}%): likely too few pairs, a target VAE "
            f"whose reconstructions are rarely recognisable, or a learning rate that stalls; try more --epochs, "
            f"another --lr or --kl-weight, --target-confidence 0, a larger --paired-fraction, or "
            f"modgraph tune {source} {target}")
