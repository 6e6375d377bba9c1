"""The input files of a command: files as given, and folders expanded to the files a modality reads."""

from __future__ import annotations

from pathlib import Path

from modgraph.errors import InputFileError
from modgraph.modality import Modality


def expand_inputs(paths: list[Path], modality: Modality) -> list[Path]:
    """Files as given, and the input files of a folder (sorted); a missing path is an error."""
    items = []
    for p in paths:
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in modality.input_suffixes)
            if not found:
                raise InputFileError(f"folder {p} holds no {modality.name} input files "
                                     f"({', '.join(modality.input_suffixes)})")
            items.extend(found)
        else:  # a missing file is reported by modgraph.inference.readings.read_batch with the other unreadable ones
            items.append(p)
    return items
