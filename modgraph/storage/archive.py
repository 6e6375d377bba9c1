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
import zlib
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from modgraph import __version__
from modgraph.storage.card import model_card
from modgraph.errors import ArchiveError, ModgraphError, NotInRegistryError, RegistryCorruptError
from modgraph.modality import NAME_PATTERN
from modgraph.storage.outputs import check_output, output_file
from modgraph.storage.registry import Registry, now_iso

ARCHIVE_FORMAT = "modgraph-archive"
ARCHIVE_VERSION = "1"
MANIFEST = "manifest.json"
CARD = "README.md"
MAX_FILE_BYTES = 4 << 30  # one node or edge (the largest built-in node is a few tens of MB)
MAX_SMALL_BYTES = 1 << 20  # the manifest and the card
MAX_MEMBERS = 10_000
CHUNK = 1 << 20
_NODE = re.compile(r"^nodes/([^/]+)\.safetensors$")
_EDGE = re.compile(r"^edges/([^/]+)--([^/]+)\.safetensors$")
_TAR_ERRORS = (tarfile.TarError, OSError, EOFError, zlib.error)


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
        for name in names:
            member, path = f"nodes/{name}.safetensors", registry.node_path(name)
            files[member], sources[member] = _file_entry(graph.nodes[name], *_hash_file(path)), path
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
                for member, path in sources.items():
                    info = tar.gettarinfo(str(path), arcname=member)
                    info.mode, info.uid, info.gid, info.uname, info.gname = 0o644, 0, 0, "", ""
                    with open(path, "rb") as fh:
                        tar.addfile(info, fh)
    return {"path": str(output), "size": output.stat().st_size, "manifest": manifest}


# -- import --------------------------------------------------------------------------------------------
def _open(archive: Path) -> tarfile.TarFile:
    if not archive.is_file():
        raise ArchiveError(f"archive {archive} does not exist (or is not a file)")
    try:
        return tarfile.open(archive, "r:*")
    except _TAR_ERRORS as exc:
        raise ArchiveError(f"{archive} is not a readable tar archive ({exc}); make one with: modgraph export FILE") from None


def _members(tar: tarfile.TarFile, archive: Path) -> dict[str, tarfile.TarInfo]:
    """Every member by name, after checking its name and type (regular files only)."""
    members: dict[str, tarfile.TarInfo] = {}
    try:
        for info in tar:
            if len(members) >= MAX_MEMBERS:
                raise ArchiveError(f"{archive} has more than {MAX_MEMBERS:,} members; refusing to import")
            if info.isdir() and info.name.rstrip("/") in ("nodes", "edges"):
                continue
            if info.issym() or info.islnk():
                raise ArchiveError(f"archive member {info.name!r} is a link (to {info.linkname!r}); refusing to import")
            if not info.isreg():
                raise ArchiveError(f"archive member {info.name!r} is not a regular file (a device, folder or "
                                   f"fifo); refusing to import")
            member_kind(info.name)
            if info.name in members:
                raise ArchiveError(f"archive member {info.name!r} appears twice; refusing to import")
            limit = MAX_FILE_BYTES if info.name not in (MANIFEST, CARD) else MAX_SMALL_BYTES
            if info.size > limit:
                raise ArchiveError(f"archive member {info.name!r} declares {info.size:,} bytes, more than the "
                                   f"{limit:,} allowed; refusing to import")
            members[info.name] = info
    except _TAR_ERRORS as exc:
        raise ArchiveError(f"{archive} is damaged or truncated ({exc}); export it again") from None
    return members


def _manifest(tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo], archive: Path) -> dict:
    """The manifest, checked against the members: the same files, each of the declared size."""
    if MANIFEST not in members:
        raise ArchiveError(f"{archive} has no {MANIFEST}; it was not written by modgraph export")
    try:
        manifest = json.loads(tar.extractfile(members[MANIFEST]).read(MAX_SMALL_BYTES + 1))
    except _TAR_ERRORS as exc:
        raise ArchiveError(f"{archive} is damaged or truncated ({exc}); export it again") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArchiveError(f"{archive}: {MANIFEST} is not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != ARCHIVE_FORMAT or not isinstance(manifest.get("files"), dict):
        raise ArchiveError(f"{archive}: {MANIFEST} is not a {ARCHIVE_FORMAT} manifest")
    if manifest.get("format_version") != ARCHIVE_VERSION:
        raise ArchiveError(f"{archive} is archive format {manifest.get('format_version')!r}; this modgraph reads "
                           f"format {ARCHIVE_VERSION!r}")
    files = manifest["files"]
    for name, entry in files.items():
        member_kind(name)
        if name == MANIFEST:
            raise ArchiveError(f"{archive}: {MANIFEST} lists itself")
        size, sha = (entry.get("size"), entry.get("sha256")) if isinstance(entry, dict) else (None, None)
        if not isinstance(size, int) or size < 0 or not isinstance(sha, str) or not re.fullmatch(r"[0-9a-f]{64}", sha):
            raise ArchiveError(f"{archive}: {MANIFEST} gives {name!r} no valid size and sha256")
        if size > (MAX_SMALL_BYTES if name == CARD else MAX_FILE_BYTES):
            raise ArchiveError(f"{archive}: {MANIFEST} declares {size:,} bytes for {name!r}, more than allowed; "
                               f"refusing to import")
    unexpected = sorted(set(members) - set(files) - {MANIFEST})
    if unexpected:
        raise ArchiveError(f"archive member {unexpected[0]!r} is not in {MANIFEST}; refusing to import")
    missing = sorted(set(files) - set(members))
    if missing:
        raise ArchiveError(f"{archive} lacks {missing[0]!r}, which {MANIFEST} lists: the archive is incomplete")
    for name, entry in files.items():
        if members[name].size != entry["size"]:
            raise ArchiveError(f"archive member {name!r} has {members[name].size:,} bytes where {MANIFEST} says "
                               f"{entry['size']:,}: it was truncated or altered; refusing to import")
    return manifest


def _copy_member(tar: tarfile.TarFile, info: tarfile.TarInfo, entry: dict, sink) -> None:
    """Stream one member into ``sink`` (a file or None), checking its size and sha256 against the manifest."""
    digest, size = hashlib.sha256(), 0
    try:
        source = tar.extractfile(info)
        while chunk := source.read(min(CHUNK, entry["size"] + 1 - size)):
            size += len(chunk)
            if size > entry["size"]:
                break
            digest.update(chunk)
            if sink is not None:
                sink.write(chunk)
    except _TAR_ERRORS as exc:
        raise ArchiveError(f"archive member {info.name!r} cannot be read ({exc}): the archive is damaged or "
                           f"truncated") from None
    if size != entry["size"]:
        raise ArchiveError(f"archive member {info.name!r} holds {size:,} bytes where {MANIFEST} says "
                           f"{entry['size']:,}: it was truncated or altered; refusing to import")
    if digest.hexdigest() != entry["sha256"]:
        raise ArchiveError(f"archive member {info.name!r} does not match its sha256 in {MANIFEST}: it was altered "
                           f"or damaged; refusing to import")


def _destinations(registry: Registry, manifest: dict) -> dict[str, Path]:
    """Where each node and edge of the manifest goes; every edge's endpoints must be there after import."""
    out, nodes = {}, set(registry.node_names())
    for name in manifest["files"]:
        kind, names = member_kind(name)
        if kind == "node":
            out[name] = registry.node_path(names[0])
            nodes.add(names[0])
        elif kind == "edge":
            out[name] = registry.edge_path(*names)
    for name in out:
        kind, names = member_kind(name)
        if kind == "edge" and not set(names) <= nodes:
            lacking = sorted(set(names) - nodes)[0]
            raise ArchiveError(f"archive edge {name!r} needs modality {lacking!r}, which neither the archive nor "
                               f"registry {registry.root} holds; refusing to import")
    return out


def _check_header(registry: Registry, name: str, path: Path) -> None:
    kind, names = member_kind(name)
    try:
        meta = registry.read_metadata(path)
    except RegistryCorruptError:
        raise ArchiveError(f"archive member {name!r} is not a readable modgraph file; refusing to import") from None
    found = (meta.get("name"),) if kind == "node" else (meta.get("source"), meta.get("target"))
    expected_kind = "modality" if kind == "node" else "associator"
    if meta.get("kind") != expected_kind or found != names:
        raise ArchiveError(f"archive member {name!r} holds a {meta.get('kind')} file for {found}, not what its "
                           f"name says; refusing to import")


def import_archive(registry: Registry, archive: str | Path, force: bool = False) -> dict:
    """Add the nodes and edges of ``archive`` to ``registry``, all or none.

    Every member is checked first (name, type, size, sha256 against the manifest; no member
    may leave the registry), and a trained file already there is only replaced with
    ``force``. Then, under the registry lock, each file is written to a temporary name in
    its folder, its header checked, and all of them renamed into place. The card is not
    copied (``modgraph card`` writes it anew).
    """
    archive = Path(archive)
    with _open(archive) as tar:
        members = _members(tar, archive)
        manifest = _manifest(tar, members, archive)
        files = manifest["files"]
        for name, entry in files.items():  # the first pass writes nothing
            _copy_member(tar, members[name], entry, None)
        destinations = _destinations(registry, manifest)
        with registry.lock():
            existing = [name for name, path in destinations.items() if path.exists()]
            if existing and not force:
                raise ArchiveError(f"registry {registry.root} already holds {', '.join(existing)}; import with "
                                   f"--force to replace them, or into another --registry")
            staged: dict[Path, Path] = {}
            try:
                for name, path in sorted(destinations.items()):
                    path.parent.mkdir(parents=True, exist_ok=True)
                    tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
                    staged[path] = tmp
                    with open(tmp, "wb") as sink:  # the archive is read again: it may have changed since
                        _copy_member(tar, members[name], files[name], sink)
                        sink.flush()
                        os.fsync(sink.fileno())
                    _check_header(registry, name, tmp)
                written = sorted(staged, key=lambda p: (p.parent.name != "nodes", p))  # nodes, then edges
                for path in written:
                    os.replace(staged[path], path)
            except OSError as exc:
                raise ModgraphError(f"could not write into registry {registry.root}: {exc}; nothing was imported") from None
            finally:
                for tmp in staged.values():
                    if tmp.exists():
                        tmp.unlink()
    return {"archive": str(archive), "written": [str(p) for p in written], "replaced": existing, "manifest": manifest}


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
