"""The cross-modal phase (Eq. 7): prepare each side's rows, train the associators, store them as a pair.

``prepare_side`` is the public preparation of one modality for a link (selecting,
splitting, pairing, encoding and label spreading); benchmarks call it instead of copying it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from modgraph import __version__
from modgraph.runtime import distributed
from modgraph.errors import ConfigError
from modgraph.learning.evaluation import edge_accuracy, translation_judge
from modgraph.features.cache import normalized
from modgraph.modality import FeatureSet
from modgraph.learning.models import Associator
from modgraph.learning.pairing import class_map, paired_subset
from modgraph.learning.pseudo_labels import join_confident
from modgraph.runtime.precision import check_precision
from modgraph.runtime.progress import status
from modgraph.settings import LinkSettings, ResolvedLink
from modgraph.learning.splits import group_ids, select_rows, split_validation, target_labels
from modgraph.learning.targets import cached_confidence, faithful_targets, reconstruction_confidence
from modgraph.learning.training import ClassPairSampler, TrainSettings, encode_all, train_associator


@dataclass
class LinkSide:
    """One modality's rows for a link: paired training rows and validation rows, encoded, with labels.

    ``mu``/``logvar``/``source_y``: the sources (paired rows, then unpaired rows joined by label
    spreading, recorded in ``spread``); ``y``/``val_y``: labels as a target (-1: not aimed at).
    """

    train: FeatureSet
    val: FeatureSet
    x: torch.Tensor
    x_val: torch.Tensor
    mu: torch.Tensor
    logvar: torch.Tensor
    val_mu: torch.Tensor
    source_y: torch.Tensor
    y: torch.Tensor
    val_y: torch.Tensor
    confidence: float
    spread: dict | None


def faithful_labels(mg, name: str, features: FeatureSet, x, min_confidence: float) -> torch.Tensor:
    """Target labels of ``features`` (see :func:`target_labels`), -1 where not faithfully reconstructed."""
    node = mg.node(name)
    y = target_labels(features, node.modality)
    if min_confidence == 0.0:
        return y
    key = [name, str(node.meta.get("created")), node.modality.cache_key(), features.origin.numpy().tobytes(),
           features.augmented.numpy().tobytes(), y.numpy().tobytes()]
    confidence = cached_confidence(mg.cache_dir, key, len(y),
                                   lambda: reconstruction_confidence(node.vae, node.recognizer, x, y))
    return faithful_targets(confidence, y, min_confidence)


def _spread_sources(node, everything: FeatureSet, paired: torch.Tensor, train: FeatureSet, mu, logvar,
                    threshold: float, device):
    """The paired rows joined by the unpaired rows their classes spread to (modgraph.learning.pseudo_labels)."""
    rest = everything.subset(~paired)
    rest_mu, rest_logvar = encode_all(node.vae, normalized(node.modality, rest.x, node.stats).to(device))
    key = node.modality.training_defaults.link_spread_balance
    ids = group_ids(everything, key)
    mu, logvar, source_y, spread = join_confident(
        mu, logvar, train.y, rest_mu, rest_logvar, rest.y, len(node.modality.classes), threshold,
        groups=None if ids is None else ids[paired], rest_groups=None if ids is None else ids[~paired])
    spread["balanced_within"] = key if ids is not None else None
    return mu, logvar, source_y, spread


def prepare_side(mg, name: str, features: FeatureSet, settings: LinkSettings, *, spreads: bool, aimed_at: bool,
                 device: torch.device) -> LinkSide:
    """Select, split, pair and encode one modality's training rows for a link.

    ``spreads``: as a source, unpaired rows may join by label spreading (with a paired
    fraction below 1); ``aimed_at``: as a target, rows its recognizer does not confidently
    see in their reconstruction count as no class.
    """
    node = mg.node(name)
    status(f"{name}: preparing its rows for the link (selecting, pairing, encoding)", mg.progress)
    # An exclusion applies to the modality whose data have that grouping (speakers: the audio side).
    feats = select_rows(features, {k: v for k, v in settings.exclude.items() if k in features.groups})
    everything, val = split_validation(feats, settings.seed)
    paired = paired_subset(everything, settings.paired_fraction, settings.seed)
    # Validation pairs are pairs too: with a paired fraction, the same share of the held-out rows.
    val = val.subset(paired_subset(val, settings.paired_fraction, settings.seed))
    train = everything.subset(paired)
    x_train = normalized(node.modality, train.x, node.stats)
    x_val = normalized(node.modality, val.x, node.stats)
    mu, logvar = encode_all(node.vae, x_train.to(device))
    val_mu, _ = encode_all(node.vae, x_val.to(device))
    threshold, confidence = settings.side(node.modality)
    source_y, spread = train.y, None
    if spreads and threshold < 1.0 and not bool(paired.all()):
        status(f"{name}: spreading the paired rows' labels to {int((~paired).sum())} unpaired rows", mg.progress)
        mu, logvar, source_y, spread = _spread_sources(node, everything, paired, train, mu, logvar, threshold, device)
    confidence = confidence if aimed_at else 0.0
    if confidence > 0:
        status(f"{name}: finding the targets its VAE reconstructs recognisably (confidence >= {confidence:g})",
               mg.progress)
    y, val_y = (faithful_labels(mg, name, f, xs, confidence) for f, xs in ((train, x_train), (val, x_val)))
    return LinkSide(train, val, x_train, x_val, mu, logvar, val_mu, source_y, y, val_y, confidence, spread)


@dataclass
class TrainedEdge:
    assoc: Associator
    log: dict
    settings: ResolvedLink
    mapping: dict[int, int]
    paired_rows: int


def train_edge(mg, src: str, dst: str, s: LinkSide, t: LinkSide, settings: ResolvedLink, mapping: dict[int, int],
               device: torch.device) -> TrainedEdge:
    """One associator, ``src`` -> ``dst``, on the prepared sides (the VAEs frozen)."""
    dst_node = mg.node(dst)
    train_settings = TrainSettings(epochs=settings.epochs, batch_size=settings.batch_size, lr=settings.lr,
                                   kl_weight=settings.kl_weight, seed=settings.seed, precision=mg.precision,
                                   device=device, progress=mg.progress, description=f"{src} -> {dst}")
    train_pairs = ClassPairSampler(s.source_y, t.y, mapping, settings.seed)
    val_pairs = ClassPairSampler(s.val.y, t.val_y, mapping, settings.seed + 1)
    if len(train_pairs) == 0:
        raise ConfigError(f"no training pairs between {src} and {dst} after exclusions and "
                          f"--paired-fraction {settings.paired_fraction}")
    torch.manual_seed(settings.seed)
    assoc = Associator(dst_node.modality.associator_config(mg.node(src).vae.latent_dim, dst_node.vae.latent_dim))
    judge = translation_judge(s.val_mu, s.val.y, mapping, dst_node, settings.seed)
    log = train_associator(assoc, s.mu, s.logvar, train_pairs, val_pairs, s.val_mu, dst_node.vae, t.x, t.x_val,
                           dst_node.modality.reconstruction_loss, train_settings,
                           pairs_per_epoch=dst_node.modality.training_defaults.link_pairs_per_epoch,
                           candidates=settings.candidates, source_noise=settings.source_noise, judge=judge,
                           select=settings.select)
    paired_rows = int((train_pairs.source_rows < len(s.train)).sum())  # joined rows come after
    return TrainedEdge(assoc, log, settings, mapping, paired_rows)


def edge_header(mg, src: str, dst: str, edge: TrainedEdge, sides: dict[str, LinkSide],
                created: dict[str, str]) -> tuple[dict, dict]:
    """The metrics of a trained associator (on the test split) and its stored header."""
    status(f"{src} -> {dst}: scoring on {src}'s test split", mg.progress)
    acc = edge_accuracy(mg, src, dst, edge.assoc, edge.mapping, "test")
    s, log, st = sides[src], edge.log, edge.settings
    metrics = {"accuracy": acc["accuracy"], "test_samples": acc["n"], "val_loss": log["best_val_loss"],
               "val_accuracy": log["val_accuracy"], "val_samples": len(s.val), "val_judged": log["val_judged"],
               "paired_source_rows": edge.paired_rows, "target_rows": int((sides[dst].y >= 0).sum())}
    if s.spread:
        metrics["pseudo_labels"] = s.spread
    meta = {
        "kind": "associator", "source": src, "target": dst, "modgraph_version": __version__,
        "config": {"associator": edge.assoc.config.model_dump(mode="json")},
        "class_map": sorted([i, j] for i, j in edge.mapping.items()), "pairing": st.pairing,
        "paired_fraction": st.paired_fraction, "metrics": metrics,
        "source_node_created": created[src], "target_node_created": created[dst],
        "training": {**st.training_header(), "epoch_kept": log["epoch_kept"],
                     "target_exclude": mg.node(dst).modality.target_exclude, "history": log["history"]},
    }
    return metrics, meta


def link(mg, source: str, target: str, settings: LinkSettings) -> dict:
    """Train both associators between two trained modalities (``one_way``: source->target only), VAEs frozen."""
    if source == target:
        raise ConfigError(f"cannot link {source!r} to itself; a modality's VAE already maps it to itself")
    a, b = mg.node(source), mg.node(target)
    # The node versions trained against: a node retrained meanwhile makes these edges stale, and they are refused.
    created = {source: a.meta.get("created"), target: b.meta.get("created")}
    maps = {(source, target): class_map(a.modality, b.modality, settings.pairing),
            (target, source): class_map(b.modality, a.modality, settings.pairing)}
    device = distributed.setup(mg.device)
    check_precision(mg.precision, device)  # before the data: a GPU without bf16 fails in a second
    train_sets = {name: mg.features(node.modality, "train") for name, node in ((source, a), (target, b))}
    for key in settings.exclude:
        if not any(key in f.groups for f in train_sets.values()):
            raise ConfigError(f"neither {source} nor {target} has a {key!r} grouping to exclude")
    sides = {name: prepare_side(mg, name, train_sets[name], settings, device=device,
                                spreads=not (settings.one_way and name == target),
                                aimed_at=name == target or not settings.one_way)
             for name in (source, target)}
    directions = [(source, target)] if settings.one_way else [(source, target), (target, source)]
    edges = {(src, dst): train_edge(mg, src, dst, sides[src], sides[dst],
                                    settings.resolve(mg.node(src).modality, mg.node(dst).modality),
                                    maps[(src, dst)], device) for src, dst in directions}
    outputs, results = [], {}
    for (src, dst), edge in edges.items():
        metrics, meta = edge_header(mg, src, dst, edge, sides, created)
        outputs.append((src, dst, edge.assoc, meta))
        results[f"{src}->{dst}"] = metrics
    if not distributed.is_main():  # under torchrun rank 0 writes what every rank trained alike
        distributed.barrier()
        return {"source": source, "target": target,
                "paths": [str(mg.registry.edge_path(s, d)) for s, d, _, _ in outputs], "metrics": results}
    written = mg.registry.save_edges(outputs, created)
    distributed.barrier()
    return {"source": source, "target": target, "paths": [str(p) for p in written], "metrics": results}
