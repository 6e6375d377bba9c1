"""Issue 3's bars on the real data, with defaults: prints a markdown table, writes JSON and markdown.

    python benchmarks/scale_bars.py [--data-root ../shared/data] [--out docs/results] [--base REGISTRY]

Into a fresh registry holding the mnist, fmnist and fsdd nodes (copied from ``--base``,
default the recipe registry of ``benchmarks/core_bars.py``; trained here when absent):
GTSRB and text nodes, text <-> mnist and gtsrb <-> text links (growth without
retraining: the hashes of every existing file are compared before and after), the
cascade fsdd -> fmnist -> mnist against direct fsdd -> mnist (Table 4), GTSRB with a
256-dim latent linked to text (ours-flex), and a smoke run of gsc on the 300-clip
Speech Commands sample.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from modgraph import ModGraph, __version__


def timed(fn, *args, **kwargs):
    start = time.monotonic()
    result = fn(*args, **kwargs)
    return result, round(time.monotonic() - start, 1)


def hashes(registry: Path) -> dict[str, str]:
    return {str(p.relative_to(registry)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(registry.rglob("*.safetensors"))}


def acc(mg: ModGraph, source: str, target: str, via: list[str] | None = None) -> float:
    return round(mg.evaluate(source, target, via=via)["accuracy"], 4)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-root", type=Path, default=Path(os.environ.get("MODGRAPH_DATA", "../shared/data")))
    parser.add_argument("--out", type=Path, default=Path("docs/results"))
    parser.add_argument("--work", type=Path, default=Path("benchmarks/.work/scale"))
    parser.add_argument("--base", type=Path, default=Path("benchmarks/.work/recipe/registry"),
                        help="a registry whose mnist, fmnist and fsdd nodes are reused")
    parser.add_argument("--render-only", action="store_true")
    args = parser.parse_args()
    if not args.render_only:
        run(args)
    render(args)


def run(args) -> None:
    shutil.rmtree(args.work, ignore_errors=True)
    reg = args.work / "registry"
    (reg / "nodes").mkdir(parents=True)
    fig: dict = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": platform.platform(),
                 "cpus": os.cpu_count(), "threads": torch.get_num_threads(), "torch": torch.__version__,
                 "modgraph": __version__, "command": "python " + " ".join(sys.argv), "timings_s": {}}
    t, a = fig["timings_s"], {}
    fig["accuracy"] = a
    mg = ModGraph(registry=reg, data_root=args.data_root, device="cpu")
    for name in ("mnist", "fmnist", "fsdd"):
        base = args.base / "nodes" / f"{name}.safetensors"
        if base.exists():
            shutil.copy(base, reg / "nodes" / base.name)
        else:
            _, t[f"add-modality {name}"] = timed(mg.add_modality, name)

    # Table 4: cascade against direct.
    _, t["link fsdd mnist"] = timed(mg.link, "fsdd", "mnist")
    _, t["link fsdd fmnist --pairing index"] = timed(mg.link, "fsdd", "fmnist", pairing="index")
    _, t["link fmnist mnist --pairing index"] = timed(mg.link, "fmnist", "mnist", pairing="index")
    a["fsdd->mnist direct"] = acc(mg, "fsdd", "mnist")
    a["fsdd->fmnist"] = acc(mg, "fsdd", "fmnist")
    a["fmnist->mnist"] = acc(mg, "fmnist", "mnist")
    a["fsdd->fmnist->mnist cascade"] = acc(mg, "fsdd", "mnist", via=["fmnist"])

    # GTSRB, then text grown onto the graph: no existing byte may change.
    gt, t["add-modality gtsrb"] = timed(mg.add_modality, "gtsrb")
    a["gtsrb recognizer"] = round(gt["metrics"]["recognizer_accuracy"], 4)
    a["gtsrb reconstruction"] = round(gt["metrics"]["reconstruction_accuracy"], 4)
    before = hashes(reg)
    tx, t["add-modality text"] = timed(mg.add_modality, "text")
    a["text recognizer"] = round(tx["metrics"]["recognizer_accuracy"], 4)
    _, t["link gtsrb text"] = timed(mg.link, "gtsrb", "text")
    after = hashes(reg)
    changed = sorted(k for k, v in before.items() if after.get(k) != v)
    names = [n for n in mg.graph().nodes if n != "text"]
    fig["growth"] = {"files_before": len(before), "changed": changed,
                     "text_reaches": {n: mg.route("text", n) for n in names},
                     "reaches_text": {n: mg.route(n, "text") for n in names}}
    a["gtsrb->text"] = acc(mg, "gtsrb", "text")
    a["text->gtsrb"] = acc(mg, "text", "gtsrb")
    _, t["link text mnist"] = timed(mg.link, "text", "mnist")
    a["text->mnist"] = acc(mg, "text", "mnist")
    a["mnist->text"] = acc(mg, "mnist", "text")

    # Ours-flex: GTSRB with a 256-dim latent, linked to the same 32-dim text node.
    flex = args.work / "flex"
    (flex / "nodes").mkdir(parents=True)
    shutil.copy(reg / "nodes" / "text.safetensors", flex / "nodes" / "text.safetensors")
    fm = ModGraph(registry=flex, data_root=args.data_root, device="cpu")
    g256, t["add-modality gtsrb --latent-dim 256"] = timed(fm.add_modality, "gtsrb", latent_dim=256)
    a["gtsrb-256 reconstruction"] = round(g256["metrics"]["reconstruction_accuracy"], 4)
    _, t["link gtsrb text (gtsrb 256-dim)"] = timed(fm.link, "gtsrb", "text")
    a["gtsrb-256->text"] = acc(fm, "gtsrb", "text")
    a["text->gtsrb-256"] = acc(fm, "text", "gtsrb")

    # Speech Commands: the 300-clip v0.01 sample only supports a smoke run.
    gsc = args.work / "gsc"
    (gsc / "nodes").mkdir(parents=True)
    shutil.copy(reg / "nodes" / "mnist.safetensors", gsc / "nodes" / "mnist.safetensors")
    gm = ModGraph(registry=gsc, data_root=args.data_root, device="cpu")
    gs, t["add-modality gsc --option version=v0.01"] = timed(gm.add_modality, "gsc", options={"version": "v0.01"})
    _, t["link gsc mnist"] = timed(gm.link, "gsc", "mnist")
    res = gm.evaluate("gsc", "mnist")
    fig["gsc_sample"] = {"recognizer": round(gs["metrics"]["recognizer_accuracy"], 4),
                         "gsc->mnist": round(res["accuracy"], 4), "n": res["n"]}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scale_bars.json").write_text(json.dumps(fig, indent=2))


def render(args) -> None:
    fig = json.loads((args.out / "scale_bars.json").read_text())
    a, g = fig["accuracy"], fig["growth"]
    pct = lambda k: f"{100 * a[k]:.2f}"  # noqa: E731
    ratio = a["fsdd->fmnist->mnist cascade"] / a["fsdd->mnist direct"]
    unreachable = [n for n, p in {**g["text_reaches"], **g["reaches_text"]}.items() if not p]
    rows = [
        ("GTSRB recognizer (10 classes, test)", ">= 98.0", pct("gtsrb recognizer")),
        ("text -> mnist / text -> gtsrb", ">= 98.0 / 95.0", f"{pct('text->mnist')} / {pct('text->gtsrb')}"),
        ("gtsrb -> text", ">= 95.0", pct("gtsrb->text")),
        ("fsdd -> fmnist -> mnist (cascade) vs direct fsdd -> mnist", "cascade >= 85% of direct",
         f"{pct('fsdd->fmnist->mnist cascade')} vs {pct('fsdd->mnist direct')}: {100 * ratio:.0f}% "
         f"(hops: fsdd->fmnist {pct('fsdd->fmnist')}, fmnist->mnist {pct('fmnist->mnist')})"),
        ("gtsrb `--latent-dim 256` linked to text: gtsrb->text / text->gtsrb",
         "within 2 points of 64-dim or better",
         f"{pct('gtsrb-256->text')} / {pct('text->gtsrb-256')} (64-dim: {pct('gtsrb->text')} / {pct('text->gtsrb')})"),
        ("adding text and linking it to gtsrb", "no byte of an existing file changes",
         f"{len(g['changed'])} of {g['files_before']} files changed; text reaches and is reached from "
         f"{'every node' if not unreachable else 'all but ' + ', '.join(unreachable)}"),
        ("gsc on the 300-clip sample", "runs to the end, eval reports a figure",
         f"recognizer {100 * fig['gsc_sample']['recognizer']:.1f}, gsc->mnist "
         f"{100 * fig['gsc_sample']['gsc->mnist']:.1f} on {fig['gsc_sample']['n']} test clips"),
    ]
    table = "| what | bar | measured |\n| --- | --- | --- |\n" + "\n".join(f"| {w} | {b} | {m} |" for w, b, m in rows)
    extra = "\n".join(f"| {k} | {100 * v:.2f} |" for k, v in a.items())
    timings = "\n".join(f"| {k} | {v:.0f} |" for k, v in fig["timings_s"].items())
    (args.out / "scale_bars.md").write_text(
        "## Issue 3: all the paper's modalities and its scalability claims\n\n"
        f"Command: `{fig['command']}`. {fig['date']}, {fig['machine']}, {fig['cpus']} CPU cores, "
        f"torch {fig['torch']}, modgraph {fig['modgraph']}. Defaults, seed 0; the mnist, fmnist and fsdd nodes "
        "are the recipe's.\n\n" + table +
        "\n\n| accuracy (test split) | % |\n| --- | --- |\n" + extra +
        "\n\n| step | seconds |\n| --- | --- |\n" + timings + "\n")
    print(table)


if __name__ == "__main__":
    main()
