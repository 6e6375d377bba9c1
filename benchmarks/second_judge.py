"""Does aiming at faithful targets fool the judge, or make better outputs? A second judge decides.

    python benchmarks/second_judge.py --registry benchmarks/.work/recipe/registry [--out docs/results]

Links trained with ``target_confidence`` (modgraph.learning.targets) choose their targets with the
target's own recognizer, the same recognizer that scores them. This benchmark trains a
second judge for each target modality, an MLP that took no part in any training (another
architecture, another seed, real training data only), and scores every edge of the
registry with both judges, next to the same edge relinked with ``target_confidence 0``
(every target sample, the paper's protocol; into a copy of the registry).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

import torch

from modgraph import ModGraph
from modgraph.learning.splits import split_validation
from modgraph.features.cache import normalized
from modgraph.learning.models import Recognizer, RecognizerConfig
from modgraph.learning.training import TrainSettings, predict, train_recognizer


def train_judge(g: ModGraph, name: str, seed: int) -> tuple[Recognizer, float]:
    """An MLP classifier of the modality's normalised inputs, and its accuracy on the real test split."""
    node = g.node(name)
    train, val = split_validation(g.features(node.modality, "train").originals(), seed)
    test = g.features(node.modality, "test").originals()
    x = {k: normalized(node.modality, f.x, node.stats) for k, f in (("train", train), ("val", val), ("test", test))}
    torch.manual_seed(seed)
    judge = Recognizer(RecognizerConfig(input_shape=node.modality.input_shape, num_classes=len(node.modality.classes),
                                        architecture="mlp", hidden=512, dropout=0.2))
    settings = TrainSettings(epochs=10, batch_size=128, lr=1e-3, kl_weight=0.0, seed=seed, device=g.device,
                             progress=False, description=f"second judge for {name}")
    train_recognizer(judge, x["train"], train.y, x["val"], val.y, settings)
    accuracy = (predict(judge, x["test"]) == test.y).float().mean().item()
    return judge, accuracy


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--registry", type=Path, default=Path("benchmarks/.work/recipe/registry"))
    parser.add_argument("--data-root", type=Path, default=Path(os.environ.get("MODGRAPH_DATA", "../shared/data")))
    parser.add_argument("--work", type=Path, default=Path("benchmarks/.work/second_judge"))
    parser.add_argument("--out", type=Path, default=Path("docs/results"))
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    g = ModGraph(registry=args.registry, data_root=args.data_root, progress=False)
    edges = [(a, b, d) for a, b, d in g.graph().edges(data=True)]
    if not edges:
        raise SystemExit(f"{args.registry} has no edges: run benchmarks/core_bars.py --part recipe first")
    baseline_registry = args.work / "paper-targets"
    shutil.rmtree(baseline_registry, ignore_errors=True)
    shutil.copytree(args.registry, baseline_registry)
    base = ModGraph(registry=baseline_registry, data_root=args.data_root, progress=False)
    for a, b, d in edges:
        t = d["training"]
        print(f"relinking {a} -> {b} with target_confidence 0", flush=True)
        base.link(a, b, pairing=d["pairing"], paired_fraction=float(d["paired_fraction"]), epochs=t["epochs"],
                  batch_size=t["batch_size"], lr=t["lr"], kl_weight=t["kl_weight"], seed=t["seed"],
                  candidates=t.get("candidates"), target_confidence=0.0, one_way=True)

    judges = {}
    for name in sorted({b for _, b, _ in edges}):
        judges[name] = train_judge(g, name, args.seed)
        print(f"second judge for {name}: {100 * judges[name][1]:.2f}% on the real test split", flush=True)

    rows = []
    for a, b, d in edges:
        judge = judges[b][0]
        row = {"source": a, "target": b, "target_confidence": d["training"].get("target_confidence", 0.0)}
        for key, graph in (("paper_targets", base), ("faithful_targets", g)):
            row[key] = {"own_judge": graph.evaluate(a, b, anchor=0)["accuracy"],
                        "second_judge": graph.evaluate(a, b, judge=judge, anchor=0)["accuracy"]}
        rows.append(row)
        print(json.dumps(row), flush=True)
    result = {"registry": str(args.registry), "seed": args.seed,
              "judges": {k: {"architecture": "mlp 512, dropout 0.2, 10 epochs", "test_accuracy": v[1]}
                         for k, v in judges.items()},
              "edges": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "second_judge.json").write_text(json.dumps(result, indent=2))
    (args.out / "second_judge.md").write_text(render(result))
    print(render(result))


def render(result: dict) -> str:
    pct = lambda v: f"{100 * v:.2f}"  # noqa: E731
    lines = [
        "## Faithful targets under a second judge",
        "",
        "`python benchmarks/second_judge.py --registry benchmarks/.work/recipe/registry`: each edge of the recipe's "
        "registry (trained with its target's default `target_confidence`) against the same edge relinked with "
        "`target_confidence 0` (every target sample, as the paper). *Own judge* is the target's recognizer, which "
        "also chose the faithful targets; the *second judge* is an MLP trained on the real data alone, another "
        "architecture and seed, that took no part in any training.",
        "",
        "| second judge | accuracy on the real test split |",
        "| --- | --- |",
    ]
    lines += [f"| {k} ({v['architecture']}) | {pct(v['test_accuracy'])} |" for k, v in result["judges"].items()]
    lines += ["", "| direction | target confidence | all targets: own / second judge | "
              "faithful targets: own / second judge |", "| --- | --- | --- | --- |"]
    for r in result["edges"]:
        p, f = r["paper_targets"], r["faithful_targets"]
        lines.append(f"| {r['source']} -> {r['target']} | {r['target_confidence']} | "
                     f"{pct(p['own_judge'])} / {pct(p['second_judge'])} | "
                     f"{pct(f['own_judge'])} / {pct(f['second_judge'])} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
