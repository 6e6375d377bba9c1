"""The on-disk graph: one safetensors file per modality node and per associator edge.

Headers carry everything but the weights, so the networkx view is built without loading
tensors. Writes go to a temporary file renamed into place under a file lock.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import networkx as nx
import torch
from filelock import FileLock, Timeout
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from modgraph.atomic import atomic_path
from modgraph.errors import ModgraphError, NotInRegistryError, RegistryCorruptError

FORMAT_VERSION = "1"
# Header fields holding JSON (everything in a safetensors header is a string).
JSON_FIELDS = ("config", "preprocessing", "metrics", "data", "options", "classes", "class_map", "training")


def default_registry() -> Path:
    return Path(os.environ.get("MODGRAPH_REGISTRY") or "registry")


def now_iso() -> str:
    # Microseconds: ``created`` identifies a node version (stale edges, cached nodes), and
    # a small modality can be retrained within the second it was first written.
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


class Registry:
    """A folder of ``nodes/<name>.safetensors`` and ``edges/<source>--<target>.safetensors``."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else default_registry()

    # -- paths ------------------------------------------------------------------------
    @property
    def nodes_dir(self) -> Path:
        return self.root / "nodes"

    @property
    def edges_dir(self) -> Path:
        return self.root / "edges"

    def node_path(self, name: str) -> Path:
        return self.nodes_dir / f"{name}.safetensors"

    def edge_path(self, source: str, target: str) -> Path:
        return self.edges_dir / f"{source}--{target}.safetensors"

    # -- locking and atomic writes ------------------------------------------------------
    @contextmanager
    def lock(self, timeout: float = 600.0):
        """Serialises writers (several processes may train into one registry)."""
        self.root.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.root / ".lock"))
        try:
            lock.acquire(timeout=timeout)
        except Timeout:
            raise ModgraphError(f"registry {self.root} is locked by another modgraph process; "
                                f"wait for it or remove {self.root / '.lock'} if none is running") from None
        try:
            yield
        finally:
            lock.release()

    def write(self, path: Path, tensors: dict[str, torch.Tensor], metadata: dict) -> None:
        """Write atomically: a reader sees the old file or the new one, never a partial one."""
        meta = {"format_version": FORMAT_VERSION, "created": now_iso()}
        for key, value in metadata.items():
            meta[key] = value if isinstance(value, str) else json.dumps(value)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with atomic_path(path) as tmp:
                save_file({k: v.detach().to("cpu", torch.float32).contiguous() if v.is_floating_point()
                           else v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp), metadata=meta)
        except OSError as exc:
            raise ModgraphError(f"could not write {path}: {exc}; the registry keeps its previous file") from None

    # -- reading -------------------------------------------------------------------------
    def read_metadata(self, path: Path) -> dict:
        """The parsed header of a registry file (no tensors are loaded)."""
        try:
            with safe_open(str(path), framework="pt") as f:
                raw = f.metadata() or {}
        except FileNotFoundError:
            raise
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise RegistryCorruptError(
                f"registry file {path} is unreadable ({exc}); delete it and retrain it "
                f"(modgraph add-modality / modgraph link)") from None
        meta = dict(raw)
        for key in JSON_FIELDS:
            if key in meta:
                try:
                    meta[key] = json.loads(meta[key])
                except json.JSONDecodeError:
                    raise RegistryCorruptError(f"registry file {path} has a malformed {key!r} header field") from None
        if meta.get("format_version") != FORMAT_VERSION or "kind" not in meta:
            raise RegistryCorruptError(
                f"registry file {path} is not a modgraph format {FORMAT_VERSION} file "
                f"(format_version={meta.get('format_version')!r}); delete it and retrain it")
        return meta

    def load_tensors(self, path: Path) -> dict[str, torch.Tensor]:
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise RegistryCorruptError(f"registry file {path} is unreadable ({exc}); delete it and retrain it") from None

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

    def node_names(self) -> list[str]:
        if not self.nodes_dir.exists():
            return []
        return sorted(p.stem for p in self.nodes_dir.glob("*.safetensors") if not p.name.startswith("."))

    def graph(self) -> nx.DiGraph:
        """Nodes and edges with their header metadata as attributes.

        An edge whose endpoint was retrained after it was linked is kept with
        ``stale=True``: its latent spaces no longer match, and routing skips it.
        """
        g = nx.DiGraph()
        for name in self.node_names():
            g.add_node(name, **self.read_metadata(self.node_path(name)))
        if self.edges_dir.exists():
            for path in sorted(self.edges_dir.glob("*.safetensors")):
                if path.name.startswith("."):
                    continue
                meta = self.read_metadata(path)
                src, dst = meta.get("source"), meta.get("target")
                if src not in g or dst not in g:
                    continue  # an orphan left by an interrupted removal; never routed
                stale = (meta.get("source_node_created") != g.nodes[src].get("created")
                         or meta.get("target_node_created") != g.nodes[dst].get("created"))
                g.add_edge(src, dst, **meta, stale=stale)
        return g

    # -- removal -------------------------------------------------------------------------
    def remove_node(self, name: str) -> list[Path]:
        """Delete a node and every associator touching it; return the files removed."""
        with self.lock():
            path = self.node_path(name)
            if not path.exists():
                self.node_metadata(name)  # raises the helpful error
            removed = []
            if self.edges_dir.exists():
                for edge in sorted(self.edges_dir.glob("*.safetensors")):
                    src, _, dst = edge.stem.partition("--")
                    if name in (src, dst):
                        edge.unlink()
                        removed.append(edge)
            path.unlink()
            removed.insert(0, path)
            return removed

    def remove_edge(self, source: str, target: str) -> Path:
        with self.lock():
            path = self.edge_path(source, target)
            if not path.exists():
                self.edge_metadata(source, target)  # raises the helpful error
            path.unlink()
            return path
