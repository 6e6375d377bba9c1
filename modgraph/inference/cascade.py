"""One input translated along its route with every stop kept: the decode at each modality in between,
the files written for it and each recognizer's top classes (what ``modgraph serve`` shows).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from modgraph.inference.loaded_node import LoadedNode
from modgraph.inference.translation import anchor_notes, translate_normalized, write_outputs

TOP_CLASSES = 5


@dataclass
class Stop:
    """A modality on the route: the files that show its sample(s) and what its recognizer reads there.

    ``probabilities`` holds one ``{class name: probability}`` (the top classes) per sample.
    """

    modality: str
    files: list[Path]
    probabilities: list[dict[str, float]]


@dataclass
class Cascade:
    """The route, the input's reading, each modality in between, and the target's output."""

    path: list[str]
    source: Stop
    between: list[Stop]
    target: Stop
    notes: list[str] = field(default_factory=list)


@torch.no_grad()
def top_classes(node: LoadedNode, x: torch.Tensor, k: int = TOP_CLASSES) -> list[dict[str, float]]:
    """``node``'s recognizer on normalised rows ``x``: per row, its ``k`` likeliest classes and their softmax."""
    recognizer = node.recognizer.eval()
    device = next(recognizer.parameters()).device
    probabilities = torch.softmax(recognizer(x.to(device)).float(), dim=1).cpu()
    names = node.modality.class_names
    top = torch.topk(probabilities, min(k, probabilities.shape[1]), dim=1)
    return [{names[int(i)]: round(float(p), 4) for p, i in zip(values, indices)}
            for values, indices in zip(top.values, top.indices)]


def _write(node: LoadedNode, normalized: torch.Tensor, folder: Path, stem: str, scale: int) -> list[Path]:
    raw = node.modality.denormalize(normalized, node.stats)
    suffix = node.modality.output_suffix
    names = [f"{stem}{f'_{k + 1}' if len(raw) > 1 else ''}{suffix}" for k in range(len(raw))]
    return [Path(p) for p in write_outputs(node.modality, [(r, folder / n) for r, n in zip(raw, names)], scale)]


def translate_cascade(mg, path: list[str], x: torch.Tensor, folder: Path, samples: int = 1, anchor: int = 0,
                      scale: int = 1, stem: str = "output") -> Cascade:
    """Translate one raw sample ``x`` of ``path[0]`` (its ``input_shape``) along ``path``, once.

    Anchored and sampled as :func:`~modgraph.inference.translation.translate_files` does; the
    target's files are written to ``folder`` as ``{stem}{suffix}`` (``{stem}_{k}`` with several
    samples), each modality in between as ``{i}-{name}{suffix}``. The readings shown are of the
    very tensors written.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    src, dst = mg.node(path[0]), mg.node(path[-1])
    xn = src.modality.normalize(x.unsqueeze(0), src.stats)
    stops: list[torch.Tensor] = []
    out = translate_normalized(mg, path, xn, samples, anchor, stops=stops)[0]
    between = []
    for i, (name, decoded) in enumerate(zip(path[1:-1], stops), start=1):
        node = mg.node(name)
        between.append(Stop(name, _write(node, decoded, folder, f"{i}-{name}", scale), top_classes(node, decoded)))
    return Cascade(path=path, source=Stop(path[0], [], top_classes(src, xn)), between=between,
                   target=Stop(path[-1], _write(dst, out, folder, stem, scale), top_classes(dst, out)),
                   notes=anchor_notes(src, anchor, len(path)))
