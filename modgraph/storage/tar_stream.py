"""An untrusted tar (plain, gzip, bzip2 or xz) read once, front to back, within caps checked as it is read.

``import`` reads archives made by anyone. The member count, each extended (PAX or GNU long-name)
header, the unpacked total and the compression ratio are bounded while the stream is read, so a
header claiming gigabytes or a gzip bomb is refused after a few megabytes, before anything is written.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import tarfile
import zlib
from collections.abc import Iterator
from pathlib import Path

from modgraph.errors import ArchiveError
from modgraph.storage.safe_io import open_regular

MAX_MEMBERS = 10_000  # files (40 modalities linked both ways are 1,600)
MAX_EXTENDED_HEADER = 64 << 10  # bytes of one PAX or GNU long-name header (modgraph's own are under 100)
MAX_UNPACKED = 8 << 30  # bytes of the whole unpacked tar
MAX_RATIO = 100  # unpacked bytes per compressed byte (safetensors weights compress to about 1.1)
RATIO_GRACE = 16 << 20  # unpacked bytes before the ratio is enforced (small files compress well)
_EXTENDED = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE, tarfile.GNUTYPE_LONGNAME,
             tarfile.GNUTYPE_LONGLINK)
_ERRORS = (tarfile.TarError, OSError, EOFError, zlib.error, lzma.LZMAError)


class _BoundedInfo(tarfile.TarInfo):
    """A tar header that refuses an oversized extended header before tarfile reads it into memory."""

    def _proc_member(self, tar):
        if self.type in _EXTENDED and self.size > MAX_EXTENDED_HEADER:
            raise ArchiveError(f"{tar.name or 'the archive'} has a {self.size:,}-byte extended (PAX or GNU long-name) "
                               f"header, more than the {MAX_EXTENDED_HEADER:,} allowed; refusing to import")
        if self.type == tarfile.GNUTYPE_SPARSE:
            raise ArchiveError(f"archive member {self.name[:200]!r} is a sparse file; refusing to import")
        return super()._proc_member(tar)


class _Unpacked(io.RawIOBase):
    """The unpacked bytes of ``packed`` (a file), refused as soon as they pass MAX_UNPACKED or MAX_RATIO."""

    def __init__(self, raw, unpacked, archive: Path):
        self.raw, self.unpacked, self.archive, self.total = raw, unpacked, archive, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = self.unpacked.readinto(buffer)
        self.total += n
        if self.total > MAX_UNPACKED:
            raise ArchiveError(f"{self.archive} unpacks to more than {MAX_UNPACKED:,} bytes; refusing to import")
        if self.total > RATIO_GRACE and self.total > MAX_RATIO * max(1, self.raw.tell()):
            raise ArchiveError(f"{self.archive} unpacks to more than {MAX_RATIO} times its compressed size (a "
                               f"compression bomb?); refusing to import")
        return n


class _Member:
    """A member's bytes; damage found while reading them is one :class:`ArchiveError` line too."""

    def __init__(self, reader, archive: Path):
        self.reader, self.archive = reader, archive

    def read(self, size: int) -> bytes:
        try:
            return self.reader.read(size)
        except _ERRORS as exc:
            raise _damaged(self.archive, exc) from None


def _damaged(archive: Path, exc: BaseException) -> ArchiveError:
    first = " ".join(str(exc).split())[:200] or type(exc).__name__
    return ArchiveError(f"{archive} is not a readable tar archive, or is damaged or truncated ({first}); "
                        f"make one with: modgraph export FILE")


def _unpacked(raw, archive: Path):
    magic = raw.read(6)
    raw.seek(0)
    if magic.startswith(b"\x1f\x8b"):
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if magic.startswith(b"BZh"):
        return bz2.BZ2File(raw)
    if magic.startswith(b"\xfd7zXZ\x00"):
        return lzma.LZMAFile(raw)
    return raw


def stream_members(archive: Path) -> Iterator[tuple[tarfile.TarInfo, _Member | None]]:
    """Each member of ``archive`` in order with a reader of its bytes (valid until the next member).

    At most MAX_MEMBERS; every error, damage included, is one :class:`ArchiveError` line.
    """
    archive = Path(archive)
    try:
        raw = open_regular(archive, "archive", ArchiveError, follow=True)
    except FileNotFoundError:
        raise ArchiveError(f"archive {archive} does not exist; make one with: modgraph export FILE") from None
    with raw:
        try:
            stream = _Unpacked(raw, _unpacked(raw, archive), archive)
            with tarfile.open(str(archive), "r|", io.BufferedReader(stream, 1 << 16), tarinfo=_BoundedInfo) as tar:
                for count, info in enumerate(tar, 1):
                    if count > MAX_MEMBERS:
                        raise ArchiveError(f"{archive} has more than {MAX_MEMBERS:,} members; refusing to import")
                    yield info, (_Member(tar.extractfile(info), archive) if info.isreg() else None)
        except _ERRORS as exc:
            raise _damaged(archive, exc) from None
        except RecursionError:  # a chain of extended headers, each within its cap
            raise ArchiveError(f"{archive} chains too many extended headers; refusing to import") from None
