"""The contact sheet of a translation (``translate --sheet``): one PNG, each input beside its outputs.

Every cell is drawn by its modality (:meth:`modgraph.modality.Modality.picture`) and labelled
with what that modality's recognizer reads in it; Pillow is imported only when a sheet is drawn.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from modgraph.errors import ConfigError, PluginError
from modgraph.modality import Modality
from modgraph.inference.readings import LOW_CONFIDENCE
from modgraph.storage.outputs import check_output, write_bytes_atomically

MAX_ROWS = 24  # inputs shown; the sheet says how many more there were
CELL_HEIGHT = 112  # a small picture is enlarged by whole multiples up to this (MNIST's 28 pixels, 4 times)
MAX_CELL = (360, 200)  # width, height: a larger picture is shrunk to fit
PAD = 8
TEXT_SIZE, LABEL_SIZE, TITLE_SIZE = 22, 12, 15
INK, DOUBT, GREY, RULE = (0, 0, 0), (190, 0, 0), (110, 110, 110), (215, 215, 215)


@dataclass
class Cell:
    """One picture of a sample and the lines under it; ``doubtful``: its reading is below LOW_CONFIDENCE."""

    picture: np.ndarray | str | None
    lines: list[str] = field(default_factory=list)
    doubtful: bool = False


def check_path(path: str | Path) -> Path:
    """``--sheet``'s value, refused before anything is translated when it cannot be a PNG file."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ConfigError(f"--sheet {path}: the contact sheet is a PNG; give a file name ending in .png")
    if path.is_dir():
        raise ConfigError(f"--sheet {path} is a folder; give a file name ending in .png")
    return check_output(path)


def picture_of(modality: Modality, x: torch.Tensor) -> np.ndarray | str | None:
    """``modality.picture(x)`` as a ``uint8`` (H, W, 3) array, a string, or None; a bad answer is a PluginError."""
    try:
        picture = modality.picture(x)
    except Exception as exc:  # noqa: BLE001 - a plugin's bug, reported as one line naming it
        raise PluginError(f"{modality.name} ({modality.distribution}): picture failed: "
                          f"{type(exc).__name__}: {exc}") from exc
    if picture is None or isinstance(picture, str):
        return picture
    if hasattr(picture, "convert"):  # a PIL image
        picture = np.asarray(picture.convert("RGB"))
    array = np.asarray(picture)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3 or 0 in array.shape:
        raise PluginError(f"{modality.name} ({modality.distribution}): picture gave {array.dtype} shaped "
                          f"{array.shape}; expected a PIL image, uint8 (H, W, 3) or (H, W), a string, or None")
    return array


class SheetRows:
    """The first ``limit`` translated inputs and their outputs, gathered batch by batch while translating."""

    def __init__(self, source: Modality, target: Modality, limit: int | None = None):
        self.source, self.target = source, target
        self.limit = MAX_ROWS if limit is None else limit
        self.samples: list[tuple[Path | str, torch.Tensor, torch.Tensor, dict]] = []
        self.left_out = 0

    def add(self, inputs: list[Path | str], x: torch.Tensor, out: torch.Tensor, rows: list[dict]) -> None:
        """Inputs (files, or literal texts), their raw features ``x`` (N, *shape), raw outputs ``out``
        (N, samples, *shape) and translate rows; only the first ``limit`` inputs are kept."""
        room = max(0, self.limit - len(self.samples))
        self.samples += [(what, xi.detach().cpu(), oi.detach().cpu(), row)
                         for what, xi, oi, row in list(zip(inputs, x, out, rows))[:room]]
        self.left_out += max(0, len(rows) - room)

    def cells(self) -> list[list[Cell]]:
        return [[input_cell(self.source, what, x, row), *output_cells(self.target, out, row)]
                for what, x, out, row in self.samples]

    def write(self, path: Path, route: list[str], written: list[str] = ()) -> dict:
        """Draw and write the sheet; ``{"path", "rows", "left_out"}``. It never replaces a ``written`` output."""
        if any(Path(w).resolve() == Path(path).resolve() for w in written):
            raise ConfigError(f"--sheet {path} is also the name of a translated output; give the sheet another name")

        image = render(title(route), self.cells(), self.left_out,
                       header=[f"input ({self.source.name})", *output_headers(self.target.name, self.samples)])
        write_bytes_atomically(path, png_bytes(image))
        return {"path": str(path), "rows": len(self.samples), "left_out": self.left_out}


def input_cell(modality: Modality, what: Path | str, x: torch.Tensor, row: dict) -> Cell:
    name = what.name if isinstance(what, Path) else f"typed {short(what, 36)!r}"  # a --text input
    lines = [short(name), reading_line(modality.name, row["read_as"], row["read_confidence"])]
    return Cell(picture_of(modality, x), lines, row["read_confidence"] < LOW_CONFIDENCE)


def output_cells(modality: Modality, out: torch.Tensor, row: dict) -> list[Cell]:
    names = row.get("samples_written_as", [row["written_as"]])
    confidences = row.get("samples_written_confidence", [row["written_confidence"]])
    paths = row["outputs"]
    return [Cell(picture_of(modality, sample), [short(Path(p).name), reading_line(modality.name, n, c)],
                 c < LOW_CONFIDENCE) for sample, p, n, c in zip(out, paths, names, confidences)]


def output_headers(target: str, samples: list) -> list[str]:
    count = max((len(out) for _, _, out, _ in samples), default=1)
    return [f"output ({target})"] if count == 1 else [f"sample {k + 1} ({target})" for k in range(count)]


def title(route: list[str]) -> str:
    line = f"{route[0]} -> {route[-1]}"
    if len(route) > 2:
        line += f" (through {' -> '.join(route[1:-1])})"
    return line + ": each input beside its translation; under each, what that modality's recognizer reads"


def reading_line(modality: str, name: str, confidence: float) -> str:
    mark = "  (unsure)" if confidence < LOW_CONFIDENCE else ""
    return f"{modality} reads {name!r} ({confidence:.0%}){mark}"


def short(text: str, limit: int = 44) -> str:
    """``text`` cut in the middle to at most ``limit`` characters."""
    return text if len(text) <= limit else f"{text[:limit // 2 - 1]}...{text[-(limit // 2 - 2):]}"


# -- drawing -----------------------------------------------------------------------------------------


def font(size: int):
    """Pillow's own scalable font at ``size`` pixels (Pillow >= 10.1 with FreeType), else its bitmap font."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # an older Pillow, or one built without FreeType
        return ImageFont.load_default()


def text_width(text: str, face) -> int:
    return int(np.ceil(face.getlength(text)))


def text_image(text: str):
    """A string drawn as text (text-like modalities), wrapped at word boundaries to fit a cell."""
    from PIL import Image, ImageDraw

    face, width = font(TEXT_SIZE), MAX_CELL[0]
    lines, line = [], ""
    for word in f"\u201c{text}\u201d".split(" "):
        candidate = f"{line} {word}".strip()
        if line and text_width(candidate, face) > width - 2 * PAD:
            lines.append(line)
            candidate = word
        line = candidate
    lines.append(line)
    height = TEXT_SIZE + 8
    image = Image.new("RGB", (min(width, max(text_width(li, face) for li in lines) + 2 * PAD),
                              len(lines) * height + PAD), "white")
    draw = ImageDraw.Draw(image)
    for i, li in enumerate(lines):
        draw.text((PAD, PAD // 2 + i * height), li, fill=INK, font=face)
    return image


def cell_image(picture: np.ndarray | str | None):
    """A cell's picture at sheet size: small pictures enlarged by whole multiples (nearest), large ones shrunk."""
    from PIL import Image

    if picture is None:
        return None
    if isinstance(picture, str):
        return text_image(picture)
    image = Image.fromarray(np.ascontiguousarray(picture), "RGB")
    factor = max(1, min(CELL_HEIGHT // image.height, MAX_CELL[0] // image.width))
    image = image.resize((image.width * factor, image.height * factor), Image.NEAREST)
    if image.width > MAX_CELL[0] or image.height > MAX_CELL[1]:
        image.thumbnail(MAX_CELL, Image.LANCZOS)
    return image


def render(heading: str, rows: list[list[Cell]], left_out: int, header: list[str]):
    """The sheet as a PIL image: a title, column headers, one row per input, and how many were left out."""
    from PIL import Image, ImageDraw

    label, bold = font(LABEL_SIZE), font(TITLE_SIZE)
    line_height = LABEL_SIZE + 4
    pictures = [[cell_image(c.picture) for c in row] for row in rows]
    widths = [text_width(h, label) for h in header]  # every row has a cell under each header
    for row, pics in zip(rows, pictures):
        for j, (cell, pic) in enumerate(zip(row, pics)):
            widths[j] = max([widths[j], pic.width if pic else 0] + [text_width(t, label) for t in cell.lines])
    widths = [w + 2 * PAD for w in widths]
    heights = [max([p.height if p else 0 for p in pics] + [0]) + max(len(c.lines) for c in row) * line_height
               + 2 * PAD for row, pics in zip(rows, pictures)]
    top = PAD + TITLE_SIZE + 8 + line_height + PAD
    footer = line_height + PAD if left_out else 0
    width = max(sum(widths), text_width(heading, bold) + 2 * PAD)
    sheet = Image.new("RGB", (width, top + sum(heights) + footer + PAD), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((PAD, PAD), heading, fill=INK, font=bold)
    x = 0
    for j, text in enumerate(header):
        draw.text((x + PAD, PAD + TITLE_SIZE + 8), text, fill=GREY, font=label)
        x += widths[j]
    y = top
    for row, pics, height in zip(rows, pictures, heights):
        draw.line([(0, y), (width, y)], fill=RULE)
        x = 0
        picture_height = max([p.height if p else 0 for p in pics] + [0])
        for cell, pic, cell_width in zip(row, pics, widths):
            if pic is not None:
                sheet.paste(pic, (x + PAD, y + PAD))
            for k, text in enumerate(cell.lines):
                colour = DOUBT if cell.doubtful and k == len(cell.lines) - 1 else INK
                draw.text((x + PAD, y + PAD + picture_height + 2 + k * line_height), text, fill=colour, font=label)
            x += cell_width
        y += height
    if left_out:
        draw.text((PAD, y + PAD // 2), f"... and {left_out} more input(s) not shown (the sheet shows the first "
                                      f"{len(rows)})", fill=GREY, font=label)
    return sheet


def png_bytes(image) -> bytes:
    import io

    encoded = io.BytesIO()
    image.save(encoded, format="PNG", optimize=True)
    return encoded.getvalue()
