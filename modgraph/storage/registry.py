"""The on-disk graph and its file format: one safetensors file per modality node and per associator edge.

Headers carry everything but the weights, so the networkx view is built without loading
tensors. This module alone turns headers into typed records and modules and back
(``save_node``/``load_node``, ``save_edges``/``load_edge``). Writes go to a temporary
file renamed into place under a file lock.
"""

from __future__ import annotations

import json
import os
import re
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import networkx as nx
from filelock import FileLock, Timeout
from safetensors import SafetensorError

from modgraph.storage import journal
from modgraph.storage.atomic import fsync_file, temporary_path
from modgraph.storage.headers import file_metadata
from modgraph.errors import ConfigError, ModgraphError, NotInRegistryError, RegistryCorruptError
from modgraph.storage.records import EdgeRecord, NodeRecord, parse_record
from modgraph.storage.safe_io import (NAME_PATTERN, check_name, check_parameters, check_safetensors_header, follow_umask,
                                      parse_json, real_folder, regular_file)

FORMAT_VERSION = "1"
# A file changed this recently is read again next time: file times tick as coarsely as the kernel's
# clock, so a change within the same tick would leave them as they were.
RECENT_NS = 2_000_000_000
# Header fields holding JSON (everything in a safetensors header is a string).
JSON_FIELDS = ("config", "preprocessing", "metrics", "data", "options", "classes", "class_map", "training",
               "dataset", "paired_fraction")


def _header(metadata: dict) -> dict[str, str]:
    """A file's header: the format, a creation stamp, and every field as a string (JSON where it is not one)."""
    meta = {"format_version": FORMAT_VERSION, "created": now_iso()}
    for key, value in metadata.items():
        meta[key] = value if isinstance(value, str) else json.dumps(value)
    return meta


_EDGE_FILE = re.compile(r"^[a-z][a-z0-9_]{0,31}--[a-z][a-z0-9_]{0,31}\.safetensors$")


def _rename_together(folder: Path, renames: list[tuple[Path, Path]]) -> None:
    """Rename written temporaries into place so that all land or, after a crash, all are completed
    (:func:`modgraph.storage.journal.rename_all`); readers treat the files as stale until then."""
    try:
        journal.rename_all(folder, renames)
    except OSError as exc:
        for tmp, _ in renames:
            tmp.unlink(missing_ok=True)
        raise ModgraphError(f"could not write {renames[0][1]}: {exc.strerror or exc}; "
                            f"run modgraph link again") from None


def default_registry() -> Path:
    """``MODGRAPH_REGISTRY``, else the user config's registry (``modgraph config``), else ./registry."""
    from modgraph.runtime.user_config import configured

    return Path(os.environ.get("MODGRAPH_REGISTRY") or configured("registry") or "registry")


def now_iso() -> str:
    # Microseconds: ``created`` identifies a node version (stale edges, cached nodes), and
    # a small modality can be retrained within the second it was first written.
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


class Registry:
    """A folder of ``nodes/<name>.safetensors`` and ``edges/<source>--<target>.safetensors``."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else default_registry()
        # Raw headers (strings) by path, with the file's identity when read: a rewrite is a rename (a new inode).
        self._headers: dict[Path, tuple[tuple, dict[str, str]]] = {}

    # -- paths ------------------------------------------------------------------------
    @property
    def nodes_dir(self) -> Path:
        return real_folder(self.root / "nodes")

    @property
    def edges_dir(self) -> Path:
        return real_folder(self.root / "edges")

    def node_path(self, name: str) -> Path:
        """The node file of modality ``name``; a name that is not a modality name never becomes a path."""
        return self.nodes_dir / f"{check_name(name)}.safetensors"

    def edge_path(self, source: str, target: str) -> Path:
        return self.edges_dir / f"{check_name(source)}--{check_name(target)}.safetensors"

    # -- locking and atomic writes ------------------------------------------------------
    @contextmanager
    def lock(self, timeout: float = 600.0):
        """Serialises writers (several processes may train into one registry)."""
        path = self.root / ".lock"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            real_folder(path)
            lock = FileLock(str(path))
            lock.acquire(timeout=timeout)
        except Timeout:
            raise ModgraphError(f"registry {self.root} is locked by another modgraph process; "
                                f"wait for it or remove {path} if none is running") from None
        except OSError as exc:
            raise ModgraphError(f"cannot lock registry {self.root} for writing ({exc.strerror or exc}: "
                                f"{exc.filename or path}); is the folder writable?") from None
        try:
            self._recover()
            yield
        finally:
            lock.release()

    def _recover(self) -> None:
        """Under the lock: finish an import or an edge pair whose renames were interrupted, and remove leftover
        temporaries.

        Every write happens under the lock, so a temporary seen here belongs to a writer that died.
        """
        folders = [self.root, real_folder(self.root / "nodes"), real_folder(self.root / "edges")]  # before any
        for folder in folders:  # rename: an import journal in the root names files in both
            if folder.is_dir():
                journal.complete(folder)
                journal.remove_temporaries(folder)

    def pending(self) -> set[Path]:
        """Files that an interrupted import or link still has to land: stale until the next writer does."""
        return {p for folder in (self.root, self.edges_dir) if folder.is_dir() for p in journal.pending(folder)}

    def write(self, path: Path, tensors: dict, metadata: dict) -> None:
        """Write atomically: a reader sees the old file or the new one, never a partial one."""
        tmp = self._write_temporary(path, tensors, _header(metadata))
        try:
            os.replace(tmp, path)
        except OSError as exc:
            raise ModgraphError(f"could not write {path}: {exc.strerror or exc}; the registry keeps its previous "
                                f"file") from None
        finally:
            tmp.unlink(missing_ok=True)

    @staticmethod
    def _write_temporary(path: Path, tensors: dict, meta: dict) -> Path:
        """The file's content, fsynced, in a hidden temporary beside ``path`` (removed again on failure)."""
        import torch  # here, not at import: reading headers (graph, route, card) never needs torch
        from safetensors.torch import save

        tmp = temporary_path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # save() then one write: save_file would first make a temporary of its own (.tmpXXXXXX).
            data = save({k: v.detach().to("cpu", torch.float32).contiguous() if v.is_floating_point()
                         else v.detach().cpu().contiguous() for k, v in tensors.items()}, metadata=meta)
            with open(tmp, "xb") as fh:
                fh.write(data)
            follow_umask(tmp)
            fsync_file(tmp)
        except (OSError, SafetensorError) as exc:
            tmp.unlink(missing_ok=True)
            reason = getattr(exc, "strerror", None) or exc
            raise ModgraphError(f"could not write {path}: {reason}; the registry keeps its previous file") from None
        return tmp

    # -- reading -------------------------------------------------------------------------
    def read_metadata(self, path: Path) -> dict:
        """The parsed header of a registry file (no tensors are loaded); parsed again only when the file
        changed (a server answering many requests reads each file once)."""
        try:
            info = regular_file(path)
            identity = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
            cached = self._headers.get(path)
            if cached is not None and cached[0] == identity:
                raw = cached[1]
            else:
                check_safetensors_header(path, info.st_size)
                raw = file_metadata(path)
                if time.time_ns() - max(info.st_mtime_ns, info.st_ctime_ns) > RECENT_NS:
                    self._headers[path] = (identity, raw)
        except FileNotFoundError:
            raise
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise RegistryCorruptError(
                f"registry file {path} is unreadable ({exc}); delete it and retrain it "
                f"(modgraph add-modality / modgraph link)") from None
        return header_fields(raw, path)

    def load_tensors(self, path: Path) -> dict:
        from safetensors.torch import load_file

        import torch

        try:
            check_safetensors_header(path, regular_file(path).st_size)
            tensors = load_file(str(path))
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise RegistryCorruptError(f"registry file {path} is unreadable ({exc}); delete it and retrain it") from None
        bad = next((k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()), None)
        if bad is not None:  # NaN weights would only fail later, after outputs were written
            raise RegistryCorruptError(f"registry file {path} holds non-finite weights ({bad[:60]!r} has a NaN or an "
                                       f"infinity); delete it and retrain it")
        return tensors

    def node_metadata(self, name: str) -> dict:
        path = self.node_path(name)
        if not path.exists():
            raise NotInRegistryError(
                f"modality {name!r} is not in registry {self.root}; train it with: modgraph add-modality {name}")
        return self.read_metadata(path)

    def edge_metadata(self, source: str, target: str) -> dict:
        path = self.edge_path(source, target)
        if not path.exists():
            raise NotInRegistryError(f"no associator {source} -> {target} in registry {self.root}; "
                                     f"train one with: modgraph link {source} {target}")
        return self.read_metadata(path)

    def node_record(self, name: str) -> NodeRecord:
        return parse_record(NodeRecord, self.node_metadata(name), self.node_path(name))

    def edge_record(self, source: str, target: str) -> EdgeRecord:
        return parse_record(EdgeRecord, self.edge_metadata(source, target), self.edge_path(source, target))

    # -- modules in and out ------------------------------------------------------------------
    def save_node(self, name: str, vae, recognizer, header: dict, anchors: dict | None = None) -> Path:
        """Store a node's VAE and recognizer (and its anchors, ``modgraph.inference.anchors``) with its header,
        atomically, under the lock."""
        tensors = {f"vae.{k}": v for k, v in vae.state_dict().items()}
        tensors.update({f"recognizer.{k}": v for k, v in recognizer.state_dict().items()})
        tensors.update(anchors or {})
        path = self.node_path(name)
        with self.lock():
            self.write(path, tensors, header)
        return path

    def load_node(self, name: str):
        """A node's record, VAE, recognizer (on the CPU, in eval mode) and anchors ((z, y), or None
        for a node trained before nodes stored them)."""
        from modgraph.learning.models import VAE, Recognizer

        path = self.node_path(name)
        record = self.node_record(name)
        try:
            configs = module_configs(record, path)
            vae_config = configs["vae"]
            if record.classes and configs["recognizer"].num_classes != len(record.classes):
                raise ValueError(f"its recognizer tells {configs['recognizer'].num_classes} classes apart but its "
                                 f"header lists {len(record.classes)}")
            tensors = self.load_tensors(path)
            vae, recognizer = VAE(vae_config), Recognizer(configs["recognizer"])
            vae.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("vae.")})
            recognizer.load_state_dict({k[11:]: v for k, v in tensors.items() if k.startswith("recognizer.")})
            anchors = _anchors(tensors, vae_config.latent_dim, len(record.classes) or None)
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            first = " ".join(str(exc).split())[:300] or type(exc).__name__
            raise RegistryCorruptError(f"registry file {path} does not match the architecture of modality {name!r} "
                                       f"(plugin {record.plugin}): {first}; retrain it with: "
                                       f"modgraph add-modality {name}") from None
        return record, vae.eval(), recognizer.eval(), anchors

    def load_edge(self, source: str, target: str, check_dims: bool = True):
        """An associator's record and module (on the CPU, in eval mode); ``check_dims``: that it fits its nodes
        here (:meth:`check_edge_dims`)."""
        from modgraph.learning.models import Associator

        path = self.edge_path(source, target)
        record = self.edge_record(source, target)
        if check_dims:
            self.check_edge_dims(record, path)
        try:
            config = module_configs(record, path)["associator"]
            tensors = self.load_tensors(path)
            assoc = Associator(config)
            assoc.load_state_dict({k[11:]: v for k, v in tensors.items() if k.startswith("associator.")})
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            first = " ".join(str(exc).split())[:300] or type(exc).__name__
            raise RegistryCorruptError(f"registry file {path} is not a valid associator: {first}; retrain it "
                                       f"with: modgraph link {source} {target}") from None
        return record, assoc.eval()

    def check_edge_dims(self, record: EdgeRecord, path: Path, nodes: dict | None = None) -> None:
        """An edge's latent sizes must be its nodes' (files that are each valid may still disagree).

        ``nodes``: name -> (record, path) of the nodes to check against; default this registry's.
        """
        config = record.config.get("associator") or {}
        for end, key in ((record.source, "source_dim"), (record.target, "target_dim")):
            node, node_path = nodes[end] if nodes is not None else (self.node_record(end), self.node_path(end))
            if isinstance(config.get(key), int) and config[key] != node.latent_dim:  # other errors: load_edge's
                raise RegistryCorruptError(f"registry file {path} has {key} {config[key]} but {node_path} has a "
                                           f"{node.latent_dim}-d latent; the files disagree: link again with: "
                                           f"modgraph link {record.source} {record.target}")

    def save_edges(self, edges: list, trained_against: dict[str, str | None]) -> list[Path]:
        """Store associators ``(source, target, module, header)`` together under the lock.

        ``trained_against``: each node's ``created`` when training began. A node retrained
        since makes the edges stale: they are refused, and nothing is written.
        """
        with self.lock():
            for name, created in trained_against.items():
                if self.node_metadata(name).get("created") != created:
                    raise ConfigError(f"modality {name!r} was retrained while linking; nothing was written: "
                                      f"run modgraph link again")
            renames = []
            try:
                for source, target, assoc, header in edges:
                    path = self.edge_path(source, target)
                    tensors = {f"associator.{k}": v for k, v in assoc.state_dict().items()}
                    renames.append((self._write_temporary(path, tensors, _header(header)), path))
            except BaseException:
                for tmp, _ in renames:
                    tmp.unlink(missing_ok=True)
                raise
            _rename_together(self.edges_dir, renames)
        return [path for _, path in renames]

    def node_names(self) -> list[str]:
        if not self.nodes_dir.exists():
            return []
        return sorted(p.stem for p in self.nodes_dir.glob("*.safetensors") if NAME_PATTERN.match(p.stem))

    def graph(self) -> nx.DiGraph:
        """Nodes and edges with their header metadata as attributes.

        An edge whose endpoint was retrained after it was linked is kept with
        ``stale=True``: its latent spaces no longer match, and routing skips it.
        """
        g = nx.DiGraph()
        classes = {}
        for name in self.node_names():
            path = self.node_path(name)
            meta = self.read_metadata(path)
            record = parse_record(NodeRecord, meta, path)
            if record.name != name:
                raise RegistryCorruptError(f"registry file {path} holds modality {record.name!r}, not {name!r}; "
                                           f"delete it and retrain it")
            classes[name] = len(record.classes)
            g.add_node(name, **meta)
        for src, dst, meta in self._edge_headers(classes):
            if src not in g or dst not in g:
                continue  # an orphan left by an interrupted removal; never routed
            stale = (meta.get("source_node_created") != g.nodes[src].get("created")
                     or meta.get("target_node_created") != g.nodes[dst].get("created")
                     or meta.pop("_pending", False))
            g.add_edge(src, dst, **meta, stale=stale)
        return g

    def _edge_headers(self, classes: dict[str, int]):
        """(source, target, header) of each edge file whose name, header and class map agree."""
        if not self.edges_dir.exists():
            return
        pending = {p.name for p in self.pending() if p.parent.name == "edges"}
        for path in sorted(self.edges_dir.glob("*.safetensors")):
            if not _EDGE_FILE.match(path.name):
                continue
            meta = self.read_metadata(path)
            record = parse_record(EdgeRecord, meta, path)
            if path.stem != f"{record.source}--{record.target}":
                raise RegistryCorruptError(f"registry file {path} holds the associator {record.source} -> "
                                           f"{record.target}; delete it and link again")
            n_src, n_dst = classes.get(record.source), classes.get(record.target)
            if n_src is not None and n_dst is not None and not all(
                    0 <= i < n_src and 0 <= j < n_dst for i, j in record.class_map):
                raise RegistryCorruptError(f"registry file {path} maps classes its modalities do not have; "
                                           f"delete it and run modgraph link {record.source} {record.target}")
            # A pair whose write was interrupted is stale until the next writer completes it.
            meta["_pending"] = path.name in pending
            yield record.source, record.target, meta

    # -- removal -------------------------------------------------------------------------
    def remove_node(self, name: str) -> list[Path]:
        """Delete a node and every associator touching it; return the files removed."""
        path = self.node_path(name)
        with self.lock():
            if not os.path.lexists(path):
                self.node_metadata(name)  # raises the helpful error
            edges = [edge for edge in sorted(self.edges_dir.glob("*.safetensors")) if _EDGE_FILE.match(edge.name)
                     and name in edge.stem.split("--")] if self.edges_dir.exists() else []
            for file in [path, *edges]:  # all checked before anything is deleted
                if not file.is_symlink():
                    regular_file(file)
            for edge in edges:
                edge.unlink()  # a link is removed, never what it points to
            path.unlink()
            return [path, *edges]

    def remove_edge(self, source: str, target: str) -> Path:
        with self.lock():
            path = self.edge_path(source, target)
            if not path.exists():
                self.edge_metadata(source, target)  # raises the helpful error
            path.unlink()
            return path


def header_fields(raw: dict[str, str], path: Path) -> dict:
    """A registry file's string metadata with its JSON fields parsed (bounded), if it is a modgraph file."""
    meta = dict(raw)
    for key in JSON_FIELDS:
        if key in meta:
            meta[key] = parse_json(meta[key], f"registry file {path}: header field {key!r}")
    if meta.get("format_version") != FORMAT_VERSION or "kind" not in meta:
        raise RegistryCorruptError(
            f"registry file {path} is not a modgraph format {FORMAT_VERSION} file "
            f"(format_version={str(meta.get('format_version'))[:20]!r}); delete it and retrain it")
    return meta


def module_configs(record: NodeRecord | EdgeRecord, path: Path) -> dict:
    """The configs of the modules a header describes, each refused above the caps before anything is built.

    Raises ``KeyError``, ``TypeError`` or ``ValueError`` for a config of the wrong shape (callers say which
    file), :class:`RegistryCorruptError` for a module over ``MAX_PARAMETERS``.
    """
    from modgraph.learning.models import VAE, Associator, AssociatorConfig, Recognizer, RecognizerConfig, VAEConfig

    parts = ({"vae": (VAEConfig, VAE), "recognizer": (RecognizerConfig, Recognizer)} if isinstance(record, NodeRecord)
             else {"associator": (AssociatorConfig, Associator)})
    configs = {}
    for key, (config_type, module) in parts.items():
        config = configs[key] = config_type(**record.config[key])
        check_parameters(lambda: module(config), path, key)
    return configs


def _anchors(tensors: dict, latent_dim: int, classes: int | None):
    """A node's anchors, checked against its latent size and classes; None when it has none."""
    import torch

    if "anchors.z" not in tensors and "anchors.y" not in tensors:
        return None
    z, y = tensors["anchors.z"], tensors["anchors.y"]
    if (z.dim() != 2 or z.shape[1] != latent_dim or y.dim() != 1 or len(y) != len(z) or not z.is_floating_point()
            or y.is_floating_point() or not torch.isfinite(z).all()
            or (len(y) and (int(y.min()) < 0 or (classes is not None and int(y.max()) >= classes)))):
        raise ValueError(f"its anchors ({tuple(z.shape)} latents, {tuple(y.shape)} classes) do not fit a "
                         f"{latent_dim}-d latent")
    return z.float(), y.long()
