"""One file that hands a trained graph to someone else: ``modgraph export`` writes it, ``modgraph import`` reads it.

A tar of the registry's ``nodes/`` and ``edges/`` files, ``manifest.json`` (each file's sha256 and
size, the plugins and versions that wrote them) and the model card ``README.md``. Import checks all
of it before it writes anything, and never overwrites a trained file unless forced.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tarfile
import time
import uuid
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from modgraph import __version__
from modgraph.storage.card import model_card
from modgraph.errors import ArchiveError, ModgraphError, NotInRegistryError
from modgraph.modality import NAME_PATTERN
from modgraph.storage.outputs import check_output, output_file
from modgraph.storage import journal, tar_stream
from modgraph.storage.headers import metadata_of, shareable_bytes
from modgraph.storage.records import EdgeRecord, NodeRecord, parse_record
from modgraph.storage.registry import Registry, header_fields, module_configs, now_iso
from modgraph.storage.safe_io import MAX_HEADER, parse_json, regular_file

ARCHIVE_FORMAT = "modgraph-archive"
ARCHIVE_VERSION = "1"
MANIFEST = "manifest.json"
CARD = "README.md"
MAX_FILE_BYTES = 4 << 30  # one node or edge (the largest built-in node is a few tens of MB)
MAX_SMALL_BYTES = 1 << 20  # the manifest and the card
CHUNK = 1 << 20
HEAD_BYTES = 8 + MAX_HEADER  # a member's first bytes, kept to check its header
_NODE = re.compile(r"^nodes/([^/]+)\.safetensors$")
_EDGE = re.compile(r"^edges/([^/]+)--([^/]+)\.safetensors$")


def member_kind(name: str) -> tuple[str, tuple[str, ...]]:
    """What an archive member may be: ``("manifest", ())``, ``("card", ())``, ``("node", (name,))`` or
    ``("edge", (source, target))``; anything else raises :class:`ArchiveError`."""
    path = PurePosixPath(name)
    if name.startswith("/") or "\\" in name or re.match(r"^[A-Za-z]:", name) or "\x00" in name:
        raise ArchiveError(f"archive member {name!r} has an absolute path; refusing to import")
    if any(part in ("..", ".") for part in name.split("/")) or path.as_posix() != name:
        raise ArchiveError(f"archive member {name!r} leaves the registry (or is not a plain relative path); "
                           f"refusing to import")
    if name == MANIFEST:
        return "manifest", ()
    if name == CARD:
        return "card", ()
    for kind, pattern in (("node", _NODE), ("edge", _EDGE)):
        match = pattern.match(name)
        if match:
            bad = [n for n in match.groups() if not NAME_PATTERN.match(n)]
            if bad:
                raise ArchiveError(f"archive member {name!r}: {bad[0]!r} is not a modality name "
                                   f"({NAME_PATTERN.pattern}); refusing to import")
            return kind, match.groups()
    raise ArchiveError(f"archive member {name!r} is not a registry file (only {MANIFEST}, {CARD}, "
                       f"nodes/NAME.safetensors and edges/SOURCE--TARGET.safetensors); refusing to import")


def _hash_file(path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _file_entry(meta: dict, sha256: str, size: int) -> dict:
    keys = ("kind", "name", "source", "target", "plugin", "plugin_version", "modgraph_version", "created")
    return {"sha256": sha256, "size": size, **{k: meta[k] for k in keys if k in meta}}


def _subset(graph, only: list[str] | None, registry: Registry) -> tuple[list[str], list[tuple[str, str]]]:
    names = sorted(graph.nodes) if only is None else list(dict.fromkeys(only))
    unknown = [n for n in names if n not in graph]
    if unknown:
        raise NotInRegistryError(f"--only names {', '.join(repr(n) for n in unknown)}, not in registry "
                                 f"{registry.root} (it has: {', '.join(sorted(graph.nodes)) or 'nothing'})")
    if not names:
        raise ArchiveError(f"registry {registry.root} holds no trained modality to export; train one with: "
                           f"modgraph add-modality NAME")
    return sorted(names), sorted((a, b) for a, b in graph.edges if a in names and b in names)


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mtime: float) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, int(mtime)
    tar.addfile(info, io.BytesIO(data))


def export_registry(registry: Registry, output: str | Path, only: list[str] | None = None,
                    modalities: Mapping[str, object] | None = None) -> dict:
    """Write ``registry`` (or the subgraph of the ``only`` modalities) to the tar ``output``.

    ``.tar.gz`` / ``.tgz`` names are gzipped. The file appears whole or not at all. Returns what
    was written: the path, its size, the manifest.
    """
    output = check_output(output)  # a device, a FIFO or a folder is refused before anything is read
    compression = "w:gz" if output.name.endswith((".tar.gz", ".tgz")) else "w"
    with registry.lock():  # writers wait: the hashes describe the files as they are put in
        graph = registry.graph()
        names, edges = _subset(graph, only, registry)
        files, sources = {}, {}
        node_bytes = {}  # a node's header without the local hint of where its data was on this machine
        for name in names:
            member, data = f"nodes/{name}.safetensors", shareable_bytes(registry.node_path(name))
            files[member] = _file_entry(graph.nodes[name], hashlib.sha256(data).hexdigest(), len(data))
            node_bytes[member] = data
        for a, b in edges:
            member, path = f"edges/{a}--{b}.safetensors", registry.edge_path(a, b)
            files[member], sources[member] = _file_entry(graph.edges[a, b], *_hash_file(path)), path
        card = model_card(registry, modalities, only=names).encode("utf-8")
        files[CARD] = {"sha256": hashlib.sha256(card).hexdigest(), "size": len(card), "kind": "card"}
        manifest = {
            "format": ARCHIVE_FORMAT, "format_version": ARCHIVE_VERSION, "modgraph_version": __version__,
            "created": now_iso(), "modalities": names, "associators": [list(e) for e in edges],
            "plugins": {graph.nodes[n].get("plugin"): graph.nodes[n].get("plugin_version") for n in names},
            "files": files,
        }
        with output_file(output) as tmp:  # only a regular file is replaced (storage/outputs.py)
            now = time.time()
            with tarfile.open(tmp, compression, format=tarfile.PAX_FORMAT) as tar:
                _add_bytes(tar, MANIFEST, json.dumps(manifest, indent=2).encode("utf-8"), now)
                _add_bytes(tar, CARD, card, now)
                for member, data in node_bytes.items():
                    _add_bytes(tar, member, data, now)
                for member, path in sources.items():
                    info = tar.gettarinfo(str(path), arcname=member)
                    info.mode, info.uid, info.gid, info.uname, info.gname = 0o644, 0, 0, "", ""
                    with open(path, "rb") as fh:
                        tar.addfile(info, fh)
    return {"path": str(output), "size": output.stat().st_size, "manifest": manifest}


# -- import --------------------------------------------------------------------------------------------
def _wanted(info: tarfile.TarInfo) -> bool:
    """Whether a member holds a file to check (False for the ``nodes/`` and ``edges/`` folder entries)."""
    if info.isdir() and info.name.rstrip("/") in ("nodes", "edges"):
        return False
    if info.issym() or info.islnk():
        raise ArchiveError(f"archive member {info.name[:200]!r} is a link (to {info.linkname[:200]!r}); refusing to "
                           f"import")
    if not info.isreg():
        raise ArchiveError(f"archive member {info.name[:200]!r} is not a regular file (a device, folder or fifo); "
                           f"refusing to import")
    member_kind(info.name)
    return True


def _manifest(data: bytes, archive: Path) -> dict:
    """The manifest (bounded JSON), checked: its format, and a valid size and sha256 for each file it lists."""
    manifest = parse_json(data, f"{archive}: {MANIFEST}", ArchiveError, MAX_SMALL_BYTES)
    if not isinstance(manifest, dict) or manifest.get("format") != ARCHIVE_FORMAT or not isinstance(manifest.get("files"), dict):
        raise ArchiveError(f"{archive}: {MANIFEST} is not a {ARCHIVE_FORMAT} manifest")
    if manifest.get("format_version") != ARCHIVE_VERSION:
        raise ArchiveError(f"{archive} is archive format {str(manifest.get('format_version'))[:20]!r}; this modgraph "
                           f"reads format {ARCHIVE_VERSION!r}")
    for name, entry in manifest["files"].items():
        member_kind(name)
        if name == MANIFEST:
            raise ArchiveError(f"{archive}: {MANIFEST} lists itself")
        size, sha = (entry.get("size"), entry.get("sha256")) if isinstance(entry, dict) else (None, None)
        if not isinstance(size, int) or size < 0 or not isinstance(sha, str) or not re.fullmatch(r"[0-9a-f]{64}", sha):
            raise ArchiveError(f"{archive}: {MANIFEST} gives {name!r} no valid size and sha256")
        if size > (MAX_SMALL_BYTES if name == CARD else MAX_FILE_BYTES):
            raise ArchiveError(f"{archive}: {MANIFEST} declares {size:,} bytes for {name!r}, more than allowed; "
                               f"refusing to import")
    return manifest


def _copy_member(info: tarfile.TarInfo, source, entry: dict, sink) -> bytes:
    """Stream one member into ``sink`` (a file or None), checking its size and sha256 against the manifest;
    returns its first bytes (enough for a safetensors header)."""
    if info.size != entry["size"]:
        raise ArchiveError(f"archive member {info.name!r} has {info.size:,} bytes where {MANIFEST} says "
                           f"{entry['size']:,}: it was truncated or altered; refusing to import")
    digest, size, head = hashlib.sha256(), 0, bytearray()
    while chunk := source.read(min(CHUNK, entry["size"] + 1 - size)):
        size += len(chunk)
        if size > entry["size"]:
            break
        digest.update(chunk)
        head += chunk[:HEAD_BYTES - len(head)]
        if sink is not None:
            sink.write(chunk)
    if size != entry["size"]:
        raise ArchiveError(f"archive member {info.name!r} holds {size:,} bytes where {MANIFEST} says "
                           f"{entry['size']:,}: it was truncated or altered; refusing to import")
    if digest.hexdigest() != entry["sha256"]:
        raise ArchiveError(f"archive member {info.name!r} does not match its sha256 in {MANIFEST}: it was altered "
                           f"or damaged; refusing to import")
    return bytes(head)


def _check_header(name: str, head: bytes, size: int) -> None:
    """A node or edge member's header, read from its first bytes: a modgraph file of what its name says,
    whose modules are within the caps (nothing is built)."""
    kind, names = member_kind(name)
    try:
        meta = header_fields(metadata_of(head, size, name), Path(name))
        record = parse_record(NodeRecord if kind == "node" else EdgeRecord, meta, Path(name))
        module_configs(record, Path(name))
    except (ModgraphError, ValueError, KeyError, TypeError) as exc:
        first = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise ArchiveError(f"archive member {name!r} is not a valid modgraph file ({first}); refusing to import") from None
    found = (record.name,) if kind == "node" else (record.source, record.target)
    if found != names:
        raise ArchiveError(f"archive member {name!r} holds the file of {'--'.join(found)[:80]!r}, not what its name "
                           f"says; refusing to import")


def _read_archive(archive: Path, staging: Path | None = None, expected: dict | None = None) -> dict:
    """Read ``archive`` front to back, checking every member against its manifest (the first member).

    With ``staging``, each node and edge is also written there (under its member name), and the
    manifest must be ``expected`` (the archive may have changed since it was checked). Returns the manifest.
    """
    manifest, seen = None, set()
    for info, source in tar_stream.stream_members(archive):
        if not _wanted(info):
            continue
        if manifest is None:
            if info.name != MANIFEST or info.size > MAX_SMALL_BYTES:
                raise ArchiveError(f"{archive} has no {MANIFEST} of at most {MAX_SMALL_BYTES:,} bytes as its first "
                                   f"member; it was not written by modgraph export")
            manifest = _manifest(source.read(MAX_SMALL_BYTES + 1), archive)
            if expected is not None and manifest != expected:
                raise ArchiveError(f"{archive} changed while it was imported; nothing was imported")
            continue
        entry = manifest["files"].get(info.name)
        if entry is None or info.name in seen:
            raise ArchiveError(f"archive member {info.name!r} is not in {MANIFEST}, or appears twice; refusing to "
                               f"import")
        seen.add(info.name)
        kind, _ = member_kind(info.name)
        target = staging / info.name if staging is not None and kind in ("node", "edge") else None
        if target is None:
            head = _copy_member(info, source, entry, None)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "xb") as sink:
                head = _copy_member(info, source, entry, sink)
                sink.flush()
                os.fsync(sink.fileno())
        if kind in ("node", "edge"):
            _check_header(info.name, head, entry["size"])
    if manifest is None:
        raise ArchiveError(f"{archive} has no {MANIFEST}; it was not written by modgraph export")
    missing = sorted(set(manifest["files"]) - seen)
    if missing:
        raise ArchiveError(f"{archive} lacks {missing[0]!r}, which {MANIFEST} lists: the archive is incomplete")
    return manifest


def _destinations(registry: Registry, manifest: dict, force: bool) -> tuple[dict[str, Path], list[str]]:
    """Under the lock: where each node and edge goes, and the trained files it replaces (only with ``force``).

    Every edge's endpoints must be in the archive or the registry, and every destination must be
    absent or a regular file; nothing is written yet.
    """
    out, nodes = {}, set(registry.node_names())
    for name in manifest["files"]:
        kind, names = member_kind(name)
        if kind in ("node", "edge"):
            out[name] = registry.node_path(names[0]) if kind == "node" else registry.edge_path(*names)
            nodes.update(names[:1] if kind == "node" else ())
    for name in out:
        kind, names = member_kind(name)
        if kind == "edge" and not set(names) <= nodes:
            raise ArchiveError(f"archive edge {name!r} needs modality {sorted(set(names) - nodes)[0]!r}, which "
                               f"neither the archive nor registry {registry.root} holds; nothing was imported")
    existing = []
    for name, path in out.items():
        if os.path.lexists(path):
            regular_file(path)  # a folder, link or FIFO there is refused before anything is replaced
            existing.append(name)
    if existing and not force:
        raise ArchiveError(f"registry {registry.root} already holds {', '.join(existing)}; import with "
                           f"--force to replace them, or into another --registry")
    return out, existing


def _check_staged(registry: Registry, staging: Path, destinations: dict[str, Path]) -> None:
    """Load every staged file as a reader would: shapes, finite weights, and edges that fit their nodes."""
    staged, nodes = Registry(staging), {}
    for name in sorted(destinations, key=lambda n: not n.startswith("nodes/")):  # nodes first
        kind, names = member_kind(name)
        try:
            if kind == "node":
                nodes[names[0]] = (staged.load_node(names[0])[0], staging / name)
                continue
            for end in set(names) - set(nodes):  # an endpoint the registry already holds
                nodes[end] = (registry.node_record(end), registry.node_path(end))
            staged.check_edge_dims(staged.edge_record(*names), staging / name, nodes)
            staged.load_edge(*names, check_dims=False)
        except ModgraphError as exc:  # said of the archive's member, not of the hidden staged copy
            reason = str(exc).replace(f"registry file {staging}/", "").replace(f"{staging}/", "").split("; ")[0]
            raise ArchiveError(f"archive member {reason}; refusing to import, nothing was imported") from None


def import_archive(registry: Registry, archive: str | Path, force: bool = False) -> dict:
    """Add the nodes and edges of ``archive`` to ``registry``, all or none.

    A first pass reads the whole archive within :mod:`~modgraph.storage.tar_stream`'s caps and
    checks every member (name, type, size, sha256 against the manifest, header) and writes
    nothing. Then, under the registry lock: the edges' endpoints and what would be replaced
    (only with ``force``) are checked, the files are staged in a hidden folder of the registry,
    loaded as a reader would, and renamed into place under a journal
    (:mod:`~modgraph.storage.journal`) that the next writer completes if this one dies. A
    failed import into a new registry leaves no folder behind. The card is not copied.
    """
    archive = Path(archive)
    manifest = _read_archive(archive)
    created = _missing_folders(registry.root)
    try:
        with registry.lock():
            destinations, existing = _destinations(registry, manifest, force)
            staging = registry.root / f".import-{uuid.uuid4().hex}.tmp"
            try:
                staging.mkdir()
                _read_archive(archive, staging, manifest)
                _check_staged(registry, staging, destinations)
                order = sorted(destinations, key=lambda n: (not n.startswith("nodes/"), n))  # nodes, then edges
                for folder in {destinations[n].parent for n in order}:
                    folder.mkdir(exist_ok=True)
                _land(registry, [(staging / n, destinations[n]) for n in order])
            except OSError as exc:
                raise ModgraphError(f"could not write into registry {registry.root}: {exc.strerror or exc}; nothing "
                                    f"was imported") from None
            finally:
                if not any(registry.root.glob(".import-*.json")):  # else the next writer lands what is staged
                    journal.remove(staging)
    except BaseException:
        _remove_folders(registry.root, created)
        raise
    return {"archive": str(archive), "written": [str(destinations[n]) for n in order], "replaced": existing,
            "manifest": manifest}


def _land(registry: Registry, renames: list[tuple[Path, Path]]) -> None:
    """The staged files renamed into place together; once the journal is written, the import completes."""
    try:
        journal.rename_all(registry.root, renames, prefix="import")
    except OSError as exc:
        if any(tmp.exists() for tmp, _ in renames) and any(registry.root.glob(".import-*.json")):
            raise ModgraphError(f"the import into {registry.root} was interrupted ({exc.strerror or exc}); the next "
                                f"modgraph command that writes to the registry completes it") from None
        raise


def _missing_folders(root: Path) -> list[Path]:
    """``root`` and those of its parents that do not exist yet, deepest first."""
    missing = []
    while not os.path.lexists(root) and root != root.parent:
        missing.append(root)
        root = root.parent
    return missing


def _remove_folders(root: Path, created: list[Path]) -> None:
    """After a failed import into a new registry: its lock file and the (empty) folders it made."""
    if not created:
        return
    (root / ".lock").unlink(missing_ok=True)
    for folder in [root / "nodes", root / "edges", *created]:
        try:
            folder.rmdir()
        except OSError:
            pass


def plugin_notes(manifest: dict, modalities: Mapping[str, object]) -> list[str]:
    """What an importer should know: nodes whose plugin is missing here, or installed at another version."""
    notes = []
    for name, entry in sorted(manifest["files"].items()):
        if entry.get("kind") != "modality":
            continue
        modality = modalities.get(entry.get("name"))
        if modality is None:
            notes.append(f"modality {entry.get('name')!r} needs plugin {entry.get('plugin')} "
                         f"{entry.get('plugin_version')}, not installed here: translate and eval need it")
        elif getattr(modality, "distribution_version", None) != entry.get("plugin_version"):
            notes.append(f"modality {entry.get('name')!r} was written by {entry.get('plugin')} "
                         f"{entry.get('plugin_version')}; {modality.distribution} {modality.distribution_version} "
                         f"is installed here")
    return notes
