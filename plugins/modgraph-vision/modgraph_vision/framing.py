"""Putting a user's grayscale picture in the frame a dataset's images were made in.

MNIST: ink cropped, scaled into a 20x20 box (aspect kept, antialiased), centred by mass in
28x28. Fashion-MNIST: product trimmed, longest side scaled to 28, centred. Arrays in [0, 1].
"""

from __future__ import annotations

import numpy as np
from PIL import Image

# Measured on the MNIST test split (threshold 0.5): stroke width 2 * area / boundary pixels
# has median 2.9 px (5-95%: 2.1-4.4), the centre of mass sits at (14.0, 14.0).
MNIST_BOX = 20
# Strokes drawn thinner or thicker are brought to the nearer end. The upper end was chosen on
# the tuning fonts of benchmarks/real_inputs.py (docs/tuning.md); the held-out fonts were not looked at.
MNIST_STROKE = (2.4, 3.6)
_BACKGROUND_SIDE = 128  # the background surface is fitted on a copy at most this large


def light_background(gray: np.ndarray) -> bool:
    """Whether the picture is dark on light: the median of its outer two-pixel ring is above 0.5."""
    ring = np.concatenate([gray[:2].ravel(), gray[-2:].ravel(), gray[:, :2].ravel(), gray[:, -2:].ravel()])
    return float(np.median(ring)) > 0.5


def ink_map(gray: np.ndarray) -> np.ndarray:
    """Light-on-dark ``gray`` minus a smooth estimate of its background, clipped at 0.

    The background is a quadratic surface fitted to the pixels that are not ink (found
    at Otsu's threshold, twice: once on the picture, once with the first fit taken away),
    so a grey page and uneven lighting are taken away, and a large blob of ink is not.
    """
    height, width = gray.shape
    scale = min(1.0, _BACKGROUND_SIDE / max(height, width))
    small = _resize(gray, (max(1, round(width * scale)), max(1, round(height * scale))), Image.Resampling.BOX)
    rows, cols = np.mgrid[0:small.shape[0], 0:small.shape[1]]
    v, u = rows.ravel() / max(small.shape[0] - 1, 1) - 0.5, cols.ravel() / max(small.shape[1] - 1, 1) - 0.5
    terms = np.stack([np.ones_like(u), u, v, u * u, u * v, v * v], axis=1)
    values, background = small.ravel(), np.zeros(small.size)
    for _ in range(2):
        rest = values - background
        paper = rest <= otsu_threshold(np.clip(rest - rest.min(), 0.0, 1.0)) + rest.min()
        if paper.sum() < terms.shape[1]:
            break
        coefficients, *_ = np.linalg.lstsq(terms[paper], values[paper], rcond=None)
        background = terms @ coefficients
    surface = background.reshape(small.shape).astype(np.float32)
    if surface.shape != gray.shape:
        surface = _resize(surface, (width, height), Image.Resampling.BILINEAR)
    return np.clip(gray - surface, 0.0, None)


def otsu_threshold(values: np.ndarray) -> float:
    """The level that best splits ``values`` (in [0, 1]) into two classes (Otsu, 256 bins)."""
    hist, edges = np.histogram(values, bins=256, range=(0.0, 1.0))
    weight = np.cumsum(hist).astype(np.float64)
    mass = np.cumsum(hist * (edges[:-1] + edges[1:]) / 2)
    total, total_mass = weight[-1], mass[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (total_mass * weight - total * mass) ** 2 / (weight * (total - weight))
    between = np.nan_to_num(between[:-1], nan=0.0, posinf=0.0)
    return float(edges[int(np.argmax(between)) + 1]) if between.size else 0.5


def mnist_frame(ink: np.ndarray) -> tuple[np.ndarray, list[str]] | None:
    """``ink`` (light strokes on 0) framed as MNIST's digits are, plus notes; None when it holds no ink."""
    top = float(ink.max())
    if top < 0.05:
        return None
    ink = ink / top
    threshold = max(0.1, otsu_threshold(ink))
    mask = ink > threshold
    r0, r1, c0, c1 = _mass_box(mask)
    mask = mask[r0:r1, c0:c1]
    core = float(np.median(ink[r0:r1, c0:c1][mask]))
    low = threshold / 2
    levels = np.clip((ink[r0:r1, c0:c1] - low) / max(core - low, 1e-3), 0.0, 1.0)
    notes = []
    scale = MNIST_BOX / max(mask.shape)
    levels, note = _match_stroke(levels, mask, scale)
    if note:
        notes.append(note)
        r0, r1, c0, c1 = _mass_box(levels > 0.5)  # the ink grew or shrank: crop again
        levels = levels[r0:r1, c0:c1]
    height, width = levels.shape
    scale = MNIST_BOX / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    digit = np.clip(_resize(levels, size, Image.Resampling.LANCZOS), 0.0, 1.0)
    return _paste_by_mass(digit, 28), notes


def fashion_frame(gray: np.ndarray, background: float) -> np.ndarray | None:
    """A light-on-dark product picture trimmed, its longest side scaled to 28, centred in 28x28."""
    item = np.clip((gray - background) / max(1.0 - background, 1e-3), 0.0, 1.0)
    mask = item > 0.1
    if not mask.any():
        return None
    r0, r1, c0, c1 = _mass_box(mask)
    item = item[r0:r1, c0:c1]
    scale = 28 / max(item.shape)
    height, width = item.shape
    size = (max(1, min(28, round(width * scale))), max(1, min(28, round(height * scale))))
    small = np.clip(_resize(item, size, Image.Resampling.LANCZOS), 0.0, 1.0)
    frame = np.zeros((28, 28), dtype=np.float32)
    top, left = (28 - size[1]) // 2, (28 - size[0]) // 2
    frame[top:top + size[1], left:left + size[0]] = small
    return frame


def looks_like_mnist(gray: np.ndarray) -> bool:
    """Whether a 28x28 light-on-dark picture is already framed as MNIST's (dark border, ink
    within about 20x20, centred by mass): such a picture is used as it is."""
    if gray.shape != (28, 28) or gray[[0, -1]].max() > 0.3 or gray[:, [0, -1]].max() > 0.3 or gray.max() < 0.5:
        return False
    r0, r1, c0, c1 = _mass_box(gray > 0.5)
    if max(r1 - r0, c1 - c0) > MNIST_BOX + 2:
        return False
    rows, cols = np.mgrid[0:28, 0:28]
    mass = gray.sum()
    return abs((gray * rows).sum() / mass - 14) <= 1.5 and abs((gray * cols).sum() / mass - 14) <= 1.5


def _match_stroke(levels: np.ndarray, mask: np.ndarray, scale: float) -> tuple[np.ndarray, str | None]:
    """Thicken (or thin) strokes so that at ``scale`` their width falls in :data:`MNIST_STROKE`
    (a grey dilation or erosion with a square window)."""
    ring = np.pad(mask, 1)  # ink on the crop's edge has a background neighbour outside it
    inner = ring[1:-1, 1:-1] & ring[:-2, 1:-1] & ring[2:, 1:-1] & ring[1:-1, :-2] & ring[1:-1, 2:]
    boundary = int((mask & ~inner).sum())
    width = 2 * int(mask.sum()) / max(boundary, 1) * scale
    low, high = MNIST_STROKE
    if low <= width <= high:
        return levels, None
    goal = low if width < low else high
    window = int(round(abs(goal - width) / scale)) | 1  # a square window of this side grows a stroke by side - 1
    if window < 3:
        return levels, None
    padded = np.pad(levels, window // 2 + 1)
    if width < low:
        return _sliding(padded, window, np.max), "thickened thin strokes"
    return _sliding(levels, window, np.min), "thinned thick strokes"


def _paste_by_mass(digit: np.ndarray, side: int) -> np.ndarray:
    """``digit`` pasted into a ``side`` x ``side`` black frame with its centre of mass at the centre."""
    height, width = digit.shape
    rows, cols = np.mgrid[0:height, 0:width]
    mass = float(digit.sum()) or 1.0
    centre = side / 2
    top = int(np.clip(round(centre - (digit * rows).sum() / mass), 0, side - height))
    left = int(np.clip(round(centre - (digit * cols).sum() / mass), 0, side - width))
    frame = np.zeros((side, side), dtype=np.float32)
    frame[top:top + height, left:left + width] = digit[:side, :side]
    return frame


def _mass_box(mask: np.ndarray, trim: float = 0.002) -> tuple[int, int, int, int]:
    """Rows and columns (start, stop) holding all but ``trim`` of ``mask`` on each side: a speck of
    compression noise far from the ink does not stretch the box."""
    def span(counts: np.ndarray) -> tuple[int, int]:
        cumulative = np.cumsum(counts) / max(counts.sum(), 1)
        start = int(np.searchsorted(cumulative, trim, side="right"))
        stop = int(np.searchsorted(cumulative, 1 - trim, side="left")) + 1
        return start, max(stop, start + 1)

    return (*span(mask.sum(1)), *span(mask.sum(0)))


def _sliding(a: np.ndarray, window: int, reduce) -> np.ndarray:
    """``reduce`` over a ``window`` x ``window`` square around each pixel (edges repeated), separably."""
    half = window // 2
    for axis in (0, 1):
        padded = np.pad(a, [(half, half) if i == axis else (0, 0) for i in (0, 1)], mode="edge")
        a = reduce(np.lib.stride_tricks.sliding_window_view(padded, window, axis=axis), axis=-1)
    return a.astype(np.float32)


def _resize(a: np.ndarray, size: tuple[int, int], resample) -> np.ndarray:
    """A float image resized to ``size`` (width, height) by Pillow."""
    return np.asarray(Image.fromarray(a.astype(np.float32), mode="F").resize(size, resample), dtype=np.float32)
