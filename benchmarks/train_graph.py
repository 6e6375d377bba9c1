"""The README recipe's graph trained one command after another, by ``train --jobs 2`` and on Ray.

    python benchmarks/train_graph.py [--data-root ../shared/data] [--epochs N] [--recognizer-epochs N]
        [--link-epochs N] [--work benchmarks/.work/train_graph] [--out docs/results] [--render-only]

The graph (mnist, fmnist, fsdd; fsdd <-> mnist, fmnist <-> mnist by index) is written as a spec
with every job on the CPU and one thread per job; the budget flags set every node's and link's
epochs (unset: the modalities' defaults, about 12 minutes a run on 2 idle cores). Three fresh
registries: the jobs ``modgraph plan`` prints, run one after another; ``modgraph train --jobs 2``;
``modgraph train --ray`` (a Ray started on this machine). The feature caches are built before
anything is timed. Prints and writes wall times side by side, sequential / parallel, and whether
every figure (recognizer and reconstruction accuracies, each direction's test accuracy) is equal
between the three to the last digit: ``--out``/train_graph.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from modgraph import ModGraph, __version__
from modgraph.runtime.jobs import job_figures
from modgraph.storage.registry import Registry

NODES = ["mnist", "fmnist", "fsdd"]
LINKS = [("fsdd", "mnist", "concept"), ("fmnist", "mnist", "index")]
JOBS = [f"node:{n}" for n in NODES] + [f"link:{a}--{b}" for a, b, _ in LINKS]


def spec_text(epochs: int | None, recognizer_epochs: int | None, link_epochs: int | None) -> str:
    lines = ['args = ["--device", "cpu"]', ""]
    for name in NODES:
        lines.append(f"[modalities.{name}]")
        lines += [f"epochs = {epochs}"] if epochs else []
        lines += [f"recognizer_epochs = {recognizer_epochs}"] if recognizer_epochs else []
    for source, target, pairing in LINKS:
        lines += ["", "[[links]]", f'source = "{source}"', f'target = "{target}"', f'pairing = "{pairing}"']
        lines += [f"epochs = {link_epochs}"] if link_epochs else []
    return "\n".join(lines) + "\n"


def modgraph(*args: str) -> list[str]:
    return [sys.executable, "-m", "modgraph", *args]


def sequential(spec: Path, registry: Path, env: dict) -> None:
    """The plan's commands, one after another (what a user ran before ``train``)."""
    plan = json.loads(subprocess.run(modgraph("plan", str(spec), "--registry", str(registry)), env=env, check=True,
                                     capture_output=True, text=True).stdout)
    for stage in plan["stages"]:
        for job in stage["jobs"]:
            subprocess.run(modgraph(*job["argv"][1:]), env=env, check=True, stdout=subprocess.DEVNULL)


def command(args) -> str:
    """The command that measured, with the data root named as DATA (the folder that holds the datasets)."""
    budget = [f"--{flag.replace('_', '-')} {getattr(args, flag)}" for flag in ("epochs", "recognizer_epochs",
                                                                              "link_epochs") if getattr(args, flag)]
    return " ".join(["python benchmarks/train_graph.py --data-root DATA", *budget])


def run(args) -> dict:
    env = dict(os.environ, MODGRAPH_NUM_THREADS="1", MODGRAPH_DATA=str(args.data_root.resolve()))
    mg = ModGraph(data_root=args.data_root, device="cpu", progress=False)
    for name in NODES:  # the feature caches, built before anything is timed
        for split in ("train", "test"):
            mg.features(mg.modality(name), split)
    if args.work.exists():
        shutil.rmtree(args.work)
    args.work.mkdir(parents=True)
    spec = args.work / "graph.toml"
    spec.write_text(spec_text(args.epochs, args.recognizer_epochs, args.link_epochs))
    runs = {"sequential (plan's commands, one at a time)": None, "train --jobs 2": ["--jobs", "2"],
            "train --ray (local Ray)": ["--ray"]}
    out: dict = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": platform.platform(),
                 "cpus": os.cpu_count(), "threads_per_job": 1, "modgraph": __version__,
                 "command": command(args), "spec": spec.read_text(), "runs": {}}
    for label, extra in runs.items():
        registry = args.work / f"registry{len(out['runs'])}"
        load_before = os.getloadavg()[0]
        start = time.monotonic()
        if extra is None:
            sequential(spec, registry, env)
        else:
            done = subprocess.run(modgraph("train", str(spec), "--registry", str(registry), *extra), env=env,
                                  capture_output=True, text=True)
            print(done.stdout, done.stderr[-2000:] if done.returncode else "", sep="\n")
            done.check_returncode()
        seconds = time.monotonic() - start
        out["runs"][label] = {"seconds": round(seconds, 1), "load_before": round(load_before, 2),
                              "figures": {job: job_figures(Registry(registry), job) for job in JOBS}}
        print(f"{label}: {seconds:.1f} s", flush=True)
    figures = [r["figures"] for r in out["runs"].values()]
    out["identical"] = all(f == figures[0] for f in figures)
    times = [r["seconds"] for r in out["runs"].values()]
    out["sequential_over_jobs2"] = round(times[0] / times[1], 3)
    out["sequential_over_ray"] = round(times[0] / times[2], 3)
    return out


def render(out: dict) -> str:
    budget = ("the modalities' default epochs" if "epochs" not in out["spec"]
              else "reduced epochs (the spec below), not the defaults")
    lines = ["## The README recipe's graph: one job at a time, `train --jobs 2`, `train --ray`", "",
             f"{out['date']}, {out['machine']}, {out['cpus']} CPUs (shared with other work; load before each run "
             f"shown), modgraph {out['modgraph']}, one thread per job, {budget}. Command: `{out['command']}`.", "",
             "| run | wall time | load before |", "|---|---|---|"]
    lines += [f"| {label} | {r['seconds']:.1f} s | {r['load_before']} |" for label, r in out["runs"].items()]
    lines += ["", f"sequential / `--jobs 2`: {out['sequential_over_jobs2']}; sequential / Ray: "
              f"{out['sequential_over_ray']}. Figures identical between the three runs to the last digit: "
              f"**{'yes' if out['identical'] else 'NO'}**.", "", "| job | figures |", "|---|---|"]
    first = next(iter(out["runs"].values()))["figures"]
    lines += [f"| {job} | " + ", ".join(f"{k} {100 * v:.2f}%" for k, v in first[job].items()) + " |" for job in JOBS]
    lines += ["", "The spec:", "", "```toml", out["spec"].rstrip(), "```", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=Path(os.environ.get("MODGRAPH_DATA", "../shared/data")))
    parser.add_argument("--epochs", type=int, help="every node's VAE epochs [default: the modality's]")
    parser.add_argument("--recognizer-epochs", type=int, help="every node's recognizer epochs")
    parser.add_argument("--link-epochs", type=int, help="every link's epochs")
    parser.add_argument("--work", type=Path, default=Path("benchmarks/.work/train_graph"))
    parser.add_argument("--out", type=Path, default=Path("docs/results"))
    parser.add_argument("--render-only", action="store_true", help="write the .md again from the saved .json")
    args = parser.parse_args()
    out = json.loads((args.out / "train_graph.json").read_text()) if args.render_only else run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "train_graph.json").write_text(json.dumps(out, indent=2) + "\n")
    (args.out / "train_graph.md").write_text(render(out))
    print(render(out))


if __name__ == "__main__":
    main()
