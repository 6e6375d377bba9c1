"""``modgraph serve``: the Gradio page on a FastAPI app behind a guard (loopback Host/Origin only,
bodies capped while they stream), one request at a time on the model, served by uvicorn.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import tempfile
import warnings
from pathlib import Path
from urllib.parse import urlsplit

from modgraph.app.page import MAX_PIXELS, MAX_UPLOAD_BYTES, Page
from modgraph.errors import ModgraphError

MAX_BODY_BYTES = MAX_UPLOAD_BYTES + (1 << 20)  # one upload and the form around it
QUEUE_SIZE = 64  # requests waiting; more are refused at once
WORKERS = 4  # requests handled at once: they share the loaded models (Page.lock serialises only loading)
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}


def missing_packages() -> list[str]:
    """The app extra's distributions that are not installed."""
    import importlib.util

    return [name for name in ("gradio",) if importlib.util.find_spec(name) is None]


def is_loopback(host: str) -> bool:
    try:
        return host in LOOPBACK_NAMES or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _hostname(value: str) -> str:
    """The host part of a Host header or an Origin (``[::1]:8000`` -> ``::1``), lower-cased."""
    if "://" not in value:
        value = "http://" + value
    try:
        return (urlsplit(value).hostname or "").lower()
    except ValueError:
        return ""


class Guard:
    """ASGI middleware: on a loopback address, only requests whose Host (and Origin, when sent) name a
    loopback host are answered (a page elsewhere cannot rebind its name to us); request bodies are
    counted as they arrive and cut off past ``max_body`` (also those sent without a Content-Length)."""

    def __init__(self, app, loopback_only: bool, max_body: int = MAX_BODY_BYTES):
        self.app = app
        self.loopback_only = loopback_only
        self.max_body = max_body

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if self.loopback_only:
            origin = headers.get("origin")
            if not is_loopback(_hostname(headers.get("host", ""))) or (origin and origin != "null"
                                                                        and not is_loopback(_hostname(origin))):
                return await self._refuse(scope, send, 403, "this server answers only to its own address")
        if scope["type"] == "websocket":
            return await self.app(scope, receive, send)
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            return await self._refuse(scope, send, 413, f"requests are limited to {self.max_body:,} bytes")
        state = {"received": 0, "started": False, "cut": False}

        async def counted_receive():
            if state["cut"]:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > self.max_body:
                    state["cut"] = True
                    if not state["started"]:
                        state["started"] = True
                        await self._respond(send, 413, f"requests are limited to {self.max_body:,} bytes")
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message):
            if state["cut"]:
                return  # our 413 went out; the app's answer to a cut-off body is dropped
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        return await self.app(scope, counted_receive, guarded_send)

    async def _refuse(self, scope, send, status: int, text: str):
        if scope["type"] == "websocket":
            return await send({"type": "websocket.close", "code": 1008})
        await self._respond(send, status, text)

    @staticmethod
    async def _respond(send, status: int, text: str):
        body = text.encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def guard_images() -> None:
    """Pillow refuses, process-wide, any image claiming more than MAX_PIXELS before decoding it
    (Gradio opens the pictures it is sent before our checks run)."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    warnings.simplefilter("error", Image.DecompressionBombWarning)


def make_app(mg, workdir: Path, loopback_only: bool = True, samples: int = 1):
    """The guarded ASGI app serving the page and its API over ``mg`` (models loaded once, here)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr
    from fastapi import FastAPI

    from modgraph.app.page_ui import CSS, PageUI

    workdir = Path(workdir)
    page = Page(mg, workdir, samples=samples)
    demo = PageUI(page).build()
    demo.queue(default_concurrency_limit=WORKERS, max_size=QUEUE_SIZE)
    app = gr.mount_gradio_app(FastAPI(docs_url=None, redoc_url=None, openapi_url=None), demo, path="",
                              max_file_size=MAX_UPLOAD_BYTES, allowed_paths=[str(workdir)], show_error=False,
                              footer_links=["api"], css=CSS, ssr_mode=False, mcp_server=False)
    return Guard(app, loopback_only)


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


def make_server(app):
    """A uvicorn server for ``app``; ``server.run(sockets=[bind(...)])`` serves until ``server.should_exit``."""
    import uvicorn

    # Open event streams are not waited for past a few seconds when it stops.
    return uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=3))


def serve_in_thread(app, host: str = "127.0.0.1", port: int = 0, timeout: float = 60.0):
    """Serve ``app`` from a daemon thread (tests, benchmarks): its address, and a function that stops it."""
    import threading
    import time

    sock = bind(host, port)
    server = make_server(app)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    if not server.started:
        sock.close()
        raise ModgraphError(f"the page did not start within {timeout:.0f} s")

    def stop():
        server.should_exit = True
        thread.join(10)
        sock.close()

    return address(sock), stop


def serve(mg, host: str = "127.0.0.1", port: int = 8000, samples: int = 1, announce=print) -> None:
    """Serve the page until interrupted; ``announce`` gets the address once it listens."""
    missing = missing_packages()
    if missing:
        raise ModgraphError(f"modgraph serve needs the app extra ({', '.join(missing)} missing): "
                            f"pip install 'modgraph[app]'")
    guard_images()  # process-wide: only where this process is the server
    sock = bind(host, port)
    with tempfile.TemporaryDirectory(prefix="modgraph-serve-") as workdir:
        server = make_server(make_app(mg, Path(workdir), loopback_only=is_loopback(host), samples=samples))
        announce(address(sock))
        server.run(sockets=[sock])
