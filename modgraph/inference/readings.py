"""What a node's recognizer makes of inputs: per row, a class name and its softmax confidence.

``modgraph read`` and ``modgraph translate`` report these so that a user sees what was understood,
and read a batch of files so that one bad file is listed while the others go on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from modgraph.errors import InputFileError
from modgraph.inference.inputs import gather_inputs
from modgraph.inference.loaded_node import LoadedNode
from modgraph.modality import Modality
from modgraph.runtime.progress import phase


# Below this a reading is reported as doubtful: the recognizer gives another class about as
# much weight as its answer (label smoothing caps a sure answer at about 0.955).
LOW_CONFIDENCE = 0.5


@dataclass(frozen=True)
class Reading:
    """A recognizer's answer for one input: the class name and the probability it gives it."""

    name: str
    confidence: float


@torch.no_grad()
def readings(node: LoadedNode, x: torch.Tensor, batch_size: int = 1024) -> list[Reading]:
    """The recognizer of ``node`` on normalised inputs ``x`` (N, *shape): one :class:`Reading` per row."""
    recognizer = node.recognizer.eval()
    device = next(recognizer.parameters()).device
    names = node.modality.class_names
    out = []
    for start in range(0, len(x), batch_size):
        probabilities = torch.softmax(recognizer(x[start:start + batch_size].to(device)).float(), dim=1)
        confidence, index = probabilities.max(dim=1)
        out += [Reading(names[i], round(c, 4)) for i, c in zip(index.tolist(), confidence.tolist())]
    return out


def doubt(modality: str, what: str, reading: Reading) -> str | None:
    """One line warning that ``reading`` of ``what`` is unsure, or None when it is not."""
    if reading.confidence >= LOW_CONFIDENCE:
        return None
    return (f"{modality} read {what} as {reading.name!r} with only {round(100 * reading.confidence)}% confidence: "
            "the output may be wrong")


def read_batch(modality: Modality, paths: list[Path]) -> tuple[torch.Tensor | None, list[Path], dict[str, list[str]],
                                                              dict[str, str]]:
    """Read ``paths`` with ``modality``: the features of the readable ones, those paths, their notes,
    and for each unreadable one its error message (the batch is read file by file only when it fails)."""
    asked = [str(p) for p in paths]
    errors = {str(p): f"input file {p} does not exist" for p in paths if not p.exists()}
    paths = [p for p in paths if str(p) not in errors]
    try:
        x, notes = modality.read_files(paths) if paths else (None, [])
    except InputFileError:
        x, notes, good = [], [], []
        for p in paths:
            try:
                one, one_notes = modality.read_files([p])
            except InputFileError as exc:
                errors[str(p)] = str(exc)
                continue
            x.append(one)
            notes += one_notes
            good.append(p)
        paths, x = good, torch.cat(x) if x else None
    errors = {p: errors[p] for p in asked if p in errors}  # in the order asked
    return x, paths, {str(p): n for p, n in zip(paths, notes) if n}, errors


def read_files(graph, name: str, paths: list[Path], texts: list[str] = (), recursive: bool = False) -> dict:
    """What node ``name``'s recognizer makes of files (folders expanded) and literal texts.

    Returns ``{"rows": [{"input", "read_as", "read_confidence"}...], "notes": {path: [...]},
    "errors": {path: message}, "skipped": {suffix: count}, "skipped_line": str | None}``; raises
    :class:`InputFileError` when nothing could be read. ``recursive``: folders' subfolders too.
    """
    node = graph.node(name)
    found = gather_inputs([Path(p) for p in paths], node.modality, recursive)
    items = found.files
    if not items and not texts:
        raise InputFileError("nothing to read: give one or more files, a folder, or --text")
    with phase(f"{name}: reading {len(items)} file(s)", getattr(graph, "progress", False)):
        x, good, notes, errors = read_batch(node.modality, items)
    parts = [x] if x is not None else []
    if texts:
        parts.append(torch.stack([node.modality.read_text(t) for t in texts]))
    if not parts:
        raise InputFileError(next(iter(errors.values())))
    read = readings(node, node.modality.normalize(torch.cat(parts), node.stats))
    rows = [{"input": str(what), "read_as": r.name, "read_confidence": r.confidence}
            for what, r in zip([*good, *texts], read)]
    found.relabel(rows, notes, errors)
    return {"rows": rows, "notes": notes, "errors": errors, "skipped": dict(found.skipped),
            "skipped_line": found.skipped_line(node.modality)}


def translation_rows(source: LoadedNode, target: LoadedNode, inputs: list, x: torch.Tensor, out: torch.Tensor,
                     outputs: list[list[Path]]) -> list[dict]:
    """One row per translated input: what ``source``'s recognizer read in ``x`` (normalised inputs) and
    what ``target``'s recognizer reads in ``out`` (normalised outputs, (N, samples, *shape)).

    ``written_as``/``written_confidence`` are the first sample's; with several samples,
    ``samples_written_as`` lists every sample's class.
    """
    read = readings(source, x)
    written = readings(target, out.flatten(0, 1))
    samples = out.shape[1]
    rows = []
    for i, (what, r, paths) in enumerate(zip(inputs, read, outputs)):
        mine = written[i * samples:(i + 1) * samples]
        row = {"input": str(what), "outputs": [str(p) for p in paths], "read_as": r.name,
               "read_confidence": r.confidence, "written_as": mine[0].name, "written_confidence": mine[0].confidence}
        if samples > 1:
            row["samples_written_as"] = [w.name for w in mine]
            row["samples_written_confidence"] = [w.confidence for w in mine]
        rows.append(row)
    return rows
