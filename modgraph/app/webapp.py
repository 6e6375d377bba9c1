"""``modgraph serve``: one local page to try a registry: pick two modalities, give an input, see or hear its translation.

Needs the ``app`` extra (starlette, uvicorn, python-multipart); ``modgraph --help`` never imports this module.
"""

from __future__ import annotations

import logging
import re
import shutil
import socket
import tempfile
import threading
import uuid
from collections import deque
from pathlib import Path

import torch

from modgraph.errors import DataNotFoundError, InputFileError, ModgraphError
from modgraph.api import ModGraph
from modgraph.inference.loaded_node import LoadedNode
from modgraph.modality import Modality

logger = logging.getLogger(__name__)
MAX_UPLOAD_BYTES = 10 << 20  # a 1-second wav is ~32 KB, a photo a few MB
MAX_TEXT_CHARS = 1000
GALLERY_SIZE = 6  # test samples shown per modality: the first of each class, in class order
KEPT_RESULTS = 100  # older translations' files are deleted
STATIC = Path(__file__).resolve().parent / "web"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".ppm", ".pgm", ".tif", ".tiff"}
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,120}$")


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


@torch.no_grad()
def reading(node: LoadedNode, x_normalized: torch.Tensor) -> dict:
    """The node's recognizer on one normalised sample: its class, the softmax confidence, and the runner-up."""
    device = next(node.recognizer.parameters()).device
    probs = torch.softmax(node.recognizer(x_normalized.to(device)).float(), dim=1)[0].cpu()
    top = torch.topk(probs, min(3, len(probs)))
    names = node.modality.class_names
    return {"class": names[int(top.indices[0])], "confidence": float(top.values[0]),
            "top": [{"class": names[int(i)], "confidence": float(p)} for p, i in zip(top.values, top.indices)]}


def spectrogram_png(wav: Path, out: Path) -> Path:
    """A picture of a wav's spectrogram (for audio outputs whose plugin writes none beside them)."""
    import wave

    import numpy as np
    from matplotlib.figure import Figure

    with wave.open(str(wav), "rb") as fh:
        rate, width, channels = fh.getframerate(), fh.getsampwidth(), fh.getnchannels()
        frames = fh.readframes(fh.getnframes())
    dtype = {1: np.uint8, 2: np.int16, 4: np.int32}[width]
    samples = np.frombuffer(frames, dtype=dtype).astype(np.float32).reshape(-1, channels).mean(axis=1)
    n_fft = int(min(512, 2 ** np.floor(np.log2(max(len(samples) // 2, 8)))))  # a few windows even for a short clip
    fig = Figure(figsize=(4, 2), dpi=100)
    ax = fig.add_subplot()
    ax.specgram(samples, NFFT=n_fft, Fs=rate, noverlap=n_fft // 2, cmap="magma")
    ax.set_xlabel("s")
    ax.set_ylabel("Hz")
    fig.tight_layout()
    fig.savefig(out)
    return out


class WebSession:
    """What the page does, without the web: list modalities, route, translate an input, show test samples.

    One lock serialises model work (a ModGraph caches loaded nodes and is not thread-safe);
    every file it writes lives under ``workdir``.
    """

    def __init__(self, mg: ModGraph, workdir: Path):
        self.mg = mg
        self.workdir = Path(workdir)
        self.lock = threading.Lock()
        self._results: deque[Path] = deque()
        self._galleries: dict[tuple[str, str | None], dict] = {}

    # -- what is there -------------------------------------------------------------------
    def modalities(self) -> list[dict]:
        graph = self.mg.graph()
        out = []
        for name in sorted(graph.nodes):
            meta = graph.nodes[name]
            try:
                modality = self.mg.modality(name)
            except ModgraphError as exc:
                out.append({"name": name, "usable": False, "why": str(exc)})
                continue
            out.append({"name": name, "usable": True, "description": modality.description,
                        "input": input_kind(modality), "output": output_kind(modality),
                        "suffixes": list(modality.input_suffixes), "classes": modality.class_names,
                        "metrics": meta.get("metrics") or {}})
        return out

    def route(self, source: str, target: str) -> dict:
        with self.lock:
            path = self.mg.route(source, target)
        edges = self.mg.graph().edges
        return {"path": path, "accuracies": [(edges[a, b].get("metrics") or {}).get("accuracy")
                                             for a, b in zip(path[:-1], path[1:])]}

    # -- translating -----------------------------------------------------------------------
    def _new_folder(self) -> tuple[str, Path]:
        key = uuid.uuid4().hex
        folder = self.workdir / "results" / key
        folder.mkdir(parents=True)
        self._results.append(folder)
        while len(self._results) > KEPT_RESULTS:
            shutil.rmtree(self._results.popleft(), ignore_errors=True)
        return key, folder

    def _url(self, path: Path) -> str:
        return "/files/" + path.resolve().relative_to(self.workdir.resolve()).as_posix()

    def _save_upload(self, folder: Path, filename: str, data: bytes, modality: Modality) -> Path:
        suffix = Path(filename or "").suffix.lower()
        if suffix not in {s.lower() for s in modality.input_suffixes}:
            raise InputFileError(f"{filename or 'the upload'}: {modality.name} reads "
                                 f"{', '.join(modality.input_suffixes)} files, not {suffix or 'a file without suffix'}")
        if not data:
            raise InputFileError(f"{filename}: the file is empty")
        if len(data) > MAX_UPLOAD_BYTES:
            raise InputFileError(f"{filename}: {len(data):,} bytes, more than the {MAX_UPLOAD_BYTES:,} this page takes")
        stem = re.sub(r"[^A-Za-z0-9_-]+", "-", Path(filename).stem).strip("-")[:40] or "input"
        path = folder / f"{stem}{suffix}"
        path.write_bytes(data)
        return path

    def _describe_outputs(self, modality: Modality, written: list[str], folder: Path) -> dict:
        files = [Path(p) for p in written]
        main = next((p for p in files if p.suffix.lower() == modality.output_suffix.lower()), files[0])
        out = {"kind": output_kind(modality), "url": self._url(main), "name": main.name}
        if out["kind"] == "audio":
            picture = next((p for p in files if p.suffix.lower() == ".png"), None)
            if picture is None:
                picture = spectrogram_png(main, folder / f"{main.stem}-spectrogram.png")
            out["spectrogram"] = self._url(picture)
        elif out["kind"] == "text":
            out["text"] = main.read_text(encoding="utf-8", errors="replace")[:MAX_TEXT_CHARS]
        return out

    def translate(self, source: str, target: str, *, filename: str | None = None, data: bytes | None = None,
                  text: str | None = None) -> dict:
        """Translate one uploaded file (or typed text) from ``source`` to ``target``.

        Returns the route, the output's URL (and an audio output's spectrogram), the notes
        the source's reader made, and each recognizer's reading: the source's on the input,
        the target's on the translation (as ``modgraph eval`` judges it, before it is written).
        """
        with self.lock:
            path = self.mg.route(source, target)
            src, dst = self.mg.node(source), self.mg.node(target)
            key, folder = self._new_folder()
            if data is None:
                if text is None or not text.strip():
                    raise InputFileError(f"give {source} an input: upload a file" +
                                         (" or type some text" if input_kind(src.modality) == "text" else ""))
                if len(text) > MAX_TEXT_CHARS:
                    raise InputFileError(f"the text is {len(text):,} characters; this page takes {MAX_TEXT_CHARS:,}")
                x, notes, inputs, texts = src.modality.read_text(text), [], [], [text]
            else:
                file = self._save_upload(folder, filename, data, src.modality)
                try:
                    x, notes = src.modality.read_file(file)
                except ModgraphError as exc:  # name the file as the user knows it, not our temporary copy
                    raise type(exc)(str(exc).replace(str(file), filename)) from None
                except Exception as exc:  # a plugin that let a decoder's error through: still the file's fault
                    raise InputFileError(f"{filename}: cannot be read as {source} ({type(exc).__name__}: {exc})") from None
                inputs, texts = [file], []
            x = x.unsqueeze(0)
            report = self.mg.translate_files(source, target, inputs, folder / "output", texts=texts)
            translated = self.mg.translate(source, target, x)[:, 0]
            return {"path": path, "notes": notes,
                    "input_reading": reading(src, src.modality.normalize(x, src.stats)),
                    "output_reading": reading(dst, dst.modality.normalize(translated, dst.stats)),
                    "output": self._describe_outputs(dst.modality, report["written"], folder)}

    # -- test samples ------------------------------------------------------------------------
    def gallery(self, name: str) -> dict:
        """The first test sample of each of ``name``'s classes (up to GALLERY_SIZE), written as files."""
        with self.lock:
            node = self.mg.node(name)
            key = (name, node.meta.get("created"))
            if key in self._galleries:
                return self._galleries[key]
            try:
                features = self.mg.features(node.modality, "test").originals()
            except DataNotFoundError as exc:
                return {"samples": [], "why": str(exc)}
            folder = self.workdir / "gallery" / name / uuid.uuid4().hex
            samples = []
            for label, class_name in enumerate(node.modality.class_names):
                rows = (features.y == label).nonzero().flatten()
                if len(rows) == 0:
                    continue
                suffix = node.modality.output_suffix or ".bin"
                written = node.modality.write_file(features.x[int(rows[0])], folder / f"{label}{suffix}")
                described = self._describe_outputs(node.modality, [str(p) for p in written], folder)
                samples.append({"class": class_name, **described})
                if len(samples) == GALLERY_SIZE:
                    break
            self._galleries[key] = {"samples": samples}
            return self._galleries[key]

    def file(self, relative: str) -> Path | None:
        """A file this session wrote, by its URL path below ``/files/`` (None for anything else)."""
        parts = relative.split("/")
        if not parts or not all(_SAFE_NAME.match(p) for p in parts):
            return None
        path = (self.workdir / Path(*parts)).resolve()
        if not path.is_relative_to(self.workdir.resolve()) or not path.is_file():
            return None
        return path


def _fail(exc: Exception, status: int = 400):
    from starlette.responses import JSONResponse

    return JSONResponse({"error": str(exc)}, status_code=status)


async def _translate_upload(session: "WebSession", request):
    """POST /api/translate: a bounded multipart form (source, target, and a file or text) translated."""
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import JSONResponse

    length = request.headers.get("content-length") or "0"
    if not length.isdigit():
        return _fail(InputFileError("the upload's Content-Length is not a number"))
    if int(length) > MAX_UPLOAD_BYTES + 65536:  # the file's limit plus room for the form's other fields
        return _fail(InputFileError(f"the upload is {int(length):,} bytes, more than the {MAX_UPLOAD_BYTES:,} "
                                    f"this page takes"), 413)
    try:
        form = await request.form(max_files=1, max_fields=8, max_part_size=MAX_UPLOAD_BYTES + 1)
    except Exception as exc:  # malformed multipart, or a part over the limit
        status = getattr(exc, "status_code", 400)
        return _fail(InputFileError(f"the upload could not be read: {getattr(exc, 'detail', exc)}"), status)
    try:
        upload = form.get("file")
        kwargs = {"text": form.get("text") if isinstance(form.get("text"), str) else None}
        if upload is not None and not isinstance(upload, str):
            data = await upload.read(MAX_UPLOAD_BYTES + 1)
            kwargs.update(filename=upload.filename or "", data=data)
        result = await run_in_threadpool(session.translate, str(form.get("source", "")),
                                         str(form.get("target", "")), **kwargs)
        return JSONResponse(result)
    except ModgraphError as exc:
        return _fail(exc)
    except Exception as exc:  # a bug, not the user's input: say so on the page and keep serving
        logger.exception("translating failed")
        return _fail(RuntimeError(f"internal error ({type(exc).__name__}: {exc}); the server log has the details"),
                     500)
    finally:
        await form.close()


def make_app(mg: ModGraph, workdir: Path):
    """The Starlette app serving the page, its script and the JSON API over a :class:`WebSession`."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException
    from starlette.requests import Request
    from starlette.responses import FileResponse, JSONResponse, Response
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    session = WebSession(mg, workdir)

    async def index(request: Request):
        return FileResponse(STATIC / "index.html")

    async def favicon(request: Request):
        return Response(status_code=204)

    async def modalities(request: Request):
        return JSONResponse({"registry": str(mg.registry.root), "modalities": await run_in_threadpool(session.modalities)})

    async def route(request: Request):
        try:
            return JSONResponse(await run_in_threadpool(session.route, request.query_params.get("source", ""),
                                                        request.query_params.get("target", "")))
        except ModgraphError as exc:
            return _fail(exc)

    async def translate(request: Request):
        return await _translate_upload(session, request)

    async def gallery(request: Request):
        try:
            return JSONResponse(await run_in_threadpool(session.gallery, request.path_params["name"]))
        except ModgraphError as exc:
            return _fail(exc)

    async def files(request: Request):
        path = session.file(request.path_params["path"])
        if path is None:
            raise HTTPException(404)
        return FileResponse(path)

    return Starlette(routes=[
        Route("/", index),
        Route("/favicon.ico", favicon),
        Route("/api/modalities", modalities),
        Route("/api/route", route),
        Route("/api/translate", translate, methods=["POST"]),
        Route("/api/gallery/{name}", gallery),
        Route("/files/{path:path}", files),
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
    ])


def missing_packages() -> list[str]:
    """The app extra's distributions that are not installed (python-multipart parses the uploads)."""
    import importlib.util

    modules = {"starlette": ["starlette"], "uvicorn": ["uvicorn"], "python-multipart": ["python_multipart", "multipart"]}
    return [dist for dist, names in modules.items() if not any(importlib.util.find_spec(n) for n in names)]


def bind(host: str = "127.0.0.1", port: int = 8000) -> socket.socket:
    """A listening socket (port 0: any free one), so the address can be printed before serving."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ModgraphError(f"cannot listen on {host}:{port} ({exc.strerror}); pick another with --port") from None
    sock.listen(128)
    return sock


def address(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def make_server(mg: ModGraph, workdir: Path):
    """A uvicorn server for the app; ``server.run(sockets=[bind(...)])`` serves until ``server.should_exit``."""
    import uvicorn

    return uvicorn.Server(uvicorn.Config(make_app(mg, workdir), log_level="warning", lifespan="off"))


def serve(mg: ModGraph, host: str = "127.0.0.1", port: int = 8000, announce=print) -> None:
    """Serve the page until interrupted; ``announce`` gets the address once it listens."""
    missing = missing_packages()
    if missing:
        raise ModgraphError(f"modgraph serve needs the app extra ({', '.join(missing)} missing): "
                            f"pip install 'modgraph[app]'")
    sock = bind(host, port)
    with tempfile.TemporaryDirectory(prefix="modgraph-serve-") as workdir:
        server = make_server(mg, Path(workdir))
        announce(address(sock))
        server.run(sockets=[sock])
