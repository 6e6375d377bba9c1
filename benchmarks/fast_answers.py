"""Questions that need no model answer at once: graph, route, card, config and --help, timed as a user runs them.

    python benchmarks/fast_answers.py --registry REGISTRY [--repeat 5]

Each command runs in a fresh process (``python -m modgraph ...``, as the console script does) and
the median wall time of ``--repeat`` runs is reported; one more run under the same interpreter says
whether torch was imported. Bar (issue 31): each under 0.5 s, none importing torch. Writes
docs/results/fast_answers.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

BAR_SECONDS = 0.5
# Runs the command like the console script, then says on stderr whether torch was imported.
PROBE = ("import sys\nfrom modgraph.app.cli import main\ntry:\n    main(sys.argv[1:], prog_name='modgraph')\n"
         "except SystemExit:\n    pass\nprint('TORCH', 'torch' in sys.modules, file=sys.stderr)\n")


def commands(registry: Path) -> dict[str, list[str]]:
    from modgraph.storage.card import describe_graph
    from modgraph.storage.registry import Registry

    edges = describe_graph(Registry(registry))["edges"]
    route = [edges[0]["source"], edges[0]["target"]] if edges else ["a", "a"]
    reg = ["--registry", str(registry)]
    return {"graph": ["graph", *reg], "route": ["route", *route, *reg], "card": ["card", *reg],
            "config": ["config"], "--help": ["--help"]}


def median_seconds(argv: list[str], repeat: int) -> tuple[float, float]:
    """Median wall and CPU (user + system) seconds of ``repeat`` runs: the CPU time is what the command
    itself costs, the wall time also what other processes on a busy machine take from it."""
    wall, cpu = [], []
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=True)
        wall.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return statistics.median(wall), statistics.median(cpu)


def time_command(args: list[str], repeat: int) -> tuple[float, float, bool]:
    """The median wall and CPU seconds of ``repeat`` runs, and whether the command imported torch."""
    seconds, cpu = median_seconds([sys.executable, "-m", "modgraph", *args], repeat)
    probe = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True)
    return seconds, cpu, "TORCH True" in probe.stderr


def render(fig: dict) -> str:
    lines = ["## Fast answers: graph, route, card, config and --help without torch (issue 31)", "",
             f"`python benchmarks/fast_answers.py --registry REGISTRY --repeat {fig['repeat']}` on {fig['when']} "
             f"({fig['platform']}, Python {fig['python']}); {fig['registry']}. Each command in a fresh process "
             f"(`python -m modgraph`), median of {fig['repeat']} runs; bar: under {BAR_SECONDS} s, torch never "
             f"imported. The machine's load average was {fig['load']} (2 cores) and an empty Python "
             f"(`python -c pass`) took {fig['python_seconds'][0]:.3f} s wall, {fig['python_seconds'][1]:.3f} s CPU: "
             "on a busy machine the wall time is mostly waiting for a core; the CPU time is what the command costs.",
             "", "| command | wall seconds (median) | CPU seconds (median) | imports torch | bar met (wall) |",
             "| --- | --- | --- | --- | --- |"]
    for name, row in fig["rows"].items():
        lines.append(f"| `modgraph {name}` | {row['seconds']:.3f} | {row['cpu_seconds']:.3f} | "
                     f"{'yes' if row['torch'] else 'no'} | {'yes' if row['met'] else 'no'} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registry", type=Path, default=Path(os.environ.get("MODGRAPH_REGISTRY") or "registry"))
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--note", default="a registry trained by the README's recipe (mnist, fsdd, link fsdd mnist)",
                        help="what the registry is, for the record")
    parser.add_argument("--out", type=Path, default=Path("docs/results"))
    args = parser.parse_args()
    rows = {}
    for name, command in commands(args.registry).items():
        seconds, cpu, torch = time_command(command, args.repeat)
        rows[name] = {"seconds": round(seconds, 4), "cpu_seconds": round(cpu, 4), "torch": torch,
                      "met": seconds < BAR_SECONDS and not torch}
        print(f"modgraph {' '.join(command)}: {seconds:.3f} s wall, {cpu:.3f} s CPU (median of {args.repeat}), "
              f"torch {'imported' if torch else 'not imported'}")
    fig = {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "platform": platform.platform(),
           "load": round(os.getloadavg()[0], 1), "python_seconds": median_seconds([sys.executable, "-c", "pass"],
                                                                                  args.repeat),
           "python": platform.python_version(), "repeat": args.repeat, "registry": args.note, "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "fast_answers.json").write_text(json.dumps(fig, indent=2) + "\n")
    (args.out / "fast_answers.md").write_text(render(fig))


if __name__ == "__main__":
    main()
