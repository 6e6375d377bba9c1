"""The intra-modal phase (Eq. 6): a modality's VAE and recognizer, trained alone on its own data."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from modgraph import __version__
from modgraph.runtime import distributed
from modgraph.inference.anchors import training_anchors
from modgraph.errors import ConfigError
from modgraph.learning.evaluation import accuracy, reconstruction_accuracy
from modgraph.features.cache import fit_statistics, normalized
from modgraph.learning.models import Recognizer, VAE
from modgraph.modality import FeatureSet
from modgraph.runtime.precision import check_precision
from modgraph.runtime.progress import status
from modgraph.settings import NodeSettings, ResolvedNode
from modgraph.learning.splits import select_rows, split_validation
from modgraph.learning.training import TrainSettings, original_rows, train_recognizer, train_vae

RECOGNIZER_LR = 2e-3


def check_buildable(modality, resolved: ResolvedNode) -> None:
    """Refuse settings the modality's architecture cannot take, before any data loads."""
    from pydantic import ValidationError

    from modgraph.errors import validation_message

    try:
        modality.vae_config(resolved.latent_dim)
    except ValidationError as exc:
        raise ConfigError(validation_message(f"settings for {modality.name!r}", exc)) from None


@dataclass
class NodeRows:
    """A node's training, validation and test rows, its normalisation statistics and normalised inputs."""

    train: FeatureSet
    val: FeatureSet
    test: FeatureSet
    stats: dict
    xt: torch.Tensor
    xv: torch.Tensor
    xs: torch.Tensor


def node_rows(mg, modality, r: ResolvedNode, download: bool = False) -> NodeRows:
    """Read, select, split and normalise a modality's rows as ``add_modality`` trains on them."""
    name = modality.name
    status(f"{name}: reading its training and test features", mg.progress)
    train_all = select_rows(mg.features(modality, "train", download), r.exclude)
    test = select_rows(mg.features(modality, "test", download), r.exclude).originals()
    if len(train_all) < 2:
        raise ConfigError(f"{name}: too few training samples ({len(train_all)}) after exclusions")
    train, val = split_validation(train_all, r.seed)
    stats = fit_statistics(modality, train.x)  # streamed over the shards of a split left on disk
    xt, xv, xs = (normalized(modality, x, stats) for x in (train.x, val.x, test.x))
    return NodeRows(train, val, test, stats, xt, xv, xs)


def fit_vae(mg, modality, r: ResolvedNode, rows: NodeRows, device) -> tuple[VAE, dict]:
    """The VAE of Eq. 6 trained from the seed; returns it and its log."""
    settings = TrainSettings(epochs=r.epochs, batch_size=r.batch_size, lr=r.lr, kl_weight=r.kl_weight, seed=r.seed,
                             device=device, progress=mg.progress, description=f"{modality.name} VAE",
                             precision=mg.precision)
    torch.manual_seed(r.seed)
    vae = VAE(modality.vae_config(r.latent_dim))
    target_rows = original_rows(rows.train.origin, rows.train.augmented) if r.vae_target == "original" else None
    return vae, train_vae(vae, rows.xt, rows.xv, modality.reconstruction_loss, settings,
                          augment=modality.augment_batch, target_rows=target_rows)


def fit_recognizer(mg, modality, r: ResolvedNode, rows: NodeRows, device) -> tuple[Recognizer, dict]:
    """The recognizer trained from the seed on real rows (independent of the VAE); returns it and its log."""
    settings = TrainSettings(epochs=r.recognizer_epochs, batch_size=r.batch_size, lr=RECOGNIZER_LR, kl_weight=0.0,
                             seed=r.seed, device=device, progress=mg.progress,
                             description=f"{modality.name} recognizer", precision=mg.precision)
    torch.manual_seed(r.seed)
    recognizer = Recognizer(modality.recognizer_config())
    return recognizer, train_recognizer(recognizer, rows.xt, rows.train.y, rows.xv, rows.val.y, settings,
                                        augment=modality.augment_batch)


def node_header(mg, modality, r: ResolvedNode, parts: dict, device) -> dict:
    """A node's stored header: what trained it on which data, and how well it does."""
    train, val, test = parts["train"], parts["val"], parts["test"]
    return {
        "kind": "modality", "name": modality.name, "plugin": modality.distribution,
        "plugin_version": modality.distribution_version, "modgraph_version": __version__,
        "config": {"vae": parts["vae"].config.model_dump(mode="json"),
                   "recognizer": parts["recognizer"].config.model_dump(mode="json")},
        "preprocessing": parts["stats"], "metrics": parts["metrics"], "options": r.options,
        "classes": [c.model_dump(exclude_none=True) for c in modality.classes],
        # The dataset facts, so that the card needs no plugin; data.root is a local hint, left out of exports.
        **({"dataset": modality.dataset.model_dump()} if getattr(modality, "dataset", None) else {}),
        "data": {"root": str(mg.data_root.absolute()), "train_rows": len(train), "val_samples": len(val),
                 "augmented_rows": int(train.augmented.sum()), "test_samples": len(test), "exclude": r.exclude},
        "training": {**r.training_header(), "device": str(device), "precision": mg.precision, "processes": distributed.world_size(),
                     "history": parts["vae_log"]["history"]},
    }


def add_modality(mg, name: str, settings: NodeSettings, download: bool = False) -> dict:
    """Train a modality's VAE and recognizer and store them as a registry node (see ``ModGraph.add_modality``)."""
    modality = mg.modality(name, settings.options or None)
    check_buildable(modality, settings.resolve(modality))  # bad settings fail before any data is read
    device = distributed.setup(mg.device)
    check_precision(mg.precision, device)  # before the data: a GPU without bf16 fails in a second
    # Options that depend on the data (gsc: which words have enough clips) are settled here and stored.
    with distributed.main_process_first():  # a download happens once
        modality, notes = modality.for_data(mg.data_root, download)
    r = settings.resolve(modality)
    rows = node_rows(mg, modality, r, download)
    train, val, test, stats, xt, xv, xs = (rows.train, rows.val, rows.test, rows.stats, rows.xt, rows.xv, rows.xs)
    vae, vae_log = fit_vae(mg, modality, r, rows, device)
    recognizer, rec_log = fit_recognizer(mg, modality, r, rows, device)
    status(f"{name}: scoring the recognizer and the reconstructions on {len(test)} test samples", mg.progress)
    metrics = {
        "recognizer_accuracy": accuracy(recognizer, xs, test.y),
        "reconstruction_accuracy": reconstruction_accuracy(vae, recognizer, xs, test.y),
        # what modgraph tune maximises (the test split stays out of every choice)
        "val_reconstruction_accuracy": reconstruction_accuracy(vae, recognizer, xv, val.y),
        "val_loss": vae_log["best_val_loss"],
        "recognizer_val_accuracy": rec_log["best_val_accuracy"],
        "test_samples": len(test),
    }
    meta = node_header(mg, modality, r, dict(train=train, val=val, test=test, vae=vae, recognizer=recognizer,
                                             stats=stats, metrics=metrics, vae_log=vae_log), device)
    path = mg.registry.node_path(name)
    if distributed.is_main():  # under torchrun every rank holds the same weights; one writes them
        anchors = training_anchors(vae.eval(), xt, train.y, torch.nonzero(~train.augmented)[:, 0], r.seed)
        mg.registry.save_node(name, vae, recognizer, meta, anchors)
    distributed.barrier()
    return {"name": name, "path": str(path), "metrics": metrics, "latent_dim": r.latent_dim, "notes": notes}
