"""The paper's evaluation on the data we have: Tables 1, 2 and 4 and Figure 6, mean ± std over seeds.

    python benchmarks/paper_tables.py [--data-root ../shared/data] [--seeds 0 1 2] [--budget default|quick]
        [--fractions 1 0.5 0.2 0.1 0.05 0.02 0.01] [--skip-gtsrb-text] [--resume] [--jobs N] [--threads N]
        [--out docs/results]

Per seed, one registry under ``--work``/seed<N>, trained through ``modgraph train`` from a spec
written beside it: every node once (mnist, fmnist, fsdd, and gtsrb, text when their plugins are
installed) and the links of Table 1 (F-MNIST <-> MNIST and F-MNIST <-> FSDD by index, MNIST <->
FSDD and GTSRB <-> text by concept); Table 4's cascade fsdd -> fmnist -> mnist against direct
fsdd -> mnist; Figure 6's paired fractions of fsdd <-> mnist, each linked (a one-link spec) into a
registry holding copies of the two nodes, so the full-pairing edges stay as they are, and
F-MNIST <-> MNIST with 5% paired (beside the peers' 5% runs) likewise. ``--jobs N`` trains N jobs
at once, the cores shared out among them. Each seed's figures are saved to ``--work``/seed<N>.json
step by step; ``--resume`` keeps those and runs only the steps missing, and ``modgraph train``
skips what a registry already holds up to date, so an interrupted seed resumes where it stopped. Writes
``--out``/paper_tables.{json,md} and paper_fig6.png; then ``python benchmarks/render_results.py``.
Seeds can run as parallel processes (``--seeds 0 --threads 1 --out DIR0``, ``--seeds 1`` ..., each
with its own ``--out`` so none writes over the tables), and one
``--seeds 0 1 2 --resume`` afterwards writes the figures over all of them. ``--resume --redo
gtsrb-text`` trains a scenario's links again (after a change of their defaults), keeping the rest;
``--resume --redo-node fsdd`` trains a node again with every link and figure that uses it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from modgraph import ModGraph, __version__

BASE_MODALITIES = ["mnist", "fmnist", "fsdd"]
EXTRA_MODALITIES = ["gtsrb", "text"]
# Table 1's scenarios: (a, b, pairing); both directions are measured.
LINKS = [("fmnist", "mnist", "index"), ("mnist", "fsdd", "concept"), ("fmnist", "fsdd", "index"),
         ("gtsrb", "text", "concept")]
FRACTIONS = [1.0, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01]
SEMI_FRACTION = 0.05  # Table 1's F-MNIST <-> MNIST is also measured with this fraction paired (the peers' 5%)
QUICK = {"epochs": 1, "recognizer_epochs": 1, "link_epochs": 1}
LABEL = {"mnist": "MNIST", "fmnist": "F-MNIST", "fsdd": "FSDD", "gtsrb": "GTSRB", "text": "text"}
PAPER_LABEL = {**LABEL, "fsdd": "GSC", "text": "GSC"}  # the paper's audio modality was Speech Commands

# The paper, Table 2: recognizer and VAE reconstruction accuracy (%), dim(z) 64.
PAPER_TABLE2 = {"mnist": (97.97, 96.12), "fmnist": (89.22, 80.54), "fsdd": (88.65, 81.93), "gtsrb": (98.53, 95.70)}
# The paper, Table 1 (%): its model ("ours") and the best of the models it compares with.
PAPER_TABLE1_COLUMNS = ["fmnist->mnist", "mnist->fmnist", "mnist->fsdd", "fsdd->mnist", "fmnist->fsdd",
                        "fsdd->fmnist", "gtsrb->text", "text->gtsrb"]
PAPER_TABLE1 = {
    "VAE": [47.36, 41.86, 10.34, 28.61, 12.83, 22.18, 35.93, 19.44],
    "VAE-CG": [82.41, 83.84, 32.46, 66.62, 29.87, 63.79, 28.43, 55.00],
    "JMVAE": [83.49, 88.14, 28.15, 62.31, 47.58, 51.23, 41.02, 65.18],
    "CVA": [76.51, 85.88, 24.61, 65.04, 18.70, 59.73, 31.02, 77.78],
    "MVAE": [62.65, 77.62, 23.04, 46.70, 13.52, 33.24, 28.06, 69.17],
    "ours": [82.02, 94.26, 59.47, 88.66, 43.95, 77.84, 58.89, 77.87],
}
PAPER_TABLE4 = {"direct": 88.66, "cascade": 76.99}
# Issue 2's bars (%), issue 3's where marked.
BARS = {"mnist recognizer": 99.0, "fmnist recognizer": 91.0, "fsdd recognizer": 96.0,
        "mnist reconstruction": 97.0, "fmnist reconstruction": 85.0, "fsdd reconstruction": 90.0,
        "fsdd->mnist": 97.5, "mnist->fsdd": 88.0, "fmnist->mnist": 86.0, "mnist->fmnist": 95.0,
        "fsdd->mnist @0.05": 93.0, "gtsrb recognizer": (98.0, "issue 3"), "gtsrb->text": (95.0, "issue 3"),
        "text->gtsrb": (95.0, "issue 3")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=Path(os.environ.get("MODGRAPH_DATA", "../shared/data")))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--fractions", type=float, nargs="+", default=FRACTIONS,
                        help="paired fractions of fsdd <-> mnist for Figure 6 (1.0 reuses the Table 1 link)")
    parser.add_argument("--budget", choices=["default", "quick"], default="default",
                        help="quick: 1 epoch for every VAE, recognizer and link; for smoke tests only")
    parser.add_argument("--skip-gtsrb-text", action="store_true", help="leave out gtsrb, text and their link")
    parser.add_argument("--resume", action="store_true",
                        help="keep each seed's saved figures and registry; run only the steps missing")
    parser.add_argument("--note", default="", help="a paragraph for paper_tables.md (for example what a run cut)")
    parser.add_argument("--report-only", action="store_true",
                        help="write the tables from each seed's saved figures, training nothing (a seed's missing "
                             "steps show as not measured, or with fewer seeds)")
    parser.add_argument("--redo", nargs="+", default=[], choices=[f"{a}-{b}" for a, b, _ in LINKS],
                        help="with --resume: train these Table 1 links again (and the figures built on them), "
                             "for example after a change of their defaults")
    parser.add_argument("--redo-node", nargs="+", default=[], choices=BASE_MODALITIES + EXTRA_MODALITIES,
                        help="with --resume: train these nodes again, and every link and figure that uses them")
    parser.add_argument("--device", default="cpu", help="where every model trains (cpu, cuda, auto); the "
                                                          "published tables were made on the CPU")
    parser.add_argument("--jobs", type=int, default=1,
                        help="modgraph train --jobs: training jobs at once, sharing the cores out as threads")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads per training job (default: the cores shared out among --jobs; "
                             "1 where seeds run as parallel processes)")
    parser.add_argument("--out", type=Path, default=Path("docs/results"))
    parser.add_argument("--work", type=Path, default=Path("benchmarks/.work/paper"))
    args = parser.parse_args()
    if (args.redo or args.redo_node) and not args.resume:
        parser.error("--redo and --redo-node retrain parts of a resumed run; add --resume")
    args.redo = sorted(set(args.redo) | {f"{a}-{b}" for a, b, _ in LINKS if {a, b} & set(args.redo_node)})
    if args.threads is not None and args.threads < 1:
        parser.error("--threads must be at least 1")
    if any(not 0 < f <= 1 for f in args.fractions):
        parser.error("--fractions must each be in (0, 1]")
    argv = list(sys.argv)
    if "--note" in argv:  # the note is printed below the command, not inside it
        argv[argv.index("--note") + 1] = "..."
    args.command = "python " + " ".join(argv)
    shout_if_quick(args.budget)
    available = ModGraph(data_root=args.data_root, progress=False).available_modalities()
    extras = [] if args.skip_gtsrb_text else [m for m in EXTRA_MODALITIES if m in available]
    if not args.skip_gtsrb_text and len(extras) < len(EXTRA_MODALITIES):
        print(f"gtsrb <-> text left out: plugin(s) for {set(EXTRA_MODALITIES) - set(extras)} not installed")
        extras = []
    modalities = BASE_MODALITIES + extras
    parts = {}
    for seed in args.seeds:
        if args.report_only:
            path = args.work / f"seed{seed}.json"
            if not path.exists():
                sys.exit(f"{path}: no saved figures for seed {seed}; run without --report-only first")
            parts[seed] = json.loads(path.read_text())
            continue
        parts[seed] = run_seed(args, seed, modalities)
        write_outputs(args, parts, modalities)  # after every seed, so a long run leaves figures as it goes
    if args.report_only:
        write_outputs(args, parts, modalities)
    shout_if_quick(args.budget)
    print(f"wrote {args.out / 'paper_tables.json'}, {args.out / 'paper_tables.md'}, {args.out / 'paper_fig6.png'}; "
          "docs/results.md: python benchmarks/render_results.py")


def shout_if_quick(budget: str) -> None:
    if budget == "quick":
        print("\n" + "!" * 78 + "\n!! QUICK BUDGET, NOT THE DEFAULTS: 1 epoch for every VAE, recognizer and link."
              "\n!! A smoke test of this script; its figures say nothing about modgraph.\n" + "!" * 78 + "\n",
              flush=True)


# -- one seed ------------------------------------------------------------------------------
def run_seed(args, seed: int, modalities: list[str]) -> dict:
    """Every figure of one seed; saved to <work>/seed<N>.json after each step."""
    root = args.work / f"seed{seed}"
    part_path = args.work / f"seed{seed}.json"
    part = json.loads(part_path.read_text()) if args.resume and part_path.exists() else None
    if part is not None and part["budget"] != args.budget:
        sys.exit(f"{part_path} was run with --budget {part['budget']}; rerun with that budget or without --resume")
    if part is None:
        shutil.rmtree(root, ignore_errors=True)
        part = {"seed": seed, "budget": args.budget, "nodes": {}, "cross": {}, "cascade": {}, "fractions": {},
                "seconds": {}}
    part["data_root"] = str(args.data_root)
    for name in args.redo_node:  # the node; main() added the scenarios that use it to --redo
        part["nodes"].pop(name, None)
        if name in ("fsdd", "mnist"):
            part["fractions"] = {}
    for scenario in args.redo:
        a, b = scenario.split("-")
        for key in (f"{a}->{b}", f"{b}->{a}"):
            part["cross"].pop(key, None)
        if {a, b} & {"fsdd", "fmnist"} and {a, b} <= {"fsdd", "fmnist", "mnist"}:
            part["cascade"] = {}  # the cascade's hops and its direct edge
        if {a, b} == {"fsdd", "mnist"}:
            part["fractions"].pop("1", None)
        if {a, b} == {"fmnist", "mnist"}:
            part.get("semi", {}).pop("fmnist-mnist", None)

    def save() -> None:
        part_path.parent.mkdir(parents=True, exist_ok=True)
        part_path.write_text(json.dumps(part, indent=2) + "\n")

    def step(key: str, fn):
        if args.command not in part.setdefault("commands", []):  # the commands that measured this seed
            part["commands"].append(args.command)
        start = time.monotonic()
        result = fn()
        # added up over invocations: a resumed step counts the time it took before as well
        part["seconds"][key] = round(part["seconds"].get(key, 0) + time.monotonic() - start, 1)
        print(f"seed {seed}: {key}: {result} ({part['seconds'][key]} s)", flush=True)
        return result

    quick = args.budget == "quick"
    node = {"seed": seed, **({"epochs": QUICK["epochs"], "recognizer_epochs": QUICK["recognizer_epochs"]}
                             if quick else {})}
    link = {"seed": seed, **({"epochs": QUICK["link_epochs"]} if quick else {})}
    mg = ModGraph(registry=root / "registry", data_root=args.data_root, device=args.device)
    for name in args.redo_node:  # retrained by the train below, with every link that uses it
        if mg.registry.node_path(name).exists():
            mg.remove_modality(name)
    for scenario in args.redo:
        a, b = scenario.split("-")
        if mg.graph().has_edge(a, b):
            mg.unlink(a, b)

    # Table 2's nodes, each trained once per seed and reused by every link, and Table 1's links: one spec.
    links = [(a, b, pairing) for a, b, pairing in LINKS if a in modalities and b in modalities]
    spec = {"modalities": {name: node for name in modalities},
            "links": [{"source": a, "target": b, "pairing": pairing, **link} for a, b, pairing in links]}
    step("modgraph train: nodes and Table 1's links", lambda: train_spec(args, mg.registry.root, spec))
    for name in modalities:
        if name not in part["nodes"]:
            m = mg.registry.node_record(name).metrics
            part["nodes"][name] = {"recognizer": m["recognizer_accuracy"],
                                   "reconstruction": m["reconstruction_accuracy"]}
    # Table 1: both directions of each scenario, on the test split.
    for a, b, _ in links:
        if f"{a}->{b}" not in part["cross"]:
            for src, dst in ((b, a), (a, b)):  # a->b last: it marks the scenario done
                part["cross"][f"{src}->{dst}"] = step(f"eval {src} -> {dst}", lambda: mg.evaluate(src, dst, anchor=0)["accuracy"])
    save()

    # Table 4: fsdd -> fmnist -> mnist, decoded and re-encoded at fmnist, against the direct edge.
    if "fsdd->fmnist->mnist" not in part["cascade"]:
        part["cascade"]["fsdd->mnist"] = part["cross"]["fsdd->mnist"]
        part["cascade"]["fsdd->fmnist->mnist"] = step(
            "eval fsdd -> mnist --via fmnist", lambda: mg.evaluate("fsdd", "mnist", via=["fmnist"], anchor=0)["accuracy"])
        save()

    # Figure 6: fsdd <-> mnist at each paired fraction, each into a registry holding copies of the two nodes.
    for fraction in args.fractions:
        key = f"{fraction:g}"
        if key in part["fractions"]:
            continue
        if fraction == 1.0:  # the Table 1 link is the full-pairing one
            part["fractions"][key] = {"fsdd->mnist": part["cross"]["fsdd->mnist"],
                                      "mnist->fsdd": part["cross"]["mnist->fsdd"]}
            save()
            continue
        sweep = copies(args, mg, root / f"sweep-{key}", ("fsdd", "mnist"))
        step(f"modgraph train: link fsdd mnist --paired-fraction {key}", lambda: train_spec(
            args, sweep.registry.root, {"links": [{"source": "fsdd", "target": "mnist", "paired_fraction": fraction,
                                                    **link}]}))
        part["fractions"][key] = {d: sweep.evaluate(*d.split("->"), anchor=0)["accuracy"] for d in ("fsdd->mnist", "mnist->fsdd")}
        save()
    # Table 1's F-MNIST <-> MNIST with 5% paired, beside the peers' 5% runs, into a registry of node copies.
    if "fmnist-mnist" not in part.setdefault("semi", {}) and {"fmnist", "mnist"} <= set(modalities):
        semi = copies(args, mg, root / "semi", ("fmnist", "mnist"))
        key = f"{SEMI_FRACTION:g}"
        step(f"modgraph train: link fmnist mnist --pairing index --paired-fraction {key}", lambda: train_spec(
            args, semi.registry.root, {"links": [{"source": "fmnist", "target": "mnist", "pairing": "index",
                                                   "paired_fraction": SEMI_FRACTION, **link}]}))
        part["semi"]["fmnist-mnist"] = {d: semi.evaluate(*d.split("->"), anchor=0)["accuracy"]
                                        for d in ("fmnist->mnist", "mnist->fmnist")}
        save()
    part["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    save()
    return part


def train_spec(args, registry: Path, spec: dict) -> str:
    """Train a graph spec into ``registry`` through ``modgraph train``: what the registry holds up to date is
    skipped, so an interrupted seed resumes where it stopped. The spec is written beside the registry."""
    path = registry.with_name(registry.name + "-graph.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    resources = {"cpus": threads_per_job(args)}  # the cores shared out among the jobs that run at once
    for job in [*spec.get("modalities", {}).values(), *spec.get("links", [])]:
        job["resources"] = resources
    path.write_text(json.dumps({"args": ["--device", args.device], **spec}, indent=2) + "\n")
    command = [sys.executable, "-m", "modgraph", "train", str(path), "--registry", str(registry), "--data-root",
               str(args.data_root), "--jobs", str(args.jobs)]
    subprocess.run(command, check=True)
    return f"{path.name} trained"


def threads_per_job(args) -> int:
    return args.threads or max(1, (os.cpu_count() or 1) // args.jobs)


def copies(args, mg, root: Path, names: tuple[str, ...]):
    """A registry at ``root`` holding copies of ``names``' nodes from ``mg`` (copied again when retrained there)."""
    (root / "nodes").mkdir(parents=True, exist_ok=True)
    other = ModGraph(registry=root, data_root=args.data_root, device=args.device)
    for name in names:
        path = other.registry.node_path(name)
        if not path.exists() or (other.registry.node_metadata(name).get("created")
                                 != mg.registry.node_metadata(name).get("created")):
            shutil.copy(mg.registry.node_path(name), path)
    return other


# -- figures over seeds ------------------------------------------------------------------------
def flatten(part: dict) -> dict[str, float]:
    flat = {}
    for name, m in part["nodes"].items():
        flat[f"{name} recognizer"] = m["recognizer"]
        flat[f"{name} reconstruction"] = m["reconstruction"]
    flat.update(part["cross"])
    flat.update({k: v for k, v in part["cascade"].items() if "->fmnist->" in k})
    for fraction, figs in part["fractions"].items():
        flat.update({f"{d} @{fraction}": v for d, v in figs.items()})
    for figs in part.get("semi", {}).values():
        flat.update({f"{d} @{SEMI_FRACTION:g}": v for d, v in figs.items()})
    return flat


def aggregate(parts: dict[int, dict]) -> dict[str, dict]:
    """Per figure: mean and sample std (%) over the seeds that measured it."""
    values: dict[str, list[float]] = {}
    for part in parts.values():
        for key, value in flatten(part).items():
            values.setdefault(key, []).append(100 * value)
    return {k: {"mean": statistics.fmean(v), "std": statistics.stdev(v) if len(v) > 1 else None, "n": len(v),
                "values": v} for k, v in values.items()}


def cell(agg: dict, key: str) -> str:
    if key not in agg:
        return "not measured"
    a = agg[key]
    fewer = a["n"] < max(v["n"] for v in agg.values())  # a seed that did not measure it (a cut run)
    if a["std"] is None:
        return f"{a['mean']:.2f} (1 seed)"
    return f"{a['mean']:.2f} ± {a['std']:.2f}" + (f" ({a['n']} seeds)" if fewer else "")


def bar_cell(agg: dict, key: str) -> str:
    if key not in BARS:
        return ""
    bar, source = BARS[key] if isinstance(BARS[key], tuple) else (BARS[key], "issue 2")
    verdict = "" if key not in agg else (" met" if agg[key]["mean"] >= bar else " **not met**")
    return f">= {bar:.1f} ({source}){verdict}"


def tables(agg: dict, modalities: list[str], fractions: list[str]) -> str:
    rows = ["### Table 2: recognizers and VAE reconstructions (test split, %)\n",
            "| modality | recognizer: paper | recognizer: ours | bar | reconstruction: paper | reconstruction: ours "
            "| bar |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for name in modalities:
        paper = PAPER_TABLE2.get(name)
        p_rec, p_vae = (f"{v:.2f}" + (" (GSC)" if name == "fsdd" else "") for v in paper) if paper else ("-", "-")
        rows.append(f"| {LABEL[name]} | {p_rec} | {cell(agg, f'{name} recognizer')} | "
                    f"{bar_cell(agg, f'{name} recognizer')} | {p_vae} | {cell(agg, f'{name} reconstruction')} | "
                    f"{bar_cell(agg, f'{name} reconstruction')} |")
    rows += ["", "### Table 1: cross-modal generation, judged by the target's recognizer (test split, %)\n",
             "| scenario | pairing | paper: ours | paper: best other model | ours | bar |",
             "| --- | --- | --- | --- | --- | --- |"]
    for a, b, pairing in LINKS:
        for src, dst in ((a, b), (b, a)):
            key = f"{src}->{dst}"
            if src not in modalities or dst not in modalities:
                continue
            col = PAPER_TABLE1_COLUMNS.index(key)
            best = max((v[col], m) for m, v in PAPER_TABLE1.items() if m != "ours")
            paper = f"{PAPER_LABEL[src]} -> {PAPER_LABEL[dst]}"
            ours = f"{LABEL[src]} -> {LABEL[dst]}"
            rows.append(f"| {ours} | {pairing} | {PAPER_TABLE1['ours'][col]:.2f}"
                        f"{f' ({paper})' if paper != ours else ''} | {best[0]:.2f} ({best[1]}) | {cell(agg, key)} | "
                        f"{bar_cell(agg, key)} |")
    for src, dst in (("fmnist", "mnist"), ("mnist", "fmnist")):
        key = f"{src}->{dst} @{SEMI_FRACTION:g}"
        if key in agg:
            rows.append(f"| {LABEL[src]} -> {LABEL[dst]}, {100 * SEMI_FRACTION:g}% paired | index | - | - | "
                        f"{cell(agg, key)} | |")
    rows += ["", "### Table 4: cascade against direct (test split, %)\n",
             "| path | paper (GSC) | ours | bar |", "| --- | --- | --- | --- |",
             f"| FSDD -> MNIST, direct | {PAPER_TABLE4['direct']:.2f} | {cell(agg, 'fsdd->mnist')} | "
             f"{bar_cell(agg, 'fsdd->mnist')} |",
             f"| FSDD -> F-MNIST -> MNIST, cascade (index pairings) | {PAPER_TABLE4['cascade']:.2f} | "
             f"{cell(agg, 'fsdd->fmnist->mnist')} | >= 85% of direct (issue 3){ratio(agg)} |"]
    rows += ["", "### Figure 6: FSDD <-> MNIST against the paired fraction (test split, %)\n",
             "| paired fraction | FSDD -> MNIST | bar | MNIST -> FSDD |", "| --- | --- | --- | --- |"]
    for f in fractions:
        bar = bar_cell(agg, "fsdd->mnist") if f == "1" else bar_cell(agg, f"fsdd->mnist @{f}")
        rows.append(f"| {100 * float(f):g}% | {cell(agg, f'fsdd->mnist @{f}')} | {bar} | "
                    f"{cell(agg, f'mnist->fsdd @{f}')} |")
    return "\n".join(rows) + "\n"


def ratio(agg: dict) -> str:
    if "fsdd->mnist" not in agg or "fsdd->fmnist->mnist" not in agg or not agg["fsdd->mnist"]["mean"]:
        return ""
    r = agg["fsdd->fmnist->mnist"]["mean"] / agg["fsdd->mnist"]["mean"]
    return f": {100 * r:.0f}%, {'met' if r >= 0.85 else '**not met**'}"


def plot(agg: dict, fractions: list[str], path: Path, budget: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    xs = [100 * float(f) for f in fractions]
    for direction, label in (("fsdd->mnist", "FSDD -> MNIST"), ("mnist->fsdd", "MNIST -> FSDD")):
        keys = [f"{direction} @{f}" for f in fractions]
        pts = [(x, agg[k]["mean"], agg[k]["std"] or 0.0) for x, k in zip(xs, keys) if k in agg]
        if pts:
            ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts], marker="o", capsize=3,
                        label=label)
    ax.scatter([5], [BARS["fsdd->mnist @0.05"]], marker="_", s=300, color="black", zorder=3,
               label="bar: FSDD -> MNIST at 5%")
    ax.set_xscale("log")
    ax.margins(x=0.08)
    ax.set_xticks(xs, [f"{x:g}" for x in xs])
    ax.minorticks_off()
    ax.set_xlabel("paired fraction of the training samples (%)")
    ax.set_ylabel("recognition accuracy (%)")
    n = max((a["n"] for a in agg.values()), default=0)
    title = f"Figure 6 on FSDD <-> MNIST, mean ± std over {n} seed(s)"
    ax.set_title(title + ("\nQUICK BUDGET, NOT THE DEFAULTS" if budget == "quick" else ""), fontsize=10,
                 color="red" if budget == "quick" else "black")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def cross_figures(agg: dict) -> dict:
    """Cross-generation figures as fractions, keyed like core_bars.json ("fsdd->mnist 5%"): peers.py reads them."""
    cross = {}
    for key, a in agg.items():
        if "->" not in key:
            continue
        direction, _, fraction = key.partition(" @")
        if fraction == "1":  # the same link as the full-pairing figure
            continue
        name = f"{direction} {100 * float(fraction):g}%" if fraction else direction
        cross[name] = {"mean": a["mean"] / 100, "std": None if a["std"] is None else a["std"] / 100, "n": a["n"]}
    return cross


def write_outputs(args, parts: dict[int, dict], modalities: list[str]) -> None:
    agg = aggregate(parts)
    fractions = [f"{f:g}" for f in args.fractions]
    meta = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": platform.platform(),
            "cpus": os.cpu_count(), "threads": threads_per_job(args), "jobs": args.jobs, "torch": torch.__version__,
            "modgraph": __version__, "command": args.command, "data_root": str(args.data_root),
            "budget": args.budget, "seeds": sorted(parts), "modalities": modalities}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "paper_tables.json").write_text(json.dumps(
        {**meta, "cross": cross_figures(agg), "aggregate": agg, "per_seed": {str(s): p for s, p in parts.items()}},
        indent=2) + "\n")
    plot(agg, fractions, args.out / "paper_fig6.png", args.budget)
    body = tables(agg, modalities, fractions)
    quick = args.budget == "quick"
    seconds = {s: round(sum(p["seconds"].values())) for s, p in parts.items()}
    (args.out / "paper_tables.md").write_text(
        "## The paper's tables on our data" + (" (QUICK BUDGET, NOT THE DEFAULTS)" if quick else "") + "\n\n"
        + ("**Quick budget, not the defaults: 1 epoch for every VAE, recognizer and link. A smoke test; these "
           "figures say nothing about modgraph.**\n\n" if quick else "")
        + f"`MODGRAPH_DATA=DATA {args.command}`\n\n"  # DATA: the data root, in the json
        f"{meta['date']} · {meta['machine']}, {meta['cpus']} CPU cores, no GPU · torch {meta['torch']}, modgraph "
        f"{meta['modgraph']} · {meta['jobs']} job(s) at once of {meta['threads']} torch thread(s) each "
        f"(`modgraph train`) · seeds {', '.join(map(str, sorted(parts)))} · "
        f"budget: {'quick (1 epoch each)' if quick else 'the defaults of each modality'} · training and evaluation "
        f"time per seed: {', '.join(f'{s}: {v:,} s' for s, v in seconds.items())} · raw figures: "
        "[paper_tables.json](paper_tables.json)\n\n"
        "Every figure is mean ± sample std over the seeds (the seed sets both training and pairing). Per seed, "
        "each modality's node is trained once and every link reuses it; the paired fractions are linked into a "
        "registry holding copies of the fsdd and mnist nodes, so Table 1's full-pairing edges are those of 100%. "
        "**The paper's audio modality is Google Speech Commands (GSC); ours is FSDD** (spoken digits, 2,500 clips): "
        "the paper's GSC figures are shown beside our FSDD ones, and its GTSRB <-> GSC figures beside our "
        "GTSRB <-> text. The paper's Figure 6 plots F-MNIST -> MNIST, MNIST -> GSC and F-MNIST -> GSC and gives "
        "no numbers in its text, so it has no paper column here. Bars: issue 2's (issue 3's where marked), "
        "compared with the mean.\n\n" + (f"{args.note}\n\n" if args.note else "") + body + "\n![Figure 6: FSDD <-> MNIST against the paired fraction]"
        "(paper_fig6.png)\n")
    print(body, flush=True)


if __name__ == "__main__":
    main()
