"""Image file I/O shared by the image modalities.

Reads any image Pillow understands into MNIST-style grayscale features or RGB features
(values in [0, 1]), decodes dataset images in batches, and writes 8-bit PNGs.
"""

from __future__ import annotations

import io
import os
import stat
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, ImageStat

from modgraph import InputFileError, write_bytes_atomically
from modgraph_vision import framing

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm", ".tif", ".tiff", ".webp")

# The image modalities read pictures of at most 64 x 64: a 12-megapixel phone photo or a 4096 x 4096
# scan passes (16,777,216 pixels); a header claiming more is refused before anything is decoded (issue 29).
MAX_PIXELS = 4096 * 4096

_MAX_SQUARE_SIDE = 4096  # longer images are shrunk before being padded to a square (16 Mpixel at most)
_MAX_FRAMING_SIDE = 1024  # longer images are shrunk before they are framed like MNIST's or Fashion-MNIST's
_PREMULTIPLIED = {"La": "LA", "RGBa": "RGBA"}  # alpha-premultiplied modes the converters below do not take
_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


def read_grayscale_image(path: Path, size: int = 28) -> tuple[torch.Tensor, list[str]]:
    """Read ``path`` as a (1, size, size) float32 tensor in [0, 1], plus conversion notes.

    The plain reading the mnist modalities used before they framed images as their
    datasets were made (benchmarks/real_inputs.py compares the two). Colour is converted to grayscale, transparency flattened, a dark-on-light image
    inverted (MNIST-style data is light on dark), and any other size padded to a square
    with the background level and resized.
    """
    image, notes = _open_image(path)
    gray = _to_grayscale(image, notes)
    if _border_mean(gray) > 0.5:
        gray = ImageOps.invert(gray)
        notes.append("inverted a dark-on-light image")
    if gray.size != (size, size):
        width, height = gray.size
        background = round(_border_mean(gray) * 255)
        if max(width, height) > _MAX_SQUARE_SIDE:
            # a 1 x 60,000,000 strip would make a square of 3.6e15 pixels: shrink it first
            scale = _MAX_SQUARE_SIDE / max(width, height)
            gray = gray.resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.Resampling.BOX)
        w, h = gray.size
        side = max(w, h)
        # Pad with the background level, not black, so a grey photo gets no hard edges.
        square = Image.new("L", (side, side), color=background)
        square.paste(gray, ((side - w) // 2, (side - h) // 2))
        gray = square.resize((size, size), Image.Resampling.LANCZOS)
        notes.append(f"resized {width}x{height} to {size}x{size}")
    return _to_tensor(gray), notes


def read_digit_image(path: Path) -> tuple[torch.Tensor, list[str]]:
    """Read ``path`` as a (1, 28, 28) digit framed as MNIST's were made, plus notes.

    A light background is inverted (polarity from the border); a smooth background
    estimate is taken away (grey paper, uneven lighting) and the ink cropped at Otsu's
    threshold; strokes much thinner or thicker than MNIST's pen are brought to its width;
    the ink is scaled into a 20x20 box (aspect kept, antialiased) and pasted in 28x28 with
    its centre of mass at the centre. A picture already framed so (a 28x28 MNIST digit
    saved as PNG, a translation's output) is used as it is.
    """
    gray, notes = _read_gray_array(path)
    inverted = framing.light_background(gray)
    if inverted:
        gray = 1.0 - gray
        notes.append("light background inverted")
    if framing.looks_like_mnist(gray):
        return torch.from_numpy(gray.copy()).unsqueeze(0), notes
    framed = framing.mnist_frame(framing.ink_map(gray))
    if framed is None:
        notes.append("found no ink: read as a blank image")
        return torch.zeros(1, 28, 28), notes
    digit, frame_notes = framed
    height, width = gray.shape
    notes += frame_notes + [f"cropped the ink of the {width}x{height} image and centred it like MNIST "
                            "(20x20 box in 28x28, by centre of mass)"]
    return torch.from_numpy(digit).unsqueeze(0), notes


def read_product_image(path: Path) -> tuple[torch.Tensor, list[str]]:
    """Read ``path`` as a (1, 28, 28) item framed as Fashion-MNIST's were made, plus notes.

    Fashion-MNIST's product photos were trimmed to the item, scaled so the longest side is
    28 and centred, then negated: a light background is inverted, the background level
    taken away, the item trimmed, scaled and centred alike. A 28x28 light-on-dark picture
    is used as it is.
    """
    gray, notes = _read_gray_array(path)
    if framing.light_background(gray):
        gray = 1.0 - gray
        notes.append("light background inverted")
    if gray.shape == (28, 28):
        return torch.from_numpy(gray.copy()).unsqueeze(0), notes
    ring = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    framed = framing.fashion_frame(gray, float(np.median(ring)))
    if framed is None:
        notes.append("found nothing on the background: read as a blank image")
        return torch.zeros(1, 28, 28), notes
    height, width = gray.shape
    notes.append(f"trimmed the {width}x{height} image to the item, scaled its longest side to 28 and centred it "
                 "like Fashion-MNIST")
    return torch.from_numpy(framed).unsqueeze(0), notes


def _read_gray_array(path: Path) -> tuple[np.ndarray, list[str]]:
    """``path`` as a (height, width) float32 array in [0, 1], plus conversion notes.

    A picture longer than :data:`_MAX_FRAMING_SIDE` is first shrunk (area average) to fit: the
    framing's stroke matching works in windows that grow with the picture, and a 28x28 result
    needs no more (a 1 x 16,000,000 strip would otherwise ask for terabytes).
    """
    image, notes = _open_image(path)
    gray = _to_grayscale(image, notes)
    width, height = gray.size
    if max(width, height) > _MAX_FRAMING_SIDE:
        scale = _MAX_FRAMING_SIDE / max(width, height)
        gray = gray.resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.Resampling.BOX)
        notes.append(f"shrunk {width}x{height} to {gray.width}x{gray.height} before framing")
    return np.asarray(gray, dtype=np.float32) / 255.0, notes


def grayscale_image(x: torch.Tensor) -> Image.Image:
    """A (1, H, W) or (H, W) tensor in [0, 1] as an 8-bit grayscale PIL image (NaN as 0, clamped)."""
    x = x.detach().to("cpu", torch.float32)
    if x.dim() == 3 and x.shape[0] == 1:
        x = x[0]
    if x.dim() != 2:
        raise ValueError(f"expected a (1, H, W) grayscale image tensor, got shape {tuple(x.shape)}")
    height, width = x.shape
    return Image.frombytes("L", (width, height), _to_bytes(x))


def write_grayscale_png(x: torch.Tensor, path: Path, scale: int = 1) -> list[Path]:
    """Write a (1, H, W) or (H, W) tensor in [0, 1] as an 8-bit grayscale PNG at ``path``.

    Values are clamped to [0, 1]; ``scale`` enlarges the picture that many times, nearest
    neighbour. The file appears complete or not at all: it is written next to ``path`` and
    renamed into place.
    """
    return _save_png(_enlarged(grayscale_image(x), scale), Path(path))


def read_rgb_image(path: Path, size: int) -> tuple[torch.Tensor, list[str]]:
    """Read ``path`` as a (3, size, size) float32 tensor in [0, 1], plus conversion notes.

    Grayscale, palette and other modes are converted to RGB, transparency is flattened
    onto white, and any other size is resized (bilinear, as :func:`load_rgb_images`
    does for dataset images, so a user's file is prepared like the training data).
    """
    image, notes = _open_image(path)
    rgb = _to_rgb(image, notes)
    if rgb.size != (size, size):
        width, height = rgb.size
        rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
        notes.append(f"resized {width}x{height} to {size}x{size}")
    return _to_tensor(rgb), notes


def load_rgb_images(paths: list[Path], size: int) -> torch.Tensor:
    """Decode dataset images into one (N, 3, size, size) float32 tensor in [0, 1].

    Each file is converted to RGB and resized (bilinear) to ``size`` x ``size``; the
    pixels are gathered in one byte buffer and converted to a tensor once. Raises
    :class:`InputFileError` naming the first file that is not a readable image.
    """
    plane = size * size * 3
    buffer = bytearray(len(paths) * plane)
    view = memoryview(buffer)
    for i, path in enumerate(paths):
        try:
            with opened_image(path) as opened:
                image = opened.convert("RGB")
        except InputFileError:
            raise
        except Exception as exc:  # noqa: BLE001 - as in _open_image
            raise InputFileError(f"{path}: not a readable image ({' '.join(str(exc).split()) or type(exc).__name__})") \
                from None
        if image.size != (size, size):
            image = image.resize((size, size), Image.Resampling.BILINEAR)
        view[i * plane:(i + 1) * plane] = image.tobytes()
    pixels = torch.frombuffer(buffer, dtype=torch.uint8) if buffer else torch.zeros(0, dtype=torch.uint8)
    return pixels.view(len(paths), size, size, 3).permute(0, 3, 1, 2).contiguous().to(torch.float32).div_(255.0)


def rgb_image(x: torch.Tensor) -> Image.Image:
    """A (3, H, W) tensor in [0, 1] as an 8-bit RGB PIL image (NaN as 0, clamped)."""
    x = x.detach().to("cpu", torch.float32)
    if x.dim() != 3 or x.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) RGB image tensor, got shape {tuple(x.shape)}")
    _, height, width = x.shape
    return Image.frombytes("RGB", (width, height), _to_bytes(x.permute(1, 2, 0)))


def write_rgb_png(x: torch.Tensor, path: Path, scale: int = 1) -> list[Path]:
    """Write a (3, H, W) tensor in [0, 1] as an 8-bit RGB PNG at ``path`` (clamped, ``scale`` times larger, atomic)."""
    return _save_png(_enlarged(rgb_image(x), scale), Path(path))


def _enlarged(image: Image.Image, scale: int) -> Image.Image:
    """``image`` ``scale`` times larger, each pixel a ``scale`` x ``scale`` block (``translate --scale``)."""
    if scale == 1:
        return image
    return image.resize((image.width * scale, image.height * scale), Image.NEAREST)


def check_size(path: Path, opened: Image.Image) -> None:
    """Refuse an opened (not yet decoded) image whose header claims more than :data:`MAX_PIXELS`.

    Every format Pillow opens states its size in the header it reads on ``Image.open``; Pillow
    itself only warns below twice its own, far larger limit.
    """
    width, height = opened.size
    if width * height > MAX_PIXELS:
        raise InputFileError(f"{path}: {width}x{height} pixels is too large an image (at most "
                             f"{MAX_PIXELS / 1e6:.1f} million pixels); scale it down first")


@contextmanager
def opened_image(path: Path) -> Iterator[Image.Image]:
    """``path`` opened by Pillow (its header read, nothing decoded) once it is known to be a regular
    file whose header claims at most :data:`MAX_PIXELS` (:func:`check_size`).

    The file is opened without waiting (a FIFO is refused, never read); Pillow's bomb warnings and
    decoders' metadata warnings are silenced: the cap is ours and they help no one.
    """
    with os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise InputFileError(f"{path}: not a regular file (expected an image)")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(fh) as opened:
                check_size(path, opened)
                yield opened


def _open_image(path: Path) -> tuple[Image.Image, list[str]]:
    """Open and decode ``path`` (first frame, EXIF orientation applied), or InputFileError."""
    path = Path(path)
    accepted = ", ".join(s.lstrip(".") for s in IMAGE_SUFFIXES)
    if not path.is_file():
        problem = "not a file" if path.exists() else "no such file"
        raise InputFileError(f"{path}: {problem} (expected an image: {accepted})")
    try:
        with opened_image(path) as opened:
            frames = getattr(opened, "n_frames", 1)
            opened.load()
            image = ImageOps.exif_transpose(opened)
            if image.mode in _PREMULTIPLIED:
                image = image.convert(_PREMULTIPLIED[image.mode])
    except InputFileError:
        raise
    except Exception as exc:  # noqa: BLE001 - on damaged files Pillow raises TypeError, KeyError, struct.error...
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise InputFileError(f"{path}: not a readable image ({reason}); accepted image types: {accepted}") from None
    notes = [f"used the first of {frames} frames"] if frames > 1 else []
    return image, notes


def _to_bytes(x: torch.Tensor) -> bytes:
    """Channel-last float pixels in [0, 1] (NaN as 0, clamped) as 8-bit bytes."""
    return torch.nan_to_num(x, nan=0.0).clamp(0.0, 1.0).mul(255).round().to(torch.uint8).contiguous().numpy().tobytes()


def _save_png(image: Image.Image, path: Path) -> list[Path]:
    """Save ``image`` as PNG so that ``path`` appears complete or not at all."""
    encoded = io.BytesIO()
    image.save(encoded, format="PNG")
    return [_write_atomically(path, encoded.getvalue())]


def _write_atomically(path: Path, data: bytes) -> Path:
    """The core's one atomic write (``modgraph.write_bytes_atomically``)."""
    return write_bytes_atomically(path, data)


def _to_rgb(image: Image.Image, notes: list[str]) -> Image.Image:
    """An "RGB" image from any mode, noting the conversion and any flattened transparency."""
    mode = image.mode
    if mode != "RGB":
        notes.append(f"converted {mode} to RGB")
    if "A" in image.getbands() or "transparency" in image.info:
        # Signs cut out of a page or a drawing program sit on white more often than not.
        rgba = image.convert("RGBA")
        notes.append("flattened transparency onto white")
        return Image.alpha_composite(Image.new("RGBA", image.size, (255, 255, 255, 255)), rgba).convert("RGB")
    if mode in _GRAY_MODES:
        return _to_grayscale(image, []).convert("RGB")  # scales 16-bit and float data like the grayscale path
    return image.convert("RGB")


def _to_grayscale(image: Image.Image, notes: list[str]) -> Image.Image:
    """An "L" image from any mode, noting colour and transparency conversions."""
    mode = image.mode
    if mode not in _GRAY_MODES and not _is_gray_palette(image):
        notes.append(f"converted {mode} to grayscale")
    has_alpha = "A" in image.getbands() or "transparency" in image.info
    if has_alpha:
        rgba = image.convert("RGBA")
        luminance, alpha = rgba.convert("L"), rgba.getchannel("A")
        opaque = alpha.point(lambda a: 255 if a > 127 else 0)
        ink = ImageStat.Stat(luminance, mask=opaque).mean[0] if opaque.getbbox() else 255.0
        # Flatten onto whichever of black or white the visible content stands out from.
        background = 255 if ink < 128 else 0
        notes.append(f"flattened transparency onto {'white' if background else 'black'}")
        return Image.composite(luminance, Image.new("L", image.size, background), alpha)
    if mode.startswith("I;16"):
        image, mode = image.convert("I"), "I"
    if mode == "I":
        high = image.getextrema()[1]
        # 16-bit data scales down to 8 bits; 8-bit data stored in an int image is kept.
        return (image.point(lambda v: v * (1 / 257)) if high > 255 else image).convert("L")
    if mode == "F":
        # Float images are taken to hold values in [0, 1].
        return image.point(lambda v: v * 255).convert("L")
    return image.convert("L")


def _is_gray_palette(image: Image.Image) -> bool:
    """Whether a palette image only uses grey entries (as a grayscale GIF does)."""
    palette = image.getpalette() if image.mode == "P" else None
    return bool(palette) and all(palette[i] == palette[i + 1] == palette[i + 2] for i in range(0, len(palette), 3))


def _border_mean(gray: Image.Image) -> float:
    """Mean of the outermost ring of pixels, in [0, 1]: the image's background level."""
    width, height = gray.size
    edges = [gray.crop((0, 0, width, 1)), gray.crop((0, height - 1, width, height)),
             gray.crop((0, 0, 1, height)), gray.crop((width - 1, 0, width, height))]
    total = sum(ImageStat.Stat(e).sum[0] for e in edges)
    count = sum(e.size[0] * e.size[1] for e in edges)
    return total / count / 255.0


def _to_tensor(image: Image.Image) -> torch.Tensor:
    """(bands, height, width) float32 in [0, 1] from an 8-bit image."""
    width, height = image.size
    pixels = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
    pixels = pixels.view(height, width, len(image.getbands())).permute(2, 0, 1).contiguous()
    return pixels.to(torch.float32).div_(255.0)
