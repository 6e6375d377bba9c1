"""Several renames into a registry that all land: a journal the next writer completes, and the one temporary pattern.

``link`` (an edge pair, journal in ``edges/``) and ``import`` (files staged in a hidden folder,
journal in the registry's root) write every file first, then a journal naming the renames, then
rename. Readers treat the files a journal names as stale; the next writer, under the lock,
completes the renames and removes every temporary (:data:`TEMPORARY`) a dead writer left.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import stat
import uuid
from pathlib import Path

from modgraph.errors import ModgraphError, RegistryCorruptError, printable
from modgraph.storage.atomic import fsync_file
from modgraph.storage.safe_io import MAX_SMALL_FILE, parse_json, read_bounded

# Every temporary name modgraph makes in a registry: ``.<name>.<pid>.<ns>.tmp`` files, ``.import-<id>.tmp``
# folders and ``.pair-<id>.json.tmp``. ``.tmpXXXXXX`` is what safetensors' own save_file left behind
# when killed (modgraph no longer calls it on the registry); cleanup removes those too.
TEMPORARY = re.compile(r"^\.(?:[A-Za-z0-9_.-]+\.tmp|tmp[A-Za-z0-9]{6})$")
JOURNALS = (".pair-*.json", ".import-*.json")
_FINAL = re.compile(r"^(?:(?:nodes|edges)/)?(?:[a-z][a-z0-9_]{0,31}|[a-z][a-z0-9_]{0,31}--[a-z][a-z0-9_]{0,31})"
                    r"\.safetensors$")
log = logging.getLogger("modgraph")


def write_journal(folder: Path, prefix: str, renames: list[tuple[Path, Path]]) -> Path:
    """Record ``renames`` (temporary, final; both inside ``folder``) in ``folder/.<prefix>-<id>.json``, fsynced."""
    journal = folder / f".{prefix}-{uuid.uuid4().hex}.json"
    staged = journal.with_name(journal.name + ".tmp")
    entries = [[tmp.relative_to(folder).as_posix(), final.relative_to(folder).as_posix()] for tmp, final in renames]
    staged.write_text(json.dumps(entries))
    fsync_file(staged)
    os.replace(staged, journal)
    return journal


def rename_all(folder: Path, renames: list[tuple[Path, Path]], prefix: str = "pair") -> None:
    """Rename written temporaries into place so that all land or, after a crash, the next writer lands the rest.

    With more than one file a journal is written first and removed last.
    """
    journal = write_journal(folder, prefix, renames) if len(renames) > 1 else None
    for tmp, path in renames:
        os.replace(tmp, path)
    if journal is not None:
        journal.unlink()


def entries(journal: Path) -> list[tuple[Path, Path]] | None:
    """The (temporary, final) paths ``journal`` names; None (and one warning line) for a journal that is not
    a small regular file of valid entries, which is then stale: ignored, and removed by the next writer."""
    try:
        raw = parse_json(read_bounded(journal, MAX_SMALL_FILE, "registry journal"), f"registry journal {journal}",
                         max_bytes=MAX_SMALL_FILE)
        ok = isinstance(raw, list) and all(
            isinstance(e, list) and len(e) == 2 and all(isinstance(p, str) for p in e) and _FINAL.match(e[1])
            and _temporary_of(e[0], e[1]) for e in raw)
        if not ok:
            raise RegistryCorruptError(f"registry journal {journal} does not list registry files")
    except FileNotFoundError:
        return []  # completed meanwhile
    except ModgraphError as exc:
        log.warning(printable(f"Warning: {exc}; it is ignored, and the next write to the registry removes it"))
        return None
    return [(journal.parent / tmp, journal.parent / final) for tmp, final in raw]


def _temporary_of(tmp: str, final: str) -> bool:
    """A journal's temporary is a temporary name in its folder, or the final's path inside a staging folder."""
    first, _, rest = tmp.partition("/")
    return bool(TEMPORARY.match(first)) and rest in ("", final) and (rest or "/" not in final)


def pending(folder: Path) -> set[Path]:
    """The final paths that journals in ``folder`` still have to land (readers treat them as stale)."""
    out: set[Path] = set()
    for pattern in JOURNALS:
        for journal in folder.glob(pattern):
            out.update(final for _, final in entries(journal) or [])
    return out


def complete(folder: Path) -> None:
    """Under the lock: land what each journal in ``folder`` names (its temporaries were complete before it was
    written), then remove it; a bad journal is removed unread."""
    for pattern in JOURNALS:
        for journal in sorted(folder.glob(pattern)):
            for tmp, final in entries(journal) or []:
                if _is_regular(tmp, journal.parent) and not final.is_dir():
                    final.parent.mkdir(exist_ok=True)  # nodes/ or edges/ (checked not to be links)
                    os.replace(tmp, final)
            remove(journal)  # a bad one too: a link is removed, not followed


def remove_temporaries(folder: Path) -> None:
    """Under the lock: remove every temporary in ``folder`` (a writer that died left it); links are not followed."""
    for path in folder.iterdir():
        if TEMPORARY.match(path.name):
            remove(path)


def remove(path: Path) -> None:
    """Remove a file, a link (not what it points to) or a folder."""
    try:
        if stat.S_ISDIR(os.lstat(path).st_mode):
            shutil.rmtree(path)
        else:
            path.unlink()
    except FileNotFoundError:
        pass


def _is_regular(path: Path, folder: Path) -> bool:
    """``path`` is a regular file reached from ``folder`` through real folders only (no link anywhere)."""
    try:
        parts = path.relative_to(folder).parts
        for depth in range(1, len(parts)):
            if not stat.S_ISDIR(os.lstat(folder.joinpath(*parts[:depth])).st_mode):
                return False
        return stat.S_ISREG(os.lstat(path).st_mode)
    except (OSError, ValueError):
        return False
