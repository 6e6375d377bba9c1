"""The library API: a registry of modalities linked by associators, and what to do with it.

``ModGraph`` adds modalities (intra-modal phase), links them (cross-modal phase), routes,
translates tensors or files, and evaluates. It is a facade: each phase lives in its own
module (learning.intra_modal, learning.cross_modal, inference.translation,
learning.evaluation), and the CLI is a thin layer over it.
"""

from __future__ import annotations

from pathlib import Path

import networkx as nx
import torch

from modgraph.runtime import distributed
from modgraph.errors import ConfigError, RegistryCorruptError, UnknownModalityError
from modgraph.features.cache import default_cache_dir, default_data_root, load_split
from modgraph.modality import FeatureSet, Modality
from modgraph.learning.models import Associator, Recognizer, VAE
from modgraph.runtime.out_of_memory import as_error as _out_of_memory_as_error
from modgraph.plugins import PluginHost
from modgraph.storage.registry import Registry
from modgraph.inference.loaded_node import LoadedNode
from modgraph.inference.routing import find_route
from modgraph.settings import EvalSettings, LinkSettings, NodeSettings, TranslateSettings
from modgraph.learning.training import configure_threads, resolve_device


class ModGraph:
    """A registry of trained modalities and associators, with the plugins that define them."""

    def __init__(self, registry: str | Path | None = None, data_root: str | Path | None = None,
                 cache_dir: str | Path | None = None, device: str = "auto", progress: bool = True,
                 plugins: PluginHost | None = None, precision: str = "fp32"):
        """``precision``: ``bf16`` trains under bf16 autocast (weights stay fp32); see ``modgraph.runtime.precision``."""
        self.registry = Registry(registry)
        self.data_root = Path(data_root) if data_root is not None else default_data_root()
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self._device_name = device
        self.precision = precision
        self.progress = progress
        self.plugins = plugins if plugins is not None else PluginHost()
        self._nodes: dict[str, LoadedNode] = {}
        configure_threads()
        self._edges: dict[tuple, Associator] = {}

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
        from modgraph.storage.card import describe_graph

        return describe_graph(self.registry)

    # -- loading trained parts --------------------------------------------------------
    def node(self, name: str) -> LoadedNode:
        """A trained node's modality (with the options it was trained with) and models, cached until retrained."""
        meta = self.registry.node_metadata(name)
        cached = self._nodes.get(name)
        if cached is not None and cached.meta.get("created") == meta.get("created"):
            return cached
        try:
            modality = self.modality(name, meta.get("options") or None)
        except UnknownModalityError as exc:
            raise UnknownModalityError(f"registry node {name!r} was made by plugin {meta.get('plugin')!r}, "
                                       f"which is not installed here: {exc}") from None
        _check_input_shape(modality, meta, self.registry.node_path(name))
        record, vae, recognizer, anchors = self.registry.load_node(name)
        _check_statistics(modality, record.preprocessing, self.registry.node_path(name))
        loaded = LoadedNode(modality, vae.to(self.device), recognizer.to(self.device), record.preprocessing,
                            record.model_dump(), anchors)
        self._nodes[name] = loaded
        return loaded

    def associator(self, source: str, target: str) -> Associator:
        meta = self.registry.edge_metadata(source, target)
        key = (source, target, meta.get("created"))
        if key not in self._edges:
            _, assoc = self.registry.load_edge(source, target)
            self._edges[key] = assoc.to(self.device)
        return self._edges[key]

    # -- intra-modal phase ---------------------------------------------------------------
    @_out_of_memory_as_error("add-modality", training=True)
    def add_modality(self, name: str, settings: NodeSettings | None = None, *, download: bool = False,
                     rebuild_features: bool = False, **given) -> dict:
        """Train a modality's VAE and recognizer and store them as a registry node.

        Settings are a :class:`~modgraph.settings.NodeSettings` or its fields as keywords
        (``epochs=5``); unset ones are the modality's defaults. The node replaces an existing
        one only after training succeeded; associators linked to the old node become stale.
        ``rebuild_features``: first delete the modality's cached features (every version and option).
        """
        from modgraph.learning.intra_modal import add_modality

        settings = _settings(NodeSettings, settings, given)
        if rebuild_features:
            from modgraph.features.cache import forget_features

            forget_features(self.plugins.get(name).name, self.cache_dir)
        report = add_modality(self, name, settings, download)
        self._nodes.pop(name, None)
        return report

    # -- cross-modal phase ---------------------------------------------------------------
    @_out_of_memory_as_error("link", training=True)
    def link(self, source: str, target: str, settings: LinkSettings | None = None, **given) -> dict:
        """Train both associators between two trained modalities (``one_way``: source->target only), VAEs frozen.

        Settings are a :class:`~modgraph.settings.LinkSettings` or its fields as keywords
        (``paired_fraction=0.05``); each field's description says what it does.
        """
        from modgraph.learning.cross_modal import link

        return link(self, source, target, _settings(LinkSettings, settings, given))

    def remove_modality(self, name: str) -> list[Path]:
        self._nodes.pop(name, None)
        return self.registry.remove_node(name)

    def unlink(self, source: str, target: str, both: bool = True) -> list[Path]:
        removed = [self.registry.remove_edge(source, target)]
        if both and self.registry.edge_path(target, source).exists():
            removed.append(self.registry.remove_edge(target, source))
        return removed

    # -- translation -----------------------------------------------------------------------
    def translate_normalized(self, path: list[str], x: torch.Tensor, samples: int = 1, anchor: int = 0) -> torch.Tensor:
        """Model inputs of ``path[0]`` to model outputs of ``path[-1]``: (N, samples, *shape).

        ``anchor``: k > 0 anchors each input's latent to its k nearest training latents of the class
        the source recognizer reads (``modgraph.inference.anchors``); 0 is the paper's translation.
        """
        from modgraph.inference.translation import translate_normalized

        return translate_normalized(self, path, x, samples, anchor)

    @_out_of_memory_as_error("translate")
    def translate(self, source: str, target: str, x: torch.Tensor, via: list[str] | None = None,
                  samples: int = 1) -> torch.Tensor:
        """Raw features of the source (N, *shape) to raw features of the target (N, samples, *shape)."""
        path = self.route(source, target, via)
        src, dst = self.node(source), self.node(target)
        out = self.translate_normalized(path, src.modality.normalize(x, src.stats), samples)
        return dst.modality.denormalize(out.flatten(0, 1), dst.stats).view_as(out)

    @_out_of_memory_as_error("translate")
    def translate_files(self, source: str, target: str, inputs=(), output: str | Path | None = None,
                        settings: TranslateSettings | None = None, **given) -> dict:
        """Read files (or folders of files, or literal texts), translate, write the target's files.

        Settings are a :class:`~modgraph.settings.TranslateSettings` or its fields as keywords
        (``samples=3``, ``anchor=0``, ``sheet="sheet.png"``); each field's description says what it does.
        """
        from modgraph.inference.translation import translate_files

        return translate_files(self, source, target, inputs, output, _settings(TranslateSettings, settings, given))

    # -- evaluation ---------------------------------------------------------------------------
    @_out_of_memory_as_error("eval")
    def evaluate(self, source: str, target: str, settings: EvalSettings | None = None, *,
                 judge: Recognizer | None = None, **given) -> dict:
        """Recognition accuracy of translations (``source == target``: VAE reconstruction accuracy).

        Settings are an :class:`~modgraph.settings.EvalSettings` or its fields as keywords
        (``split="all"``, ``anchor=20``); ``judge``: another recognizer to read the outputs.
        """
        from modgraph.learning.evaluation import evaluate

        s = _settings(EvalSettings, settings, given)
        return evaluate(self, source, target, s.via or None, s.split, s.include, judge, s.anchor)


def _check_input_shape(modality: Modality, meta: dict, path: Path) -> None:
    """A node's models must take the inputs its modality reads (the file and the plugin may disagree)."""
    config = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    for part in ("vae", "recognizer"):
        shape = (config.get(part) or {}).get("input_shape") if isinstance(config.get(part), dict) else None
        if isinstance(shape, list) and tuple(shape) != tuple(modality.input_shape):
            raise RegistryCorruptError(f"registry file {path} takes inputs shaped {str(tuple(shape))[:60]} but "
                                       f"modality {modality.name!r} (plugin {modality.distribution}) reads "
                                       f"{tuple(modality.input_shape)}; retrain it with: modgraph add-modality "
                                       f"{modality.name}")


def _check_statistics(modality: Modality, stats: dict, path: Path) -> None:
    """A stored header's normalisation statistics must fit its modality: probe them once, at load."""
    try:
        out = modality.normalize(torch.zeros(1, *modality.input_shape), stats)
        ok = tuple(out.shape) == (1, *modality.input_shape)
    except Exception as exc:  # a plugin meeting a header it never wrote: any failure means a bad header
        ok, reason = False, " ".join(str(exc).split())[:200] or type(exc).__name__
    else:
        reason = "they change the input's shape"
    if not ok:
        raise RegistryCorruptError(f"registry file {path}: its normalisation statistics do not fit modality "
                                   f"{modality.name!r} ({reason}); retrain it with: modgraph add-modality "
                                   f"{modality.name}")


def _settings(model, settings, given: dict):
    """``settings`` as given, or the model of the keyword arguments (one "field: message" error if invalid)."""
    if settings is not None and given:
        raise ConfigError(f"give {model.__name__} or its fields as keywords, not both ({', '.join(given)})")
    return settings if settings is not None else model.parse(given)
