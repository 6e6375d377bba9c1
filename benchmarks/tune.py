"""Issue 32's tune bar: ``modgraph tune`` repairs a deliberately badly-configured MNIST.

    nice python benchmarks/tune.py --data-root DATA [--train-rows 10000] [--trials 20] [--out docs/results]

Three runs on the same subset of MNIST's training rows (the first ``--train-rows`` of a fixed
shuffle; the full 10,000-image test split): ``add-modality`` with the shipped defaults (the
baseline), with kl_weight 20 (the bad copy), and ``tune`` of the bad copy with ``--apply``,
which trains the best settings it found through ``add-modality``. The bar: the applied node's
test reconstruction accuracy within 2 points of the baseline's. Writes ``tune.json`` and ``tune.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

from modgraph import __version__, hookimpl  # first: modgraph sets OMP_WAIT_POLICY before torch loads

import torch  # noqa: E402
from modgraph.api import ModGraph
from modgraph.learning.tuning import trial_line, trial_table, tune
from modgraph.plugins import PluginHost
from modgraph.settings import NodeSettings, TuneSettings

BAD_KL_WEIGHT = 20.0


def subset_modality(train_rows: int, test_rows: int, kl_weight: float | None):
    """MNIST reading ``train_rows`` training and ``test_rows`` test rows (fixed draws), kl_weight changed when given."""
    from modgraph_vision.mnist import MNIST

    class Subset(MNIST):
        feature_version = f"{MNIST.feature_version}-draw{train_rows}-{test_rows}"  # its own feature cache entries
        training_defaults = MNIST.training_defaults if kl_weight is None else \
            MNIST.training_defaults.model_copy(update={"kl_weight": kl_weight})

        def load_features(self, root, split, download=False):
            features = super().load_features(root, split, download)
            rows = train_rows if split == "train" else test_rows
            keep = torch.randperm(len(features), generator=torch.Generator().manual_seed(0))[:rows]
            return features.subset(keep.sort().values)

    return Subset()


def graph(work: Path, tag: str, data_root: Path, modality) -> ModGraph:
    class Plugin:
        @staticmethod
        @hookimpl
        def register_modalities(register):
            register(modality)

    host = PluginHost(load_entry_points=False)
    host.add_plugin(Plugin, name=f"tune-bench-{tag}", distribution="modgraph-vision (benchmark copy)")
    return ModGraph(registry=work / tag / "registry", data_root=data_root, cache_dir=work / "cache", device="cpu",
                    progress=False, plugins=host)


def add(mg: ModGraph, settings: NodeSettings | None = None) -> dict:
    start = time.monotonic()
    report = mg.add_modality("mnist", settings or NodeSettings())
    m = report["metrics"]
    return {"test_reconstruction": m["reconstruction_accuracy"], "val_reconstruction": m["val_reconstruction_accuracy"],
            "recognizer": m["recognizer_accuracy"], "seconds": round(time.monotonic() - start, 1)}


def markdown(result: dict) -> str:
    b, bad, t = result["baseline"], result["bad"], result["tuned"]
    pct = lambda v: f"{100 * v:.2f}%"  # noqa: E731
    lines = [
        "# `modgraph tune` repairs a badly-configured MNIST",
        "",
        f"Measured {result['date']} on {result['machine']} (torch {result['torch']}, modgraph {result['modgraph']}; "
        f"{result['threads']} threads, under `nice`, on a machine shared with other work), with:",
        "",
        f"    {result['command']}",
        "",
        f"Every run reads the same subset of MNIST: {result['train_rows']:,} training rows (a fixed random draw; "
        f"10% of them are the validation split) and {result['test_rows']:,} test rows (a fixed random draw), to keep "
        "the benchmark cheap on a shared 2-core machine. The figures are therefore lower than those of a node "
        "trained on all 60,000 rows; the baseline is measured on the same subset. Every run trains "
        f"{result['epochs']} epochs (the shipped default, fixed on the command line, so not searched); tune "
        "searched the core search space's other settings (latent size, kl_weight, learning rate, batch size).",
        "",
        "| run | settings | validation reconstruction | test reconstruction | seconds |",
        "| --- | --- | --- | --- | --- |",
        f"| shipped defaults (baseline) | {result['baseline_settings']} | {pct(b['val_reconstruction'])} | "
        f"{pct(b['test_reconstruction'])} | {b['seconds']} |",
        f"| bad copy | kl_weight {BAD_KL_WEIGHT:g}, the rest as shipped | {pct(bad['val_reconstruction'])} | "
        f"{pct(bad['test_reconstruction'])} | {bad['seconds']} |",
        f"| tuned from the bad copy (`--apply`) | {result['tuned_settings']} | {pct(t['val_reconstruction'])} | "
        f"{pct(t['test_reconstruction'])} | {t['seconds']} |",
        "",
        "Seconds: add-modality's wall time for the first two rows; for the tuned row, the best trial's (its "
        "`--apply` is inside the tuning time below).",
        "",
        f"Tuning ran {result['trials_run']} trials ({result['complete']} complete, {result['pruned']} pruned) in "
        f"{result['tune_seconds'] / 60:.1f} minutes; the best was trial {result['best_trial']}. "
        f"Test reconstruction of the tuned node minus the baseline's: {100 * result['gap']:+.2f} points "
        f"(bar: within 2 points): **{'met' if result['bar_met'] else 'not met'}**.",
        "",
        "The shipped defaults were chosen for all 60,000 rows; on a 2,000-row subset a smaller batch (more "
        "steps an epoch) and a lower kl_weight do better, which is why the tuned node beats them here. The claim "
        "measured is that tune repairs a configuration at chance without hand tuning, not that it beats the "
        "shipped defaults on the full data.",
        "",
        "The trials (figure: validation reconstruction accuracy as the recognizer reads it; a pruned trial shows "
        "its last reported figure and the quarter of its epochs it reached):",
        "",
        "```",
        *result["table"],
        "```",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-root", type=Path, default=Path(os.environ.get("MODGRAPH_DATA", "../shared/data")))
    parser.add_argument("--train-rows", type=int, default=2000)
    parser.add_argument("--test-rows", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=8, help="fixed for every run (the shipped default: 8)")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--minutes", type=float, default=None, help="stop starting trials after this many minutes")
    parser.add_argument("--out", type=Path, default=Path("docs/results"))
    parser.add_argument("--work", type=Path, default=Path("benchmarks/.work/tune"))
    args = parser.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    baseline_mg = graph(args.work, "baseline", args.data_root, subset_modality(args.train_rows, args.test_rows, None))
    bad_mg = graph(args.work, "bad", args.data_root, subset_modality(args.train_rows, args.test_rows, BAD_KL_WEIGHT))
    fixed = NodeSettings(epochs=args.epochs)
    baseline = add(baseline_mg, fixed)
    print(f"baseline (shipped defaults): {baseline}", flush=True)
    bad = add(bad_mg, fixed)
    print(f"bad copy (kl_weight {BAD_KL_WEIGHT:g}): {bad}", flush=True)
    shutil.rmtree(args.work / "bad" / "registry")  # tune --apply trains into an empty registry
    start = time.monotonic()
    report = tune(bad_mg, ["mnist"], fixed,
                  TuneSettings(trials=args.trials, minutes=args.minutes, sampler_seed=0, apply=True,
                               storage=f"sqlite:///{(args.work / 'study.db').absolute()}",
                               output=str(args.work / "mnist-tuned.toml")),
                  say=lambda line: print(line, flush=True))
    tune_seconds = time.monotonic() - start
    applied = report["applied"]["metrics"]
    tuned = {"test_reconstruction": applied["reconstruction_accuracy"],
             "val_reconstruction": applied["val_reconstruction_accuracy"],
             "recognizer": applied["recognizer_accuracy"], "seconds": None}
    # the best trial's training time (its add-modality under --apply is inside tune_seconds)
    tuned["seconds"] = round(report["best"]["seconds"], 1)
    states = [t["state"] for t in report["trials"]]
    shipped = subset_modality(args.train_rows, args.test_rows, None)
    d = shipped.training_defaults
    gap = tuned["test_reconstruction"] - baseline["test_reconstruction"]
    result = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores", "torch": torch.__version__, "modgraph": __version__, "threads": torch.get_num_threads(),
        "command": f"nice python benchmarks/tune.py --data-root DATA --train-rows {args.train_rows} "
                   f"--test-rows {args.test_rows} --epochs {args.epochs} --trials {args.trials}" + (f" --minutes {args.minutes:g}" if args.minutes else ""),
        "train_rows": args.train_rows, "test_rows": args.test_rows, "epochs": args.epochs, "baseline": baseline, "bad": bad, "tuned": tuned,
        "baseline_settings": f"latent {shipped.default_latent_dim}, epochs {args.epochs}, batch {d.batch_size}, "
                             f"lr {d.lr:g}, kl_weight {d.kl_weight:g}",
        "tuned_settings": ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                                    for k, v in report["settings"].items()),
        "trials_run": len(states), "complete": states.count("complete"), "pruned": states.count("pruned"),
        "best_trial": report["best"]["number"], "tune_seconds": round(tune_seconds, 1), "gap": gap,
        "bar_met": gap >= -0.02, "table": trial_table(report["trials"], report["best"]["number"]),
        "trials": report["trials"],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "tune.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    (args.out / "tune.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
