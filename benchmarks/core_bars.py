"""Issue 2's bars on the real data, with defaults: prints a markdown table, writes JSON.

    python benchmarks/core_bars.py [--data-root ../shared/data] [--out docs/results] [--skip-loso]

Runs the recipe (three add-modality, two link) into a fresh registry and times it, then
the F-MNIST <-> MNIST index link, the 5%-paired FSDD link, leave-one-speaker-out FSDD ->
MNIST, and the start-up and latency figures (`modgraph --help`, one wav -> PNG).
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

import torch

from modgraph import ModGraph, __version__

SPEAKERS = ["george", "jackson", "lucas", "nicolas", "yweweler"]


def loso_file(out: Path, modality: str) -> Path:
    """Where leave-one-speaker-out's figures for ``modality`` go (voices.py reads them there)."""
    return out / ("loso.json" if modality == "fsdd" else f"loso_{modality}.json")


def timed(fn, *args, **kwargs):
    start = time.monotonic()
    result = fn(*args, **kwargs)
    return result, time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-root", type=Path, default=Path(os.environ.get("MODGRAPH_DATA", "../shared/data")))
    parser.add_argument("--out", type=Path, default=Path("docs/results"))
    parser.add_argument("--work", type=Path, default=Path("benchmarks/.work"))
    parser.add_argument("--part", choices=["all", "recipe", "loso", "semi", "render"], default="all",
                        help="recipe and loso can run as two processes; render merges their JSON; semi measures "
                             "the 5%%-paired row again on the recipe's nodes (after a change to link)")
    parser.add_argument("--skip-loso", action="store_true")
    parser.add_argument("--note", help="a sentence about the run (e.g. what else loaded the machine), kept in the JSON")
    parser.add_argument("--speakers", nargs="+", choices=SPEAKERS, default=SPEAKERS,
                        help="leave-one-speaker-out over these speakers only (all five by default)")
    parser.add_argument("--loso-modality", choices=["fsdd", "spoken"], default="fsdd",
                        help="the spoken-digit modality left-one-speaker-out trains (spoken: to loso_spoken.json)")
    parser.add_argument("--reuse-nodes", type=Path, metavar="REGISTRY",
                        help="copy the mnist, fmnist and fsdd nodes from REGISTRY (e.g. a previous run's) and only "
                             "relink; their metrics and add-modality times come from the previous core_bars.json")
    args = parser.parse_args()
    if args.part in ("all", "loso") and not args.skip_loso:
        loso(args)
    if args.part in ("all", "recipe"):
        recipe(args)
    if args.part == "semi":
        semi_again(args)
    elif args.note:
        fig = json.loads((args.out / "core_bars.json").read_text())
        fig["note"] = args.note
        (args.out / "core_bars.json").write_text(json.dumps(fig, indent=2))
    if args.part in ("all", "render", "recipe", "semi"):
        render(args)


def loso(args) -> None:
    """Leave one speaker out: the FSDD VAE and both associators never see that speaker."""
    work = args.work / "loso"
    shutil.rmtree(work, ignore_errors=True)
    # The recipe's MNIST node, once that part has written it (run side by side); else train one.
    recipe_mnist = args.work / "recipe" / "registry" / "nodes" / "mnist.safetensors"
    if args.part == "loso":
        while not recipe_mnist.exists():
            time.sleep(10)
        (work / "base" / "nodes").mkdir(parents=True)
        shutil.copy(recipe_mnist, work / "base" / "nodes" / "mnist.safetensors")
    else:
        ModGraph(registry=work / "base", data_root=args.data_root, device="cpu").add_modality("mnist")
    name = args.loso_modality
    fig = {"loso": {}, "loso_date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "loso_how": "`core_bars.py --part loso" + ("" if name == "fsdd" else f" --loso-modality {name}") + "`"}
    for speaker in args.speakers:
        lreg = work / speaker
        shutil.copytree(work / "base", lreg, ignore=shutil.ignore_patterns(".lock"))
        lm = ModGraph(registry=lreg, data_root=args.data_root, device="cpu", progress=False)
        # FSDD's own recognizer plays no part here (MNIST's judges), so one epoch of it will do.
        lm.add_modality(name, exclude={"speaker": [speaker]}, recognizer_epochs=1)
        lm.link(name, "mnist", exclude={"speaker": [speaker]}, one_way=True)
        res = lm.evaluate(name, "mnist", split="all", include={"speaker": [speaker]}, anchor=0)
        fig["loso"][speaker] = {"accuracy": res["accuracy"], "n": res["n"]}
        print("loso", speaker, res["accuracy"], res["n"], flush=True)
    fig["loso_mean"] = sum(v["accuracy"] for v in fig["loso"].values()) / len(args.speakers)
    args.out.mkdir(parents=True, exist_ok=True)
    loso_file(args.out, name).write_text(json.dumps(fig, indent=2))


def recipe(args) -> None:
    work = args.work / "recipe"
    shutil.rmtree(work, ignore_errors=True)
    reg = work / "registry"
    mg = ModGraph(registry=reg, data_root=args.data_root, device="cpu")
    args.work = work
    fig: dict = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": platform.platform(),
                 "cpus": os.cpu_count(), "threads": torch.get_num_threads(), "torch": torch.__version__,
                 "modgraph": __version__, "command": "python " + " ".join(sys.argv), "timings_s": {}}
    t = fig["timings_s"]

    # The recipe with defaults (features cached beforehand, as after a first run).
    for name in ("mnist", "fmnist", "fsdd"):
        settled, _notes = mg.modality(name).for_data(args.data_root)  # as add-modality will train it
        for split in ("train", "test"):
            mg.features(settled, split)
    recipe_start = time.monotonic()
    nodes = {}
    if args.reuse_nodes:
        previous = json.loads((args.out / "core_bars.json").read_text())
        (reg / "nodes").mkdir(parents=True, exist_ok=True)
        for name in ("mnist", "fmnist", "fsdd"):
            shutil.copy(args.reuse_nodes / "nodes" / f"{name}.safetensors", reg / "nodes" / f"{name}.safetensors")
            nodes[name] = {"metrics": previous["nodes"][name]}
            t[f"add-modality {name}"] = previous["timings_s"][f"add-modality {name}"]
        fig["nodes_from"] = {"registry": str(args.reuse_nodes), "date": previous["date"]}
        recipe_start -= sum(t.values())  # the recipe total counts the reused nodes' measured times
    for name in ("mnist", "fmnist", "fsdd"):
        if name not in nodes:
            nodes[name], t[f"add-modality {name}"] = timed(mg.add_modality, name)
            print(name, nodes[name]["metrics"], flush=True)
    links = {}
    links["fsdd-mnist"], t["link fsdd mnist"] = timed(mg.link, "fsdd", "mnist")
    links["fmnist-mnist"], t["link fmnist mnist --pairing index"] = timed(mg.link, "fmnist", "mnist", pairing="index")
    t["recipe total"] = time.monotonic() - recipe_start
    print(links, flush=True)
    fig["nodes"] = {n: r["metrics"] for n, r in nodes.items()}
    fig["cross"] = {k: v["accuracy"] for r in links.values() for k, v in r["metrics"].items()}

    fig["cross"].update(semi_link(reg, args.work / "semi", args.data_root))

    # Start-up and latency, in new processes.
    exe = Path(sys.executable).with_name("modgraph")
    start = time.monotonic()
    subprocess.run([str(exe), "--help"], check=True, capture_output=True)
    t["modgraph --help"] = time.monotonic() - start
    wav = args.data_root / "fsdd" / "recordings" / "7_jackson_3.wav"
    start = time.monotonic()
    subprocess.run([str(exe), "translate", "--registry", str(reg), "--from", "fsdd", "--to", "mnist", str(wav),
                    "-o", str(args.work / "seven.png")], check=True, capture_output=True)
    t["translate one wav -> png (new process)"] = time.monotonic() - start

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "core_bars.json").write_text(json.dumps(fig, indent=2))
    print(json.dumps(fig["timings_s"]))


def semi_link(registry: Path, work: Path, data_root: Path) -> dict:
    """Semi-supervised: 5% of each modality's training samples in pairs, in a copy of the registry's nodes.

    Both directions' accuracies, and what label spreading added to fsdd's sources (or None).
    """
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(registry, work, ignore=shutil.ignore_patterns("edges", ".lock"))
    r = ModGraph(registry=work, data_root=data_root, device="cpu").link("fsdd", "mnist", paired_fraction=0.05)
    return {"fsdd->mnist 5%": r["metrics"]["fsdd->mnist"]["accuracy"],
            "mnist->fsdd 5%": r["metrics"]["mnist->fsdd"]["accuracy"],
            "5% pseudo labels": r["metrics"]["fsdd->mnist"].get("pseudo_labels")}


def semi_again(args) -> None:
    """The 5% row again on the recipe's nodes; the rest of core_bars.json stays as measured."""
    fig = json.loads((args.out / "core_bars.json").read_text())
    fig["cross"].update(semi_link(args.work / "recipe" / "registry", args.work / "semi", args.data_root))
    fig["semi"] = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "threads": torch.get_num_threads(),
                   "command": "python " + " ".join(a if a != args.note else "..." for a in sys.argv),
                   "note": args.note or ""}
    (args.out / "core_bars.json").write_text(json.dumps(fig, indent=2))


def render(args) -> None:
    fig = json.loads((args.out / "core_bars.json").read_text())
    loso_path = args.out / "loso.json"
    if loso_path.exists():
        fig.update(json.loads(loso_path.read_text()))
    t = fig["timings_s"]
    n, c = fig["nodes"], fig["cross"]
    rows = [
        ("recognizer MNIST / F-MNIST / FSDD", ">= 99.0 / 91.0 / 96.0",
         " / ".join(f"{100 * n[k]['recognizer_accuracy']:.2f}" for k in ("mnist", "fmnist", "fsdd"))),
        ("VAE reconstruction MNIST / F-MNIST / FSDD", ">= 97.0 / 85.0 / 90.0",
         " / ".join(f"{100 * n[k]['reconstruction_accuracy']:.2f}" for k in ("mnist", "fmnist", "fsdd"))),
        ("FSDD -> MNIST", ">= 97.5", f"{100 * c['fsdd->mnist']:.2f}"),
        ("MNIST -> FSDD", ">= 88.0", f"{100 * c['mnist->fsdd']:.2f}"),
        ("F-MNIST -> MNIST / MNIST -> F-MNIST (index)", ">= 86.0 / 95.0",
         f"{100 * c['fmnist->mnist']:.2f} / {100 * c['mnist->fmnist']:.2f}"),
        ("FSDD -> MNIST, paired fraction 0.05" + (f" ({fig['semi']['date'][:10]}, see below)" if "semi" in fig else ""),
         ">= 93.0", f"{100 * c['fsdd->mnist 5%']:.2f}"
         + (f" (sources: the paired rows and {c['5% pseudo labels']['rows']} labelled by spreading"
            + (f" balanced within each {c['5% pseudo labels']['balanced_within']}"
               if c['5% pseudo labels'].get("balanced_within") else "")
            + f", {100 * c['5% pseudo labels']['accuracy']:.1f}% of them right)" if c.get("5% pseudo labels") else "")),
    ]
    if "loso" in fig:
        held_out = len(fig["loso"])
        rows.append((f"FSDD -> MNIST leave-one-speaker-out (mean of {held_out} speaker{'s' * (held_out > 1)}"
                     + (f", {fig['loso_date'][:10]}" if "loso_date" in fig else "") + ")", ">= 75.0",
                     f"{100 * fig['loso_mean']:.2f} (" + ", ".join(f"{s} {100 * v['accuracy']:.1f}"
                                                                 for s, v in fig["loso"].items()) + ")"))
    rows += [("recipe (3 add-modality + 2 link), defaults", "<= 1200 s", f"{t['recipe total']:.0f} s"),
             ("`modgraph --help`", "< 1 s", f"{t['modgraph --help']:.2f} s"),
             ("translate one wav -> PNG, new process", "< 5 s", f"{t['translate one wav -> png (new process)']:.2f} s")]
    table = "| what | bar | measured |\n| --- | --- | --- |\n" + "\n".join(f"| {a} | {b} | {m} |" for a, b, m in rows)
    timings = "\n".join(f"| {k} | {v:.1f} |" for k, v in t.items())
    command = fig.get("command", "python benchmarks/core_bars.py --part recipe & "
                                 "python benchmarks/core_bars.py --part loso; wait; "
                                 "python benchmarks/core_bars.py --part render")
    # Only this benchmark's section; render_results assembles docs/results.md from every section.
    (args.out / "core_bars.md").write_text(
        "## Issue 2's bars, defaults, one seed (0)\n\n"
        f"`MODGRAPH_DATA={args.data_root} {command}`\n\n"
        f"{fig['date']} · {fig['machine']}, {fig['cpus']} CPU cores, no GPU · torch {fig['torch']}, "
        f"modgraph {fig['modgraph']} · torch threads per process: {fig.get('threads')} · raw figures: "
        "[core_bars.json](core_bars.json), [loso.json](loso.json)\n\n"
        "Data: full MNIST and Fashion-MNIST, FSDD 2,500 clips, official splits. "
        + (f"The nodes (and their add-modality times) are those of the run of {fig['nodes_from']['date']}, "
           "reused with `--reuse-nodes`; the links were retrained. " if "nodes_from" in fig else "")
        + (f"{fig['note']} " if fig.get("note") else "")
        + (f"Leave-one-speaker-out is from the run of {fig['loso_date']}"
           + (f" ({fig['loso_note']}). " if fig.get("loso_note") else ". ") if fig.get("loso_date") else
           "Leave-one-speaker-out ran as a second process beside the recipe (`--part loso`). ")
        + "Timings are those of the machine as it was then (see the note). "
        + (f"The 5%-paired row was measured again on {fig['semi']['date']} on the same nodes with "
           f"`{fig['semi']['command']}` ({fig['semi']['threads']} torch thread(s)){': ' + fig['semi']['note'] if fig['semi']['note'] else ''}. "
           if "semi" in fig else "")
        + "\n\n"
        "Recognition accuracy on each test split, in %. The recipe is `add-modality mnist`, "
        "`add-modality fmnist`, `add-modality fsdd`, `link fsdd mnist`, `link fmnist mnist --pairing index`; "
        "the 5% row is `link fsdd mnist --paired-fraction 0.05`; leave-one-speaker-out trains the FSDD VAE and "
        "both associators without one speaker (`--exclude speaker=NAME`) and evaluates on all 500 of that "
        "speaker's clips (`eval --split all --include speaker=NAME`).\n\n"
        + table + "\n\n### Timings (s)\n\n| step | seconds |\n| --- | --- |\n" + timings + "\n")
    print(table)
    from render_results import write  # benchmarks/ is on sys.path when this runs as a script

    print(f"wrote {args.out / 'core_bars.md'} and {write(args.out, args.out.parent / 'results.md')}")


if __name__ == "__main__":
    main()
