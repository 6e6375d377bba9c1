"""The input files of a command: files as given, folders expanded to the files a modality reads
(what else they held counted by suffix), and ``-`` read from standard input."""

from __future__ import annotations

import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from modgraph.errors import InputFileError
from modgraph.modality import Modality

STDIN = "-"
MAX_STDIN_BYTES = 256 << 20  # far above one recording or one photo


@dataclass
class Inputs:
    """The files to read, and what the folders held besides: suffix (``folder``, ``no suffix``) -> count."""

    files: list[Path]
    skipped: Counter = field(default_factory=Counter)
    recursive: bool = False
    _stdin_folder: tempfile.TemporaryDirectory | None = None  # removed with this object

    def skipped_line(self, modality: Modality) -> str | None:
        """One line saying how many folder entries were not read, by suffix, and why; None when none were."""
        if not self.skipped:
            return None
        parts = ", ".join(_plural(n, "subfolder") if suffix == "folder" else f"{n} {suffix}"
                          for suffix, n in sorted(self.skipped.items(), key=lambda kv: (-kv[1], kv[0])))
        why = f"{modality.name} reads {', '.join(modality.input_suffixes)}"
        if self.skipped.get("folder") and not self.recursive:
            why += "; --recursive reads subfolders"
        return f"skipped {_plural(sum(self.skipped.values()), 'folder entry', 'folder entries')}: {parts} ({why})"


    def relabel(self, rows: list[dict], notes: dict, errors: dict) -> None:
        """Rows, notes and errors name standard input ``-``, not its temporary file."""
        if self._stdin_folder is None:
            return
        tmp = str(next(p for p in self.files if p.parent == Path(self._stdin_folder.name)))
        for row in rows:
            if row.get("input") == tmp:
                row["input"] = STDIN
        for table in (notes, errors):
            if tmp in table:
                table[STDIN] = table.pop(tmp)
            for key, value in list(table.items()):
                if isinstance(value, str):
                    table[key] = value.replace(tmp, STDIN)


def _plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else many or one + 's'}"


def _suffix(path: Path) -> str:
    return path.suffix.lower() or "no suffix"


def _scan(folder: Path, modality: Modality, recursive: bool, skipped: Counter) -> list[Path]:
    found = []
    for entry in sorted(folder.iterdir()):
        if entry.is_dir():
            if recursive and not entry.is_symlink():
                found.extend(_scan(entry, modality, recursive, skipped))
            else:
                skipped["folder"] += 1
        elif entry.is_file() and entry.suffix.lower() in modality.input_suffixes:
            found.append(entry)
        else:
            skipped[_suffix(entry)] += 1
    return found


def _from_stdin(modality: Modality) -> tuple[Path, tempfile.TemporaryDirectory]:
    """Standard input written to a temporary file named ``stdin`` with the modality's first input suffix."""
    data = sys.stdin.buffer.read(MAX_STDIN_BYTES + 1)
    if not data:
        raise InputFileError(f"{STDIN} reads one file from standard input, and it was empty")
    if len(data) > MAX_STDIN_BYTES:
        raise InputFileError(f"standard input holds more than {MAX_STDIN_BYTES >> 20} MB; give a file instead")
    folder = tempfile.TemporaryDirectory(prefix="modgraph-stdin-")
    path = Path(folder.name) / f"stdin{modality.input_suffixes[0] if modality.input_suffixes else ''}"
    path.write_bytes(data)
    return path, folder


def gather_inputs(paths: list[Path], modality: Modality, recursive: bool = False) -> Inputs:
    """Files as given, the input files of folders (sorted; ``recursive``: subfolders too), ``-`` from stdin."""
    inputs = Inputs([], Counter(), recursive)
    for p in paths:
        if str(p) == STDIN:
            if inputs._stdin_folder is not None:
                raise InputFileError(f"{STDIN} (standard input) can be given once")
            path, inputs._stdin_folder = _from_stdin(modality)
            inputs.files.append(path)
        elif p.is_dir():
            before = sum(inputs.skipped.values())
            found = _scan(p, modality, recursive, inputs.skipped)
            if not found:
                held = _plural(sum(inputs.skipped.values()) - before, "other entry", "other entries")
                raise InputFileError(f"folder {p} holds no {modality.name} input files "
                                     f"({', '.join(modality.input_suffixes)}; it holds {held}"
                                     + ("" if recursive else "; --recursive reads subfolders") + ")")
            inputs.files.extend(found)
        else:  # a missing file is reported by modgraph.inference.readings.read_batch with the other unreadable ones
            inputs.files.append(p)
    return inputs


def expand_inputs(paths: list[Path], modality: Modality, recursive: bool = False) -> list[Path]:
    """Files as given, and the input files of folders (sorted); see :func:`gather_inputs`."""
    return gather_inputs(paths, modality, recursive).files
