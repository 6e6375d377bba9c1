"""Tiny image files whose headers claim a size their data does not hold (pixel bombs), one per format.

Each holds a valid header of its format stating ``width`` x ``height`` and almost no pixel data:
a reader that trusts the header allocates ``width * height`` pixels (and more) before it finds out.
"""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image


def png(width: int, height: int) -> bytes:
    """8-bit grey PNG; 1 x 64,000,000 is 65 bytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00")) + chunk(b"IEND", b"")


def gif(width: int, height: int) -> bytes:
    """GIF89a with a one-frame image descriptor of the full size (sides up to 65,535)."""
    return (b"GIF89a" + struct.pack("<HHBBB", width, height, 0, 0, 0)
            + b"," + struct.pack("<HHHHB", 0, 0, width, height, 0) + b"\x08\x02\x4c\x01\x00;")


def bmp(width: int, height: int) -> bytes:
    """8-bit palette BMP (BITMAPINFOHEADER)."""
    header = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 8, 0, 0, 2835, 2835, 0, 0)
    offset = 14 + len(header) + 1024
    return b"BM" + struct.pack("<IHHI", offset + 16, 0, 0, offset) + header + b"\x00" * 1024 + b"\x00" * 16


def tiff(width: int, height: int) -> bytes:
    """Little-endian, uncompressed 8-bit grey TIFF with one strip of 16 bytes."""
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
               (273, 4, 1, 8 + 2 + 12 * 9 + 4), (277, 3, 1, 1), (278, 4, 1, height), (279, 4, 1, 16)]
    ifd = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHII", *e) for e in entries) + b"\x00" * 4
    return b"II*\x00" + struct.pack("<I", 8) + ifd + b"\x00" * 16


def jpeg(width: int, height: int) -> bytes:
    """A real 8 x 8 JPEG whose frame header (SOF0) is rewritten to claim ``width`` x ``height`` (up to 65,535)."""
    buffer = io.BytesIO()
    Image.new("L", (8, 8)).save(buffer, format="JPEG")
    data = bytearray(buffer.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


FORMATS = {"PNG": png, "GIF": gif, "BMP": bmp, "TIFF": tiff, "JPEG": jpeg}
