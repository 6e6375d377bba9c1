"""What ``modgraph serve``'s page does, without the web: the modalities, routes, examples, the graph
picture, and one checked input translated once along its route (:mod:`modgraph.app.page_ui` draws it).
"""

from __future__ import annotations

import logging
import re
import shutil
import threading
import uuid
import wave
from collections import deque
from pathlib import Path

from modgraph.errors import DataNotFoundError, InputFileError, ModgraphError
from modgraph.inference.cascade import Cascade, translate_cascade
from modgraph.inference.readings import LOW_CONFIDENCE
from modgraph.modality import Modality

logger = logging.getLogger(__name__)
MAX_UPLOAD_BYTES = 10 << 20  # a 1-second wav is ~32 KB, a photo a few MB
MAX_PIXELS = 16_000_000  # an image's pixels as its header claims them, checked before it is decoded
MAX_AUDIO_SECONDS = 30.0  # a wav's length as its header claims it
MAX_TEXT_CHARS = 1000
KEPT_RESULTS = 100  # older translations' files are deleted
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".ppm", ".pgm", ".tif", ".tiff"}


def input_kind(modality: Modality) -> str:
    """How the page takes this modality's input: ``audio`` (record or upload a wav), ``image`` (draw or
    upload), ``text`` (type) or ``file`` (upload one of its ``input_suffixes``)."""
    suffixes = {s.lower() for s in modality.input_suffixes}
    if ".wav" in suffixes:
        return "audio"
    if suffixes & IMAGE_SUFFIXES:
        return "image"
    if type(modality).read_text is not Modality.read_text:
        return "text"
    return "file"


def output_kind(modality: Modality) -> str:
    suffix = modality.output_suffix.lower()
    return "audio" if suffix == ".wav" else "image" if suffix in IMAGE_SUFFIXES else "text" if suffix == ".txt" else "file"


def percent(value) -> str:
    return f"{100 * value:.1f}%" if isinstance(value, (int, float)) else "not measured"


def doubt_line(who: str, what: str, probabilities: dict[str, float]) -> str:
    """One line in words for a reading: what was read, and a warning when it is unsure."""
    name, confidence = next(iter(probabilities.items()))
    line = f"{who} reads {what} as **{name}** ({round(100 * confidence)}%)"
    if confidence < LOW_CONFIDENCE:
        line += f" — low confidence (under {round(100 * LOW_CONFIDENCE)}%): the reading may be wrong"
    return line


def check_upload(path: Path, shown_name: str, modality: Modality) -> None:
    """Refuse a file before it is decoded: its suffix, its size, and what its header claims."""
    suffix = path.suffix.lower()
    if suffix not in {s.lower() for s in modality.input_suffixes}:
        raise InputFileError(f"{shown_name}: {modality.name} reads {', '.join(modality.input_suffixes)} files, "
                             f"not {suffix or 'a file without a suffix'}")
    size = path.stat().st_size
    if size == 0:
        raise InputFileError(f"{shown_name}: the file is empty")
    if size > MAX_UPLOAD_BYTES:
        raise InputFileError(f"{shown_name}: {size:,} bytes, more than the {MAX_UPLOAD_BYTES:,} this page takes")
    if suffix in IMAGE_SUFFIXES:
        check_pixels(path, shown_name)
    elif suffix == ".wav":
        check_duration(path, shown_name)


def check_pixels(path: Path, shown_name: str) -> None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:  # reads the header only
            width, height = image.size
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise InputFileError(f"{shown_name}: not a readable image") from exc
    if width * height > MAX_PIXELS:
        raise InputFileError(f"{shown_name}: {width}x{height} pixels, more than the {MAX_PIXELS:,} this page "
                             "takes; scale it down first")


def check_duration(path: Path, shown_name: str) -> None:
    """A PCM wav's length from its header; other wavs (float, compressed) are left to the plugin's reader."""
    try:
        with wave.open(str(path), "rb") as fh:
            seconds = fh.getnframes() / max(fh.getframerate(), 1)
    except (wave.Error, EOFError, OSError):
        return
    if seconds > MAX_AUDIO_SECONDS:
        raise InputFileError(f"{shown_name}: {seconds:.0f} s of audio, longer than the {MAX_AUDIO_SECONDS:.0f} s "
                             "this page takes")


def visitor_message(exc: Exception, path: Path | None, shown_name: str) -> str:
    """An error as one line a visitor may see: our copy's path replaced by the name they gave."""
    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if path is not None:
        message = message.replace(str(path), shown_name).replace(str(path.resolve()), shown_name)
    return message


class Page:
    """The page's work over one :class:`~modgraph.api.ModGraph`, loaded once per process.

    A lock serialises loading (a ModGraph caches the nodes and associators it loads); translations
    run side by side on the loaded models, which they only read. Every file it writes lives under
    ``workdir``.
    """

    def __init__(self, mg, workdir: Path, samples: int = 1):
        self.mg = mg
        self.workdir = Path(workdir)
        self.samples = samples
        self.lock = threading.RLock()
        self._results: deque[Path] = deque()
        self._examples: dict[tuple[str, str | None], tuple[list[tuple[str, Path]], str]] = {}
        self._picture: tuple[tuple, Path] | None = None

    # -- what is there ------------------------------------------------------------------------------
    def modalities(self) -> list[str]:
        """Trained modalities whose plugin is installed here."""
        with self.lock:
            names = []
            for name in sorted(self.mg.graph().nodes):
                try:
                    self.mg.node(name)
                except ModgraphError as exc:
                    logger.warning("%s is left off the page: %s", name, exc)
                    continue
                names.append(name)
            return names

    def modality(self, name: str) -> Modality:
        with self.lock:
            return self.mg.node(name).modality

    def route(self, source: str, target: str) -> tuple[list[str], str]:
        """The route and a line showing it with each edge's measured accuracy."""
        with self.lock:
            path = self.mg.route(source, target)
        edges = self.mg.graph().edges
        hops = [f"{a} → {b} ({percent((edges[a, b].get('metrics') or {}).get('accuracy'))})"
                for a, b in zip(path[:-1], path[1:])]
        return path, "Route: " + (", then ".join(hops) if hops else f"{source} reconstructed by its own VAE")

    # -- translating --------------------------------------------------------------------------------
    def _new_folder(self) -> Path:
        folder = self.workdir / "results" / uuid.uuid4().hex
        folder.mkdir(parents=True)
        self._results.append(folder)
        while len(self._results) > KEPT_RESULTS:
            shutil.rmtree(self._results.popleft(), ignore_errors=True)
        return folder

    def translate(self, source: str, target: str, file: str | Path | None = None, text: str | None = None,
                  shown_name: str | None = None, anchor: int | None = None) -> tuple[Cascade, list[str]]:
        """Translate one upload (``file``, named ``shown_name`` to the visitor) or ``text``, once.

        Returns the cascade (route, every stop's files and readings) and the source reader's notes.
        Raises :class:`InputFileError` with a line that names no server path.
        """
        from modgraph.settings import TranslateSettings

        anchor = TranslateSettings().anchor if anchor is None else anchor
        with self.lock:  # loading is serialised; the loaded models are only read, by any number of requests
            path = self.mg.route(source, target)
            for a, b in zip(path[:-1], path[1:]):
                self.mg.associator(a, b)
            nodes = [self.mg.node(name) for name in path]
            modality = nodes[0].modality
            folder = self._new_folder()
        if file is None:
            if text is None or not text.strip():
                raise InputFileError(f"give {source} an input first" + (
                    ": type some text" if input_kind(modality) == "text" else ""))
            if len(text) > MAX_TEXT_CHARS:
                raise InputFileError(f"the text is {len(text):,} characters; this page takes {MAX_TEXT_CHARS:,}")
            x, notes, stem = modality.read_text(text), [], _stem(text)
        else:
            file = Path(file)
            shown_name = shown_name or file.name
            check_upload(file, shown_name, modality)
            x, notes = self._read(modality, file, shown_name)
            stem = _stem(Path(shown_name).stem)
        cascade = translate_cascade(self.mg, path, x, folder, self.samples, anchor, stem=stem)
        return cascade, [visitor_message(ValueError(n), file, shown_name or "") for n in notes] + cascade.notes

    @staticmethod
    def _read(modality: Modality, file: Path, shown_name: str):
        try:
            return modality.read_file(file)
        except ModgraphError as exc:
            raise InputFileError(visitor_message(exc, file, shown_name)) from None
        except Exception:  # a plugin that let a decoder's error through: still the file's fault
            logger.exception("reading an upload as %s failed", modality.name)
            raise InputFileError(f"{shown_name}: cannot be read as {modality.name}") from None

    # -- examples and the graph -------------------------------------------------------------------
    def examples(self, name: str) -> tuple[list[tuple[str, Path]], str]:
        """One real test file per class of ``name`` (class name, file), or none and a line saying why."""
        with self.lock:
            node = self.mg.node(name)
            key = (name, node.meta.get("created"))
            if key not in self._examples:
                self._examples[key] = self._find_examples(node.modality)
            return self._examples[key]

    def _find_examples(self, modality: Modality) -> tuple[list[tuple[str, Path]], str]:
        where = (f"No examples: {modality.name}'s test data is not on this server (put it in the data folder, "
                 f"MODGRAPH_DATA; `modgraph add-modality {modality.name} --download` fetches it where it can).")
        try:
            files = modality.example_files(self.mg.data_root, "test")
            if files is None and output_kind(modality) in ("image", "text"):
                files = self._written_examples(modality)
        except DataNotFoundError:
            return [], where
        except Exception:
            logger.exception("listing %s's examples failed", modality.name)
            return [], where
        first = {}
        for label, path in files or []:
            first.setdefault(label, Path(path))
        names = modality.class_names
        examples = [(names[label], first[label]) for label in sorted(first) if 0 <= label < len(names)]
        return examples, ("" if examples else where)

    def _written_examples(self, modality: Modality) -> list[tuple[int, Path]]:
        """A modality whose features are its data (pixels, characters): the first test row of each class,
        written as the file ``read_file`` reads."""
        features = self.mg.features(modality, "test").originals()
        folder = self.workdir / "examples" / modality.name
        out = []
        for label in range(len(modality.classes)):
            rows = (features.y == label).nonzero().flatten()
            if len(rows):
                path = folder / f"{label}{modality.output_suffix}"
                written = modality.write_file(features.x[int(rows[0])], path)
                out.append((label, Path(written[0])))
        return out

    def graph_picture(self) -> Path:
        """The whole graph drawn as a PNG: nodes with their recognizer's accuracy, edges with theirs."""
        from modgraph.app.graph_picture import draw_graph

        with self.lock:
            graph = self.mg.graph()
            key = tuple(sorted((n, d.get("created")) for n, d in graph.nodes(data=True))) + tuple(
                sorted((a, b, d.get("created"), bool(d.get("stale"))) for a, b, d in graph.edges(data=True)))
            if self._picture is None or self._picture[0] != key:
                out = self.workdir / "graph" / f"{uuid.uuid4().hex}.png"
                self._picture = (key, draw_graph(graph, out, self._datasets(graph)))
            return self._picture[1]

    def _datasets(self, graph) -> dict[str, str]:
        names = {}
        for name in graph.nodes:
            try:
                dataset = self.mg.modality(name).dataset
            except ModgraphError:
                continue
            if dataset is not None:
                names[name] = dataset.name
        return names


def _stem(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text.strip()).strip("-")[:40] or "input"
