"""How fast ``modgraph serve`` answers: N translations through its API (gradio_client), C at a time,
after start-up; prints the median and the 95th percentile, and the machine's cores and load.

    python benchmarks/serve.py --from fsdd --to mnist            # the registry and data root of your setup
    python benchmarks/serve.py --toy                             # the tests' toy modalities, trained here

The server is ``modgraph serve`` in its own process, as a user runs it (``--in-process``: a server
thread beside the clients, sharing their interpreter; ``--toy`` always runs that way).

The input is the source's first example (its first real test file); ``--input FILE`` gives another.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def toy_graph(folder: Path):
    """The tests' toy plugin, its data and a small trained registry in ``folder`` (a few seconds)."""
    sys.path.insert(0, str(ROOT / "tests"))
    import toyplugin

    from modgraph.api import ModGraph
    from modgraph.plugins import PluginHost

    host = PluginHost(load_entry_points=False)
    host.add_plugin(toyplugin, name="toy", distribution=toyplugin.DISTRIBUTION, version=toyplugin.__version__)
    toyplugin.write_dataset(folder / "data")
    mg = ModGraph(registry=folder / "registry", data_root=folder / "data", cache_dir=folder / "cache",
                  device="cpu", progress=False, plugins=host)
    for name in ("toyimg", "toyaudio", "toycolor"):
        mg.add_modality(name)
    mg.link("toyimg", "toyaudio")
    return mg


def serve_process(registry: Path | None, data_root: Path | None):
    """``modgraph serve`` on a free port in a process of its own: its address, and a function that stops it."""
    argv = [sys.executable, "-m", "modgraph", "serve", "--port", "0", "--device", "cpu"]
    argv += ["--registry", str(registry)] if registry else []
    argv += ["--data-root", str(data_root)] if data_root else []
    server = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    line = server.stdout.readline()  # "Serving registry R on URL (Ctrl-C to stop)" once it listens
    if " on http" not in line:
        server.kill()
        sys.exit(f"modgraph serve did not start: {line.strip() or 'no output'}")

    def stop():
        server.terminate()
        server.wait(30)

    return line.split(" on ", 1)[1].split()[0], stop


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


class HttpClient:
    """Gradio's HTTP API as ``docs/serve.md``'s curl example calls it: upload the file, start the call,
    read its event stream to the end (one connection kept per client)."""

    def __init__(self, url: str):
        import httpx

        self.http = httpx.Client(base_url=url, timeout=60)

    def translate(self, source: str, target: str, file: Path) -> None:
        with open(file, "rb") as fh:
            uploaded = self.http.post("gradio_api/upload", files={"files": (file.name, fh)})
        uploaded.raise_for_status()
        data = [source, target, {"path": uploaded.json()[0], "meta": {"_type": "gradio.FileData"}}, ""]
        started = self.http.post("gradio_api/call/translate", json={"data": data})
        started.raise_for_status()
        event = ""
        with self.http.stream("GET", f"gradio_api/call/translate/{started.json()['event_id']}") as stream:
            for line in stream.iter_lines():
                if line.startswith("event:"):
                    event = line.split(":", 1)[1].strip()
                elif line.startswith("data:") and event in ("complete", "error"):
                    if event == "error":
                        raise RuntimeError(f"the server answered with an error: {line[5:].strip()}")
                    return
        raise RuntimeError("the event stream ended without a result")


class PythonClient:
    """``gradio_client``, as a Python user calls the page (its polling adds to every answer)."""

    def __init__(self, url: str):
        from gradio_client import Client

        self.client = Client(url, verbose=False, download_files=False)

    def translate(self, source: str, target: str, file: Path) -> None:
        from gradio_client import handle_file

        self.client.predict(source, target, handle_file(str(file)), "", api_name="/translate")


def measure(make_client, url: str, args, example: Path) -> tuple[list[float], float]:
    """Latencies (ms) of ``args.requests`` translations, ``args.concurrency`` at a time, and requests/s."""
    clients = [make_client(url) for _ in range(args.concurrency)]
    clients[0].translate(args.source, args.target, example)  # warm

    def one(i: int) -> float:
        t = time.perf_counter()
        clients[i % args.concurrency].translate(args.source, args.target, example)
        return 1000 * (time.perf_counter() - t)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(args.concurrency) as pool:
        latencies = list(pool.map(one, range(args.requests)))
    return latencies, args.requests / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="source", default="fsdd")
    parser.add_argument("--to", dest="target", default="mnist")
    parser.add_argument("--input", type=Path, help="the file translated [default: the source's first example]")
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--registry", type=Path)
    parser.add_argument("--data-root", type=Path)
    parser.add_argument("--toy", action="store_true", help="toy modalities trained here (toyaudio -> toyimg)")
    parser.add_argument("--in-process", action="store_true", help="serve from a thread of this process")
    parser.add_argument("--client", choices=["http", "gradio_client", "both"], default="both",
                        help="http: Gradio's HTTP API (what the server takes to answer); gradio_client: what a "
                             "Python user of gradio_client waits")
    args = parser.parse_args()
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from modgraph.api import ModGraph
    from modgraph.app.page import Page
    from modgraph.app.page_server import make_app, serve_in_thread

    clients = {"http": HttpClient, "gradio_client": PythonClient}
    chosen = list(clients) if args.client == "both" else [args.client]
    with tempfile.TemporaryDirectory(prefix="modgraph-bench-serve-") as folder:
        folder = Path(folder)
        if args.toy:
            mg, args.source, args.target = toy_graph(folder), "toyaudio", "toyimg"
        else:
            mg = ModGraph(registry=args.registry, data_root=args.data_root, device="cpu", progress=False)
        example = args.input or Page(mg, folder / "examples").examples(args.source)[0][0][1]
        started = time.perf_counter()
        in_process = args.in_process or args.toy
        url, stop = (serve_in_thread(make_app(mg, folder / "work")) if in_process
                     else serve_process(args.registry, args.data_root))
        start_up = time.perf_counter() - started
        try:
            results = {name: measure(clients[name], url, args, example) for name in chosen}
        finally:
            stop()
    where = "a server thread in this process" if in_process else "modgraph serve in its own process"
    print(f"{args.source} -> {args.target} ({where}, started in {start_up:.1f} s): {args.requests} requests, "
          f"{args.concurrency} at a time")
    for name, (ms, rate) in results.items():
        print(f"  {name:13} median {statistics.median(ms):4.0f} ms, 95th percentile {percentile(ms, 95):4.0f} ms, "
              f"{rate:.1f} requests/s")
    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} cores, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} "
          "(1/5/15 min; other work shares these cores)")


if __name__ == "__main__":
    main()
