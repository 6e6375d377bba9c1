"""The library API: a registry of modalities linked by associators, and what to do with it.

``ModGraph`` adds modalities (intra-modal phase), links them (cross-modal phase),
routes, translates tensors or files, and evaluates; the CLI is a thin layer over it.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import networkx as nx
import torch

from modgraph import __version__, distributed
from modgraph.errors import (ConfigError, InputFileError, NotInRegistryError, RegistryCorruptError,
                             UnknownModalityError)
from modgraph.features import default_cache_dir, default_data_root, fit_statistics, load_split, normalized
from modgraph.modality import FeatureSet, Modality
from modgraph.models import Associator, AssociatorConfig, Recognizer, RecognizerConfig, VAE, VAEConfig
from modgraph.pairing import class_map, compose, paired_subset
from modgraph.plugins import PluginHost
from modgraph.pseudo_labels import join_confident
from modgraph.readings import read_batch, translation_rows
from modgraph.registry import Registry
from modgraph.routing import find_route
from modgraph.targets import (cached_confidence, faithful_targets, reconstruction_confidence,
                              reconstruction_probabilities)
from modgraph.training import (ClassPairSampler, TrainSettings, configure_threads, encode_all, predict,
                               original_rows, resolve_device, train_associator, train_recognizer, train_vae)

VAL_FRACTION = 0.1


@dataclass
class LoadedNode:
    modality: Modality
    vae: VAE
    recognizer: Recognizer
    stats: dict
    meta: dict


def _group_ids(features: FeatureSet, key: str | None) -> torch.Tensor | None:
    """A group id per row for grouping ``key`` of ``features``; None without one (or no such grouping)."""
    if key is None or key not in features.groups:
        return None
    names = {name: i for i, name in enumerate(sorted(set(features.groups[key])))}
    return torch.tensor([names[v] for v in features.groups[key]], dtype=torch.long)


def _select(features: FeatureSet, exclude: dict[str, list[str]] | None = None,
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


def _positive(name: str, value, minimum=1):
    if value is not None and value < minimum:
        raise ConfigError(f"--{name.replace('_', '-')} must be at least {minimum}, not {value}")


class ModGraph:
    """A registry of trained modalities and associators, with the plugins that define them."""

    def __init__(self, registry: str | Path | None = None, data_root: str | Path | None = None,
                 cache_dir: str | Path | None = None, device: str = "auto", progress: bool = True,
                 plugins: PluginHost | None = None, precision: str = "fp32"):
        """``precision``: ``bf16`` trains under bf16 autocast (weights stay fp32); see ``modgraph.precision``."""
        self.registry = Registry(registry)
        self.data_root = Path(data_root) if data_root is not None else default_data_root()
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self._device_name = device
        self.precision = precision
        self.progress = progress
        self.plugins = plugins if plugins is not None else PluginHost()
        self._nodes: dict[str, LoadedNode] = {}
        configure_threads()
        self._edges: dict[tuple[str, str], Associator] = {}

    @property
    def device(self) -> torch.device:
        """The device asked for; under torchrun, a CUDA device is this rank's GPU (``LOCAL_RANK``)."""
        return distributed.local_device(resolve_device(self._device_name))

    # -- plugins and modalities ------------------------------------------------------
    def modality(self, name: str, options: dict | None = None) -> Modality:
        base = self.plugins.get(name)
        return base.with_options(options) if options else base

    def available_modalities(self) -> dict[str, Modality]:
        return self.plugins.modalities()

    def features(self, modality: Modality, split: str, download: bool = False) -> FeatureSet:
        if split not in ("train", "test"):
            raise ConfigError(f"split must be train or test, not {split!r}")
        with distributed.main_process_first():  # under torchrun rank 0 builds the cache, the others read it
            return load_split(modality, self.data_root, split, download=download, cache_dir=self.cache_dir,
                              progress=self.progress)

    # -- the graph ----------------------------------------------------------------------
    def graph(self) -> nx.DiGraph:
        return self.registry.graph()

    def route(self, source: str, target: str, via: list[str] | None = None) -> list[str]:
        return find_route(self.graph(), source, target, via)

    def describe(self) -> dict:
        """Nodes and edges with their metrics, as plain data (``modgraph graph``)."""
        g = self.graph()
        nodes = [{"name": n, "plugin": d.get("plugin"), "latent_dim": (d.get("config") or {}).get("vae", {})
                  .get("latent_dim"), "options": d.get("options"), "metrics": d.get("metrics"),
                  "created": d.get("created")} for n, d in g.nodes(data=True)]
        edges = [{"source": a, "target": b, "pairing": d.get("pairing"), "paired_fraction": d.get("paired_fraction"),
                  "metrics": d.get("metrics"), "stale": d.get("stale"), "created": d.get("created")}
                 for a, b, d in g.edges(data=True)]
        return {"registry": str(self.registry.root), "nodes": nodes, "edges": edges}

    # -- loading trained parts --------------------------------------------------------
    def node(self, name: str) -> LoadedNode:
        path = self.registry.node_path(name)
        meta = self.registry.node_metadata(name)
        cached = self._nodes.get(name)
        if cached is not None and cached.meta.get("created") == meta.get("created"):
            return cached
        try:
            options = meta.get("options")
            if options is not None:  # fields added since the node was trained keep the behaviour it had
                options = {**self.modality(name).options_model.legacy, **options}
            modality = self.modality(name, options or None)
        except UnknownModalityError as exc:
            raise UnknownModalityError(f"registry node {name!r} was made by plugin {meta.get('plugin')!r}, "
                                       f"which is not installed here: {exc}") from None
        tensors = self.registry.load_tensors(path)
        config = meta.get("config") or {}
        try:
            vae = VAE(VAEConfig(**config["vae"]))
            recognizer = Recognizer(RecognizerConfig(**config["recognizer"]))
            vae.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("vae.")})
            recognizer.load_state_dict({k[11:]: v for k, v in tensors.items() if k.startswith("recognizer.")})
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            first = " ".join(str(exc).split())[:300] or type(exc).__name__
            raise RegistryCorruptError(f"registry file {path} does not match the architecture of modality {name!r} "
                                       f"(plugin {modality.distribution}): {first}; retrain it with: "
                                       f"modgraph add-modality {name}") from None
        device = self.device
        loaded = LoadedNode(modality, vae.to(device).eval(), recognizer.to(device).eval(),
                            meta.get("preprocessing") or {}, meta)
        self._nodes[name] = loaded
        return loaded

    def associator(self, source: str, target: str) -> Associator:
        path = self.registry.edge_path(source, target)
        meta = self.registry.edge_metadata(source, target)
        key = (source, target, meta.get("created"))
        if key in self._edges:
            return self._edges[key]
        tensors = self.registry.load_tensors(path)
        try:
            assoc = Associator(AssociatorConfig(**meta["config"]["associator"]))
            assoc.load_state_dict({k[11:]: v for k, v in tensors.items() if k.startswith("associator.")})
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            first = " ".join(str(exc).split())[:300] or type(exc).__name__
            raise RegistryCorruptError(f"registry file {path} is not a valid associator: {first}; retrain it "
                                       f"with: modgraph link {source} {target}") from None
        assoc = assoc.to(self.device).eval()
        self._edges[key] = assoc
        return assoc

    # -- intra-modal phase ---------------------------------------------------------------
    def add_modality(self, name: str, *, latent_dim: int | None = None, epochs: int | None = None,
                     batch_size: int | None = None, lr: float | None = None, kl_weight: float | None = None,
                     recognizer_epochs: int | None = None, seed: int = 0, download: bool = False,
                     options: dict | None = None, exclude: dict[str, list[str]] | None = None,
                     vae_target: str | None = None) -> dict:
        """Train a modality's VAE and recognizer and store them as a registry node.

        The node replaces an existing one only after training succeeded; associators
        linked to the old node become stale and must be re-linked. ``vae_target``:
        ``"input"`` (Eq. 6) or ``"original"`` (augmented copies reconstruct their original;
        see :class:`~modgraph.modality.TrainingDefaults`); default the modality's.
        """
        modality = self.modality(name, options)
        d = modality.training_defaults
        latent_dim = modality.default_latent_dim if latent_dim is None else latent_dim  # 0 is an error, not the default
        for key, value in (("latent_dim", latent_dim), ("epochs", epochs), ("batch_size", batch_size),
                           ("recognizer_epochs", recognizer_epochs)):
            _positive(key, value)
        if lr is not None and not lr > 0:
            raise ConfigError(f"--lr must be positive, not {lr}")
        if kl_weight is not None and kl_weight < 0:
            raise ConfigError(f"--kl-weight must be zero or positive, not {kl_weight}")
        vae_target = vae_target or d.vae_target
        if vae_target not in ("input", "original"):
            raise ConfigError(f"--vae-target must be 'input' or 'original', not {vae_target!r}")
        device = distributed.setup(self.device)
        train_all = _select(self.features(modality, "train", download), exclude)
        test = _select(self.features(modality, "test", download), exclude).originals()
        if len(train_all) < 2:
            raise ConfigError(f"{name}: too few training samples ({len(train_all)}) after exclusions")
        train, val = split_validation(train_all, seed)
        stats = fit_statistics(modality, train.x)  # streamed over the shards of a split left on disk
        norm = lambda x: normalized(modality, x, stats)  # noqa: E731
        xt, xv, xs = norm(train.x), norm(val.x), norm(test.x)
        settings = TrainSettings(epochs=epochs or d.epochs, batch_size=batch_size or d.batch_size, lr=lr or d.lr,
                                 kl_weight=d.kl_weight if kl_weight is None else kl_weight, seed=seed,
                                 device=device, progress=self.progress, description=f"{name} VAE",
                                 precision=self.precision)
        torch.manual_seed(seed)
        vae = VAE(modality.vae_config(latent_dim))
        target_rows = original_rows(train.origin, train.augmented) if vae_target == "original" else None
        vae_log = train_vae(vae, xt, xv, modality.reconstruction_loss, settings, augment=modality.augment_batch,
                            target_rows=target_rows)
        rec_settings = TrainSettings(epochs=recognizer_epochs or d.recognizer_epochs, batch_size=settings.batch_size,
                                     lr=2e-3, kl_weight=0.0, seed=seed, device=device, progress=self.progress,
                                     description=f"{name} recognizer", precision=self.precision)
        torch.manual_seed(seed)
        recognizer = Recognizer(modality.recognizer_config())
        rec_log = train_recognizer(recognizer, xt, train.y, xv, val.y, rec_settings, augment=modality.augment_batch)
        metrics = {
            "recognizer_accuracy": _accuracy(recognizer, xs, test.y),
            "reconstruction_accuracy": _reconstruction_accuracy(vae, recognizer, xs, test.y),
            "val_loss": vae_log["best_val_loss"],
            "recognizer_val_accuracy": rec_log["best_val_accuracy"],
            "test_samples": len(test),
        }
        tensors = {f"vae.{k}": v for k, v in vae.state_dict().items()}
        tensors.update({f"recognizer.{k}": v for k, v in recognizer.state_dict().items()})
        meta = {
            "kind": "modality", "name": name, "plugin": modality.distribution,
            "plugin_version": modality.distribution_version, "modgraph_version": __version__,
            "config": {"vae": vae.config.model_dump(mode="json"), "recognizer": recognizer.config.model_dump(mode="json")},
            "preprocessing": stats, "metrics": metrics, "options": modality.options.model_dump(mode="json"),
            "classes": [c.model_dump() for c in modality.classes],
            "data": {"root": str(self.data_root), "train_rows": len(train), "val_samples": len(val),
                     "augmented_rows": int(train.augmented.sum()), "test_samples": len(test),
                     "exclude": exclude or {}},
            "training": {"epochs": settings.epochs, "batch_size": settings.batch_size, "lr": settings.lr,
                         "kl_weight": settings.kl_weight, "recognizer_epochs": rec_settings.epochs, "seed": seed,
                         "vae_target": vae_target,
                         "device": str(device), "precision": self.precision,
                         "processes": distributed.world_size(), "history": vae_log["history"]},
        }
        path = self.registry.node_path(name)
        if distributed.is_main():  # under torchrun every rank holds the same weights; one writes them
            with self.registry.lock():
                self.registry.write(path, tensors, meta)
        distributed.barrier()
        self._nodes.pop(name, None)
        return {"name": name, "path": str(path), "metrics": metrics, "latent_dim": latent_dim}

    # -- cross-modal phase ---------------------------------------------------------------
    def link(self, source: str, target: str, *, pairing: str = "concept", paired_fraction: float = 1.0,
             epochs: int | None = None, batch_size: int | None = None, lr: float | None = None,
             kl_weight: float | None = None, seed: int = 0, candidates: int | None = None,
             target_confidence: float | None = None, source_noise: float | None = None,
             exclude: dict[str, list[str]] | None = None, one_way: bool = False,
             pseudo_label_confidence: float | None = None, select: str | None = None) -> dict:
        """Train both associators between two trained modalities (``one_way``: source->target only), VAEs frozen.

        ``candidates``: class-matched partners drawn per source sample, the loss taking the
        closest (1 is the paper's Eq. 7; default: the target modality's ``link_candidates``).
        ``target_confidence``: aim only at target samples whose reconstruction the target's
        recognizer gives at least this probability of their class (:mod:`modgraph.targets`;
        0 is the paper's protocol; default: the target modality's ``link_target_confidence``).
        ``source_noise``: the associator trains on mu + source_noise * sigma * eps of the source
        encoder (1 is the paper's sample, 0 the posterior mean; default: the source modality's
        ``link_source_noise``).
        ``pseudo_label_confidence``: with a paired fraction below 1, unpaired source rows to
        which the paired rows' classes spread with at least this confidence join the sources
        (:mod:`modgraph.pseudo_labels`; 1 turns it off, the paper's protocol; default: the
        source modality's ``link_pseudo_label_confidence``).
        ``select``: the epoch kept, by validation ``loss`` or by validation translation
        ``accuracy`` as the target's recognizer reads it, within one standard error
        (:func:`~modgraph.training.kept_epoch`; default: the target modality's ``link_select``);
        each epoch's validation accuracy is recorded either way.
        """
        if source == target:
            raise ConfigError(f"cannot link {source!r} to itself; a modality's VAE already maps it to itself")
        _positive("epochs", epochs)
        _positive("batch_size", batch_size)
        _positive("candidates", candidates)
        if target_confidence is not None and not 0.0 <= target_confidence < 1.0:
            raise ConfigError(f"--target-confidence must be in [0, 1), not {target_confidence}")
        if source_noise is not None and not source_noise >= 0:
            raise ConfigError(f"--source-noise must be zero or positive, not {source_noise}")
        if pseudo_label_confidence is not None and not 0.0 < pseudo_label_confidence <= 1.0:
            raise ConfigError(f"--pseudo-label-confidence must be in (0, 1], not {pseudo_label_confidence}")
        if lr is not None and not lr > 0:
            raise ConfigError(f"--lr must be positive, not {lr}")
        if select not in (None, "loss", "accuracy"):
            raise ConfigError(f"--select must be loss or accuracy, not {select!r}")
        if kl_weight is not None and kl_weight < 0:
            raise ConfigError(f"--kl-weight must be zero or positive, not {kl_weight}")
        a, b = self.node(source), self.node(target)
        maps = {(source, target): class_map(a.modality, b.modality, pairing),
                (target, source): class_map(b.modality, a.modality, pairing)}
        if not 0.0 < paired_fraction <= 1.0:
            raise ConfigError(f"--paired-fraction must be in (0, 1], not {paired_fraction}")
        device = distributed.setup(self.device)
        prepared = {}
        train_sets = {name: self.features(node.modality, "train") for name, node in ((source, a), (target, b))}
        for key in exclude or {}:
            if not any(key in f.groups for f in train_sets.values()):
                raise ConfigError(f"neither {source} nor {target} has a {key!r} grouping to exclude")
        for name, node in ((source, a), (target, b)):
            feats = train_sets[name]
            # An exclusion applies to the modality whose data have that grouping (speakers: the audio side).
            feats = _select(feats, {k: v for k, v in (exclude or {}).items() if k in feats.groups})
            everything, val = split_validation(feats, seed)
            paired = paired_subset(everything, paired_fraction, seed)
            # Validation pairs are pairs too: with a paired fraction, the same share of the held-out rows.
            val = val.subset(paired_subset(val, paired_fraction, seed))
            train = everything.subset(paired)
            x_train = normalized(node.modality, train.x, node.stats)
            x_val = normalized(node.modality, val.x, node.stats)
            mu, logvar = encode_all(node.vae, x_train.to(device))
            val_mu, _ = encode_all(node.vae, x_val.to(device))
            # As a source, unpaired rows whose class the paired ones' labels spread to confidently
            # join the paired rows (modgraph.pseudo_labels); as a target, only paired rows count.
            source_y, spread = train.y, None
            threshold = node.modality.training_defaults.link_pseudo_label_confidence \
                if pseudo_label_confidence is None else pseudo_label_confidence
            if threshold < 1.0 and not bool(paired.all()) and not (one_way and name == target):
                rest = everything.subset(~paired)
                rest_mu, rest_logvar = encode_all(node.vae, normalized(node.modality, rest.x, node.stats).to(device))
                key = node.modality.training_defaults.link_spread_balance
                ids = _group_ids(everything, key)
                mu, logvar, source_y, spread = join_confident(
                    mu, logvar, train.y, rest_mu, rest_logvar, rest.y, len(node.modality.classes), threshold,
                    groups=None if ids is None else ids[paired], rest_groups=None if ids is None else ids[~paired])
                spread["balanced_within"] = key if ids is not None else None
            # As a target, rows of the forms the modality asks not to aim at count as no class, and
            # so do those its own recognizer does not confidently see in their reconstruction.
            confidence = node.modality.training_defaults.link_target_confidence if target_confidence is None \
                else target_confidence
            confidence = confidence if name == target or not one_way else 0.0
            y, val_y = (self._faithful_labels(name, f, xs, confidence) for f, xs in ((train, x_train), (val, x_val)))
            prepared[name] = dict(train=train, val=val, x=x_train, x_val=x_val, mu=mu, logvar=logvar, val_mu=val_mu,
                                  y=y, val_y=val_y, confidence=confidence, target_rows=int((y >= 0).sum()),
                                  source_y=source_y, spread=spread)
        results = {}
        written = []
        new_edges = {}
        for src, dst in ((source, target),) if one_way else ((source, target), (target, source)):
            s, t = prepared[src], prepared[dst]
            dst_node = self.node(dst)
            d = dst_node.modality.training_defaults
            settings = TrainSettings(epochs=epochs or d.link_epochs, batch_size=batch_size or d.batch_size,
                                     lr=lr or d.lr, kl_weight=d.kl_weight if kl_weight is None else kl_weight,
                                     seed=seed, precision=self.precision,
                                     device=device, progress=self.progress, description=f"{src} -> {dst}")
            mapping = maps[(src, dst)]
            n_candidates = candidates or d.link_candidates
            noise = self.node(src).modality.training_defaults.link_source_noise if source_noise is None \
                else source_noise
            train_pairs = ClassPairSampler(s["source_y"], t["y"], mapping, seed)
            val_pairs = ClassPairSampler(s["val"].y, t["val_y"], mapping, seed + 1)
            if len(train_pairs) == 0:
                raise ConfigError(f"no training pairs between {src} and {dst} after exclusions and "
                                  f"--paired-fraction {paired_fraction}")
            torch.manual_seed(seed)
            src_dim, dst_dim = self.node(src).vae.latent_dim, dst_node.vae.latent_dim
            assoc = Associator(dst_node.modality.associator_config(src_dim, dst_dim))
            judge = _translation_judge(s["val_mu"], s["val"].y, mapping, dst_node, seed)
            log = train_associator(assoc, s["mu"], s["logvar"], train_pairs, val_pairs, s["val_mu"], dst_node.vae,
                                   t["x"], t["x_val"], dst_node.modality.reconstruction_loss, settings,
                                   pairs_per_epoch=d.link_pairs_per_epoch, candidates=n_candidates,
                                   source_noise=noise, judge=judge, select=select or d.link_select)
            n_paired = int((train_pairs.source_rows < len(s["train"])).sum())  # joined rows come after
            new_edges[(src, dst)] = (assoc, log, settings, mapping, n_paired, n_candidates, noise)
        outputs = []
        for (src, dst), (assoc, log, settings, mapping, n_pairs, n_candidates, noise) in new_edges.items():
            acc = self._edge_accuracy(src, dst, assoc, mapping, "test")
            metrics = {"accuracy": acc["accuracy"], "test_samples": acc["n"], "val_loss": log["best_val_loss"],
                       "val_accuracy": log["val_accuracy"], "val_samples": len(prepared[src]["val"]),
                       "val_judged": log["val_judged"],
                       "paired_source_rows": n_pairs, "target_rows": prepared[dst]["target_rows"]}
            if prepared[src]["spread"]:
                metrics["pseudo_labels"] = prepared[src]["spread"]
            meta = {
                "kind": "associator", "source": src, "target": dst, "modgraph_version": __version__,
                "config": {"associator": assoc.config.model_dump(mode="json")},
                "class_map": sorted([i, j] for i, j in mapping.items()), "pairing": pairing,
                "paired_fraction": str(paired_fraction), "metrics": metrics,
                "source_node_created": self.node(src).meta.get("created"),
                "target_node_created": self.node(dst).meta.get("created"),
                "training": {"epochs": settings.epochs, "batch_size": settings.batch_size, "lr": settings.lr,
                             "kl_weight": settings.kl_weight, "seed": seed, "exclude": exclude or {},
                             "candidates": n_candidates, "target_confidence": prepared[dst]["confidence"],
                             "source_noise": noise, "select": log["select"], "epoch_kept": log["epoch_kept"],
                             "pseudo_label_confidence": prepared[src]["spread"]["confidence"]
                             if prepared[src]["spread"] else None,
                             "target_exclude": self.node(dst).modality.target_exclude,
                             "history": log["history"]},
            }
            outputs.append((self.registry.edge_path(src, dst), assoc, meta))
            results[f"{src}->{dst}"] = metrics
        if not distributed.is_main():  # under torchrun rank 0 writes what every rank trained alike
            distributed.barrier()
            return {"source": source, "target": target, "paths": [str(p) for p, _, _ in outputs], "metrics": results}
        with self.registry.lock():  # both directions land together, or neither
            # The nodes may have been retrained while we trained: refuse to write a stale edge.
            for n in (source, target):
                if self.registry.node_metadata(n).get("created") != self.node(n).meta.get("created"):
                    raise ConfigError(f"modality {n!r} was retrained while linking; run modgraph link again")
            for path, assoc, meta in outputs:
                self.registry.write(path, {f"associator.{k}": v for k, v in assoc.state_dict().items()}, meta)
                written.append(str(path))
        distributed.barrier()
        return {"source": source, "target": target, "paths": written, "metrics": results}

    def _faithful_labels(self, name: str, features: FeatureSet, x, min_confidence: float) -> torch.Tensor:
        """Target labels of ``features`` (see :func:`_target_labels`), -1 where not faithfully reconstructed."""
        node = self.node(name)
        y = _target_labels(features, node.modality)
        if min_confidence == 0.0:
            return y
        key = [name, str(node.meta.get("created")), node.modality.cache_key(), features.origin.numpy().tobytes(),
               features.augmented.numpy().tobytes(), y.numpy().tobytes()]
        confidence = cached_confidence(self.cache_dir, key, len(y),
                                       lambda: reconstruction_confidence(node.vae, node.recognizer, x, y))
        return faithful_targets(confidence, y, min_confidence)

    def remove_modality(self, name: str) -> list[Path]:
        self._nodes.pop(name, None)
        return self.registry.remove_node(name)

    def unlink(self, source: str, target: str, both: bool = True) -> list[Path]:
        removed = [self.registry.remove_edge(source, target)]
        if both and self.registry.edge_path(target, source).exists():
            removed.append(self.registry.remove_edge(target, source))
        return removed

    # -- translation -----------------------------------------------------------------------
    @torch.no_grad()
    def translate_normalized(self, path: list[str], x: torch.Tensor, samples: int = 1) -> torch.Tensor:
        """Model inputs of ``path[0]`` to model outputs of ``path[-1]``: (N, samples, *shape).

        Latents are chained through each associator's mean; at every modality in between,
        the latent is decoded and encoded again, so the next associator gets a latent like
        those it was trained on (fsdd -> fmnist -> mnist: 49.6% against 33.2% when the
        associator's output is passed on as it is). With ``samples > 1`` the last step
        draws from its Gaussian (for a same-modality path, from the VAE posterior).
        """
        device = self.device
        first = self.node(path[0])
        z, logvar = first.vae.encode(x.to(device))
        for i, (a, b) in enumerate(zip(path[:-1], path[1:])):
            if i > 0:
                vae = self.node(a).vae
                z, _ = vae.encode(vae.decode(z))
            z, logvar = self.associator(a, b)(z)
        if samples > 1:
            std = torch.exp(0.5 * logvar)
            z = z.unsqueeze(1) + std.unsqueeze(1) * torch.randn(len(z), samples, z.shape[1], device=device)
        else:
            z = z.unsqueeze(1)
        last = self.node(path[-1])
        out = last.vae.decode(z.flatten(0, 1))
        return out.view(len(x), samples, *out.shape[1:]).cpu()

    def translate(self, source: str, target: str, x: torch.Tensor, via: list[str] | None = None,
                  samples: int = 1) -> torch.Tensor:
        """Raw features of the source (N, *shape) to raw features of the target (N, samples, *shape)."""
        path = self.route(source, target, via)
        src, dst = self.node(source), self.node(target)
        xn = src.modality.normalize(x, src.stats)
        out = self.translate_normalized(path, xn, samples)
        return dst.modality.denormalize(out.flatten(0, 1), dst.stats).view_as(out)

    def translate_files(self, source: str, target: str, inputs: list[str | Path] = (), output: str | Path | None = None,
                        via: list[str] | None = None, samples: int = 1, texts: list[str] = (),
                        batch_size: int = 256) -> dict:
        """Read files (or folders of files, or literal texts), translate, write the target's files."""
        _positive("samples", samples)
        path = self.route(source, target, via)
        src, dst = self.node(source), self.node(target)
        items = _expand_inputs([Path(p) for p in inputs], src.modality)
        if not items and not texts:
            raise InputFileError("nothing to translate: give one or more files, a folder, or --text")
        n_out = (len(items) + len(texts)) * samples
        output = Path(output) if output is not None else Path("translations") / f"{source}-to-{target}"
        single_file = output.suffix != "" and not output.is_dir()
        if single_file and n_out > 1:
            raise ConfigError(f"-o {output} names one file but {n_out} outputs would be written; give a folder")
        if single_file and output.suffix.lower() != dst.modality.output_suffix:
            raise ConfigError(f"-o {output}: {target} outputs are {dst.modality.output_suffix} files")
        written, notes, rows, errors = [], {}, [], {}
        jobs = [(p.stem, p) for p in items] + [(_slug(t), t) for t in texts]
        stems_seen: dict[str, int] = {}
        # One thread writes a batch's files while the next batch is read and translated: writing
        # is mostly waiting on the file system (on a busy disk, longer than the models take).
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="modgraph-write") as writer:
            pending = None
            for start in range(0, len(jobs), batch_size):
                chunk = jobs[start:start + batch_size]
                x, _, file_notes, file_errors = read_batch(src.modality, [p for _, p in chunk if isinstance(p, Path)])
                notes.update(file_notes)
                errors.update(file_errors)  # the readable files go on; the CLI lists these and exits 1
                chunk = [(stem, p) for stem, p in chunk if str(p) not in file_errors or not isinstance(p, Path)]
                if not chunk:
                    continue
                parts = [x] if x is not None else []
                text_items = [t for _, t in chunk if not isinstance(t, Path)]
                if text_items:
                    parts.append(torch.stack([src.modality.read_text(t) for t in text_items]))
                x = torch.cat(parts)
                xn = src.modality.normalize(x, src.stats)
                out = self.translate_normalized(path, xn, samples)
                raw = dst.modality.denormalize(out.flatten(0, 1), dst.stats).view_as(out)
                outputs, paths_per_input = [], []
                for (stem, _), outs in zip(chunk, raw):
                    count = stems_seen.get(stem, 0)
                    stems_seen[stem] = count + 1
                    stem = stem if count == 0 else f"{stem}-{count + 1}"
                    for k, sample in enumerate(outs):
                        if single_file:
                            target_path = output
                        else:
                            suffix = f"_{k + 1}" if samples > 1 else ""
                            target_path = output / f"{stem}{suffix}{dst.modality.output_suffix}"
                        outputs.append((sample, target_path))
                    paths_per_input.append([p for _, p in outputs[len(outputs) - len(outs):]])
                rows += translation_rows(src, dst, [p for _, p in chunk], xn, out, paths_per_input)
                if pending is not None:
                    written.extend(pending.result())  # a failed write raises here, before more is written
                pending = writer.submit(_write_outputs, dst.modality, outputs)
            if pending is not None:
                written.extend(pending.result())
        if errors and not rows:
            raise InputFileError(next(iter(errors.values())))
        return {"path": path, "written": written, "notes": notes, "rows": rows, "errors": errors}

    # -- evaluation ---------------------------------------------------------------------------
    @torch.no_grad()
    def _edge_accuracy(self, source: str, target: str, assoc: Associator, mapping: dict[int, int], split: str) -> dict:
        src, dst = self.node(source), self.node(target)
        feats = self.features(src.modality, split).originals()
        keep, expected = _paired_classes(feats.y, mapping)
        feats = feats.subset(keep)
        device = self.device
        correct = 0
        for s in range(0, len(feats), 1024):
            mu, _ = src.vae.encode(src.modality.normalize(feats.x[s:s + 1024], src.stats).to(device))
            z, _ = assoc.to(device).eval()(mu)
            pred = predict(dst.recognizer, dst.vae.decode(z))
            correct += int((pred == expected[s:s + 1024]).sum())
        return {"accuracy": correct / max(1, len(feats)), "n": len(feats)}

    def evaluate(self, source: str, target: str, via: list[str] | None = None, split: str = "test",
                 include: dict[str, list[str]] | None = None, judge: Recognizer | None = None) -> dict:
        """Recognition accuracy of translations (``source == target``: VAE reconstruction accuracy).

        The source split is translated along the route, the target's recognizer (or
        ``judge``, any classifier of the target's normalised inputs) classifies each
        output, and the result is compared with the paired class.
        """
        if split not in ("train", "test", "all"):
            raise ConfigError(f"--split must be test, train or all, not {split!r}")
        path = self.route(source, target, via)
        src, dst = self.node(source), self.node(target)
        splits = ["train", "test"] if split == "all" else [split]
        feats = [_select(self.features(src.modality, s), include=include).originals() for s in splits]
        y = torch.cat([f.y for f in feats])
        if len(path) == 1:
            mapping = {i: i for i in range(len(src.modality.classes))}
        else:
            g = self.graph()
            maps = [{int(i): int(j) for i, j in g.edges[a, b]["class_map"]} for a, b in zip(path[:-1], path[1:])]
            mapping = compose(maps)
        keep, expected = _paired_classes(y, mapping)
        preds = []
        # Split by split, in batches: features left on disk are never loaded whole.
        for f, kept in zip(feats, keep.split([len(f) for f in feats])):
            x = f.subset(kept).x
            for s in range(0, len(x), 1024):
                out = self.translate_normalized(path, src.modality.normalize(x[s:s + 1024], src.stats))
                preds.append(predict(judge or dst.recognizer, out[:, 0]))
        pred = torch.cat(preds) if preds else torch.zeros(0, dtype=torch.long)
        correct = pred == expected
        per_class = {}
        for c in expected.unique().tolist():
            sel = expected == c
            per_class[dst.modality.classes[c].name] = round(correct[sel].float().mean().item(), 4)
        return {"source": source, "target": target, "path": path, "split": split, "n": int(len(expected)),
                "accuracy": correct.float().mean().item() if len(expected) else float("nan"),
                "per_class": per_class}


def _reconstruction_accuracy(vae: VAE, recognizer: Recognizer, x, y: torch.Tensor) -> float:
    """How often the recognizer names the class of a reconstruction (Table 2's metric)."""
    if not len(y):
        return float("nan")
    return (reconstruction_probabilities(vae, recognizer, x).argmax(1) == y).float().mean().item()


def _accuracy(recognizer: Recognizer, x: torch.Tensor, y: torch.Tensor) -> float:
    return (predict(recognizer, x) == y).float().mean().item() if len(y) else float("nan")


def _target_labels(features: FeatureSet, modality: Modality) -> torch.Tensor:
    """Class labels, -1 on rows whose group value is in ``modality.target_exclude``."""
    y = features.y.clone()
    for key, values in modality.target_exclude.items():
        if key in features.groups:
            drop = torch.tensor([v in values for v in features.groups[key]], dtype=torch.bool)
            y[drop] = -1
    return y


def _translation_judge(val_mu: torch.Tensor, val_y: torch.Tensor, mapping: dict[int, int], target: LoadedNode,
                       seed: int, limit: int = 5000):
    """A function of an associator: the share of (up to ``limit``, drawn with ``seed``) validation
    sources whose translation the target's recognizer reads as the paired class."""
    keep, expected = _paired_classes(val_y, mapping)
    rows = keep.nonzero().flatten()
    pick = torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed))[:limit]
    mu, expected = val_mu[rows[pick].to(val_mu.device)], expected[pick]

    @torch.no_grad()
    def judge(assoc: Associator) -> float:
        if not len(mu):
            return 0.0
        preds = [predict(target.recognizer, target.vae.decode(assoc(mu[s:s + 1024])[0]))
                 for s in range(0, len(mu), 1024)]
        return int((torch.cat(preds).cpu() == expected).sum()) / len(expected)
    judge.samples = len(mu)
    return judge


def _paired_classes(y: torch.Tensor, mapping: dict[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows whose class pairs with a target class, and those target classes."""
    keep = torch.tensor([int(c) in mapping for c in y.tolist()], dtype=torch.bool)
    expected = torch.tensor([mapping[int(c)] for c in y[keep].tolist()], dtype=torch.long)
    return keep, expected


def _write_outputs(modality: Modality, outputs: list[tuple[torch.Tensor, Path]]) -> list[str]:
    """Write translated samples, in order; the paths written (a sample may write companions too)."""
    written = []
    for sample, path in outputs:
        path.parent.mkdir(parents=True, exist_ok=True)
        written.extend(str(p) for p in modality.write_file(sample, path))
    return written


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text.strip()).strip("-")[:40] or "text"


def _expand_inputs(paths: list[Path], modality: Modality) -> list[Path]:
    items = []
    for p in paths:
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in modality.input_suffixes)
            if not found:
                raise InputFileError(f"folder {p} holds no {modality.name} input files "
                                     f"({', '.join(modality.input_suffixes)})")
            items.extend(found)
        else:  # a missing file is reported by modgraph.readings.read_batch with the other unreadable ones
            items.append(p)
    return items
