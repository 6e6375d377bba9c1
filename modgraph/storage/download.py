"""``modgraph import URL``: an archive fetched over http(s) into a temporary file, with progress.

The file is imported as a local one would be (every hash checked before anything is written)
and removed afterwards, whether the import succeeded or not.
"""

from __future__ import annotations

import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from modgraph.errors import ArchiveError
from modgraph.runtime.progress import Progress, phase

MAX_DOWNLOAD_BYTES = 64 << 30  # far above any exported graph; a server that never stops is cut off here
_CHUNK = 1 << 20
TIMEOUT_SECONDS = 60


def is_url(text: str) -> bool:
    """Whether ``text`` names an http(s) address rather than a file."""
    return str(text).lower().startswith(("http://", "https://"))


def _name(url: str) -> str:
    """The archive's file name from the address (its suffix says whether it is gzipped)."""
    name = PurePosixPath(urlsplit(url).path).name
    return name if name.endswith((".tar", ".tar.gz", ".tgz")) else "graph.tar"


def _copy(response, sink, url: str, progress: bool) -> None:
    length = response.headers.get("Content-Length")
    total = int(length) if length and length.isdigit() else None
    if total is not None and total > MAX_DOWNLOAD_BYTES:
        raise ArchiveError(f"{url} is {total:,} bytes, more than an archive may be ({MAX_DOWNLOAD_BYTES:,})")
    received = 0
    bar = Progress(total, f"downloading {_name(url)}", progress, unit="B", summary_after=2) if total \
        else phase(f"downloading {_name(url)}", progress)
    with bar:
        while chunk := response.read(_CHUNK):
            received += len(chunk)
            if received > MAX_DOWNLOAD_BYTES:
                raise ArchiveError(f"{url} sent more than {MAX_DOWNLOAD_BYTES:,} bytes; refusing to import")
            sink.write(chunk)
            if total:
                bar.update(len(chunk))
    if total is not None and received != total:
        raise ArchiveError(f"the download of {url} stopped after {received:,} of {total:,} bytes; nothing was "
                           f"imported: try again")


@contextmanager
def downloaded(url: str, progress: bool = True) -> Iterator[Path]:
    """The archive at ``url`` in a temporary file, removed when the block ends (also on failure)."""
    if not is_url(url):
        raise ArchiveError(f"{url} is not an http:// or https:// address")
    folder = Path(tempfile.mkdtemp(prefix="modgraph-import-"))
    try:
        path = folder / _name(url)
        request = urllib.request.Request(url, headers={"User-Agent": "modgraph"})
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response, open(path, "wb") as sink:
                _copy(response, sink, url, progress)
        except urllib.error.HTTPError as exc:
            raise ArchiveError(f"could not download {url}: the server answered {exc.code} {exc.reason}; "
                               f"check the address") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or exc
            raise ArchiveError(f"could not download {url} ({reason}); check the address and the network, or "
                               f"download the file and import it from disk") from None
        yield path
    finally:
        shutil.rmtree(folder, ignore_errors=True)
