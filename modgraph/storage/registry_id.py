"""Which registry a job was planned for, and whether its nodes' plugins are the ones installed here.

``modgraph train`` writes an id file into the registry before handing out jobs and passes the
id to each job; a worker that mounted another folder at the registry's path fails in one line.
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

from modgraph.errors import RegistryMismatchError
from modgraph.storage.atomic import fsync_file, temporary_path
from modgraph.storage.safe_io import regular_file

ID_FILE = ".registry-id"
ID_ENV = "MODGRAPH_REGISTRY_ID"  # the id ``modgraph train`` planned for, as each job is given it
_ID = re.compile(r"^[0-9a-f]{32}$")


def read_registry_id(root: str | Path) -> str | None:
    """The id of the registry at ``root``, None when it has none (or an unreadable one)."""
    path = Path(root) / ID_FILE
    try:
        regular_file(path, max_bytes=256)  # never a link or a FIFO that would block the read
        text = path.read_text(encoding="ascii", errors="replace").strip()
    except FileNotFoundError:
        return None
    return text if _ID.match(text) else None


def ensure_registry_id(root: str | Path) -> str:
    """The registry's id, written first (atomically; the first of two racing writers wins) when it has none."""
    root = Path(root)
    found = read_registry_id(root)
    if found is not None:
        return found
    root.mkdir(parents=True, exist_ok=True)
    path = root / ID_FILE
    tmp = temporary_path(path)
    tmp.write_text(uuid.uuid4().hex + "\n", encoding="ascii")
    fsync_file(tmp)
    try:
        os.link(tmp, path)  # fails if another writer got there first: its id stands
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    found = read_registry_id(root)
    if found is None:
        raise RegistryMismatchError(f"{path} is not a registry id file of ours; remove it and run modgraph train "
                                    f"again")
    return found


def check_registry_id(root: str | Path, expected: str) -> None:
    """A job's check: the registry it was given is the one the runner planned for."""
    found = read_registry_id(root)
    if found != expected:
        what = f"has id {found}" if found else "has no registry id file"
        raise RegistryMismatchError(
            f"registry {Path(root).resolve()} {what}, but this job was planned for registry {expected}: this "
            f"worker sees another folder at that path; mount the shared registry there (docs/scaling.md)")


def major(version: str | None) -> str | None:
    """A version's first number ("2" of "2.1.0"); None when there is none."""
    found = re.match(r"\s*v?(\d+)", version or "")
    return found.group(1) if found else None


def check_plugin_majors(nodes: dict[str, tuple[str | None, str | None]], installed: dict[str, str | None]) -> None:
    """Refuse a registry whose nodes (name: (plugin, version)) another major version of an installed plugin wrote.

    ``installed``: each installed plugin distribution's version. Nodes of plugins not installed here pass.
    """
    for name, (plugin, version) in sorted(nodes.items()):
        if plugin not in installed:
            continue
        here = installed[plugin]
        if major(version) != major(here):
            raise RegistryMismatchError(
                f"node {name!r} of this registry was written by {plugin} {version}, but {plugin} {here} is "
                f"installed here (another major version); install {plugin} {major(version)}.x on every worker")
