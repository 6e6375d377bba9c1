"""How fast ``modgraph serve`` answers: N translations through its API (gradio_client), C at a time,
after start-up; prints the median and the 95th percentile, and the machine's cores and load.

    python benchmarks/serve.py --from fsdd --to mnist            # the registry and data root of your setup
    python benchmarks/serve.py --toy                             # the tests' toy modalities, trained here

The input is the source's first example (its first real test file); ``--input FILE`` gives another.
"""

from __future__ import annotations

import argparse
import os
import statistics
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


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


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
    args = parser.parse_args()
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from gradio_client import Client, handle_file

    from modgraph.api import ModGraph
    from modgraph.app.page import Page
    from modgraph.app.page_server import make_app, serve_in_thread

    with tempfile.TemporaryDirectory(prefix="modgraph-bench-serve-") as folder:
        folder = Path(folder)
        if args.toy:
            mg, args.source, args.target = toy_graph(folder), "toyaudio", "toyimg"
        else:
            mg = ModGraph(registry=args.registry, data_root=args.data_root, device="cpu", progress=False)
        started = time.perf_counter()
        url, stop = serve_in_thread(make_app(mg, folder / "work"))
        start_up = time.perf_counter() - started
        example = args.input or Page(mg, folder / "examples").examples(args.source)[0][0][1]
        clients = [Client(url, verbose=False, download_files=False) for _ in range(args.concurrency)]
        clients[0].predict(args.source, args.target, handle_file(str(example)), "", api_name="/translate")  # warm

        def one(i: int) -> float:
            t = time.perf_counter()
            clients[i % args.concurrency].predict(args.source, args.target, handle_file(str(example)), "",
                                                  api_name="/translate")
            return time.perf_counter() - t

        t0 = time.perf_counter()
        with ThreadPoolExecutor(args.concurrency) as pool:
            latencies = list(pool.map(one, range(args.requests)))
        wall = time.perf_counter() - t0
        stop()
    ms = [1000 * s for s in latencies]
    load = os.getloadavg()
    print(f"{args.source} -> {args.target}: {args.requests} requests, {args.concurrency} at a time, after "
          f"start-up ({start_up:.1f} s): median {statistics.median(ms):.0f} ms, 95th percentile "
          f"{percentile(ms, 95):.0f} ms, {args.requests / wall:.1f} requests/s")
    print(f"machine: {os.cpu_count()} cores, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} "
          "(1/5/15 min; other work shares these cores)")


if __name__ == "__main__":
    main()
