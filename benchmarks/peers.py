"""MultiVae's models (JMVAE, MVAE, MoPoE, MMVAE+) on the pairs modgraph's associators see, judged like modgraph.

    pip install -e ".[bench]"
    MODGRAPH_DATA=../shared/data python benchmarks/peers.py [--registry benchmarks/.work/recipe/registry]

Every peer gets the registry nodes' features and normalisation (``ModGraph.features`` and
the stored statistics), MLP encoders and decoders of 2x512 with a 64-d latent, and is judged
on the test split by the registry nodes' recognizers exactly as ``ModGraph.evaluate`` does.
modgraph's own figures are read from docs/results (paper_tables.json, else core_bars.json),
not retrained. Each run is a child process (its peak memory is its own); finished runs are
kept under --work so an interrupted benchmark resumes. Prints a markdown table and writes
docs/results/peers.json and peers.md. ``--report-only --runs-from docs/results/peers.json`` writes
the report again from the runs a previous report stored (after modgraph's own figures changed).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("MODGRAPH_NUM_THREADS", "1")  # 2 shared cores: one thread per run

import numpy as np  # noqa: E402
import torch  # noqa: E402

from modgraph import ModGraph, __version__  # noqa: E402
from modgraph.learning.splits import split_validation  # noqa: E402
from modgraph.learning.pairing import class_map, paired_subset  # noqa: E402
from modgraph.learning.training import predict  # noqa: E402

MODELS = ("jmvae", "mvae", "mopoe", "mmvaeplus")
# Models without missing-modality support: at a paired fraction below 1 they see the paired samples only.
PAIRED_ONLY = {"jmvae"}
SCENARIOS = {"fsdd-mnist": ("fsdd", "mnist", "concept"), "fmnist-mnist": ("fmnist", "mnist", "index")}
HIDDEN = 512
LATENT = 64
MMVAEPLUS_PRIVATE = 16  # MMVAE+'s modality-specific latents, beside the shared 64
DEFAULT_REGISTRY = Path("benchmarks/.work/recipe/registry")


# -- the paired training data -------------------------------------------------------------
class _Pools:
    """One modality's normalised rows, labels, and which rows may appear in pairs."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, paired: torch.Tensor):
        self.x, self.y, self.paired = x, y, paired
        self.rows_by_class = {int(c): (paired & (y == c)).nonzero().flatten().numpy() for c in y.unique()}


def paired_dataset(a: str, b: str, pools: dict, maps: dict, size: int, with_singles: bool, seed: int):
    """``size`` samples, each drawn afresh at every access (pairs are redrawn each epoch, as modgraph's link does).

    Sample i is anchored in modality a (even i) or b (odd i): a random training row of it.
    A row in its modality's paired subset comes with a random paired row of the partner class
    of the other modality; a row outside it comes alone (the other modality masked), and only
    when ``with_singles`` (missing-modality support), else anchors are drawn from paired rows only.
    """
    from multivae.data.datasets import DatasetOutput, IncompleteDataset, MultimodalBaseDataset

    rng = np.random.default_rng(seed)
    names = (a, b)
    candidates = {}
    for m, other in ((a, b), (b, a)):
        p, q = pools[m], pools[other]
        has_partner = torch.tensor([len(q.rows_by_class.get(maps[(m, other)].get(int(c), -1), ())) > 0
                                    for c in p.y.tolist()], dtype=torch.bool)
        allowed = has_partner & p.paired
        if with_singles:
            allowed = allowed | ~p.paired
        candidates[m] = allowed.nonzero().flatten().numpy()
        if len(candidates[m]) == 0:
            raise RuntimeError(f"no {m} rows to draw")
    base = IncompleteDataset if with_singles else MultimodalBaseDataset

    class Pairs(base):
        def __init__(self):  # the base classes' fields are not used: samples are drawn in __getitem__
            self.labels = None

        def __len__(self):
            return size

        def __getitem__(self, index):
            m = names[index % 2]
            other = names[1 - index % 2]
            p, q = pools[m], pools[other]
            row = int(candidates[m][rng.integers(len(candidates[m]))])
            data = {m: p.x[row]}
            present = bool(p.paired[row])
            if present:
                partners = q.rows_by_class[maps[(m, other)][int(p.y[row])]]
                data[other] = q.x[int(partners[rng.integers(len(partners))])]
            else:
                data[other] = torch.zeros_like(q.x[0])
            if with_singles:
                return DatasetOutput(data=data, masks={m: torch.tensor(True), other: torch.tensor(present)})
            return DatasetOutput(data=data)

    return Pairs()


def validation_pairs(a: str, b: str, pools: dict, maps: dict, limit: int, seed: int):
    """Fixed complete pairs from the validation rows (each side's rows with a random partner), at most ``limit``."""
    from multivae.data.datasets import MultimodalBaseDataset

    gen = np.random.default_rng(seed + 1)
    xs = {a: [], b: []}
    for m, other in ((a, b), (b, a)):
        p, q = pools[m], pools[other]
        rows = gen.permutation(len(p.y))[:limit // 2]
        for row in rows:
            partners = q.rows_by_class.get(maps[(m, other)].get(int(p.y[row]), -1), ())
            if len(partners):
                xs[m].append(p.x[row])
                xs[other].append(q.x[int(partners[gen.integers(len(partners))])])
    return MultimodalBaseDataset(data={m: torch.stack(v) for m, v in xs.items()})


# -- the networks: MLPs of 2x512, the same for every model -----------------------------------
def _mlp_encoder(input_shape: tuple, latent_dim: int, style_dim: int = 0):
    from pythae.models.base.base_utils import ModelOutput
    from multivae.models.nn.base_architectures import BaseMultilatentEncoder

    class MLPEncoder(BaseMultilatentEncoder):
        def __init__(self):
            super().__init__()
            self.input_dim, self.latent_dim, self.style_dim = input_shape, latent_dim, style_dim
            n_in = int(np.prod(input_shape))
            self.body = torch.nn.Sequential(torch.nn.Linear(n_in, HIDDEN), torch.nn.ReLU(),
                                            torch.nn.Linear(HIDDEN, HIDDEN), torch.nn.ReLU())
            self.mu = torch.nn.Linear(HIDDEN, latent_dim)
            self.logvar = torch.nn.Linear(HIDDEN, latent_dim)
            if style_dim:
                self.style_mu = torch.nn.Linear(HIDDEN, style_dim)
                self.style_logvar = torch.nn.Linear(HIDDEN, style_dim)

        def forward(self, x):
            h = self.body(x.reshape(len(x), -1))
            out = ModelOutput(embedding=self.mu(h), log_covariance=self.logvar(h))
            if self.style_dim:
                out["style_embedding"] = self.style_mu(h)
                out["style_log_covariance"] = self.style_logvar(h)
            return out

    return MLPEncoder()


def _mlp_decoder(output_shape: tuple, latent_dim: int):
    """Linear output: logits for the Bernoulli (images), the mean for the Gaussian (standardised MFCCs)."""
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn.base_architectures import BaseDecoder

    class MLPDecoder(BaseDecoder):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Linear(latent_dim, HIDDEN), torch.nn.ReLU(),
                                           torch.nn.Linear(HIDDEN, HIDDEN), torch.nn.ReLU(),
                                           torch.nn.Linear(HIDDEN, int(np.prod(output_shape))))

        def forward(self, z):
            return ModelOutput(reconstruction=self.net(z).reshape(*z.shape[:-1], *output_shape))

    return MLPDecoder()


def build_model(name: str, shapes: dict, dists: dict, with_singles: bool):
    import multivae.models as mv

    common = dict(n_modalities=len(shapes), latent_dim=LATENT, input_dims=shapes, decoders_dist=dists)
    style = MMVAEPLUS_PRIVATE if name == "mmvaeplus" else 0
    encoders = {m: _mlp_encoder(s, LATENT, style) for m, s in shapes.items()}
    decoders = {m: _mlp_decoder(s, LATENT + style) for m, s in shapes.items()}
    if name == "jmvae":
        config = mv.JMVAEConfig(**common)  # alpha 0.1, KL warm-up over 10 epochs (library defaults)
        return mv.JMVAE(config, encoders=encoders, decoders=decoders), config
    if name == "mvae":
        # The library's advice: sub-sampled ELBOs for complete data, off when the data are incomplete.
        config = mv.MVAEConfig(**common, use_subsampling=not with_singles)
        return mv.MVAE(config, encoders=encoders, decoders=decoders), config
    if name == "mopoe":
        config = mv.MoPoEConfig(**common)
        return mv.MoPoE(config, encoders=encoders, decoders=decoders), config
    if name == "mmvaeplus":
        # K=1 with the IWAE bound (the library's default is K=10, ten times the decoding per sample).
        config = mv.MMVAEPlusConfig(**common, modalities_specific_dim=MMVAEPLUS_PRIVATE, K=1, loss="iwae_looser")
        return mv.MMVAEPlus(config, encoders=encoders, decoders=decoders), config
    raise ValueError(f"unknown model {name!r}; known: {', '.join(MODELS)}")


# -- one run (in a child process) -------------------------------------------------------------
def _quiet_libraries() -> None:
    for name in list(logging.root.manager.loggerDict):
        if name.startswith(("multivae", "pythae")):
            logging.getLogger(name).setLevel(logging.WARNING)


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def run_one(spec: dict) -> dict:
    """Train one peer on one scenario, paired fraction and seed; cross-generation accuracy both ways."""
    from multivae.trainers import BaseTrainer, BaseTrainerConfig
    from multivae.trainers.base.callbacks import CallbackHandler, TrainingCallback

    _quiet_libraries()
    # MNIST is grey levels in [0, 1], not binary: the Bernoulli log-likelihood is then the BCE modgraph uses.
    torch.distributions.Distribution.set_default_validate_args(False)
    torch.set_num_threads(int(os.environ["MODGRAPH_NUM_THREADS"]))
    a, b, pairing = SCENARIOS[spec["scenario"]]
    seed, fraction = spec["seed"], spec["fraction"]
    mg = ModGraph(registry=spec["registry"], data_root=spec["data_root"], device="cpu", progress=False)
    nodes = {m: mg.node(m) for m in (a, b)}
    maps = {(a, b): class_map(nodes[a].modality, nodes[b].modality, pairing),
            (b, a): class_map(nodes[b].modality, nodes[a].modality, pairing)}
    # The rows modgraph's link trains on: training split less the validation origins, a class-stratified
    # fraction of them allowed in pairs; inputs normalised with the node's stored statistics.
    train_pools, val_pools = {}, {}
    for m, node in nodes.items():
        train, val = split_validation(mg.features(node.modality, "train"), seed)
        paired = paired_subset(train, fraction, seed)
        norm = lambda x: node.modality.normalize(x, node.stats).float().contiguous()  # noqa: E731
        train_pools[m] = _Pools(norm(train.x), train.y, paired)
        val_pools[m] = _Pools(norm(val.x), val.y, torch.ones(len(val), dtype=torch.bool))
    with_singles = fraction < 1.0 and spec["model"] not in PAIRED_ONLY
    train_set = paired_dataset(a, b, train_pools, maps, spec["samples_per_epoch"], with_singles, seed)
    val_set = validation_pairs(a, b, val_pools, maps, spec["val_pairs"], seed)
    shapes = {m: tuple(nodes[m].modality.input_shape) for m in (a, b)}
    dists = {m: "bernoulli" if nodes[m].modality.reconstruction_loss == "bce" else "normal" for m in (a, b)}
    torch.manual_seed(seed)
    np.random.seed(seed)
    model, _ = build_model(spec["model"], shapes, dists, with_singles)
    rss_before = _rss_mb()

    class TimedTrainer(BaseTrainer):
        """The library's trainer, without its progress bars, timing its training passes only."""

        train_seconds = 0.0

        def _setup_callbacks(self):
            self.callbacks = self.callbacks or [TrainingCallback()]
            self.callback_handler = CallbackHandler(callbacks=self.callbacks, model=self.model)

        def train_step(self, epoch):
            start = time.perf_counter()
            out = super().train_step(epoch)
            self.train_seconds += time.perf_counter() - start
            print(f"  epoch {epoch}: train loss {out[0]:.2f} ({time.perf_counter() - start:.1f} s)",
                  file=sys.stderr, flush=True)
            return out

    with tempfile.TemporaryDirectory() as tmp:
        config = BaseTrainerConfig(output_dir=tmp, per_device_train_batch_size=spec["batch_size"],
                                   per_device_eval_batch_size=512, num_epochs=spec["epochs"],
                                   learning_rate=spec["lr"], seed=seed, no_cuda=True)
        start = time.perf_counter()
        trainer = TimedTrainer(model, train_set, val_set, training_config=config)
        trainer.train()
        wall = time.perf_counter() - start
    best = trainer._best_model.eval()
    result = {**spec, "with_singles": with_singles, "train_seconds": trainer.train_seconds, "wall_seconds": wall,
              "samples_per_second": spec["epochs"] * spec["samples_per_epoch"] / trainer.train_seconds,
              "rss_before_training_mb": rss_before,
              "parameters": sum(p.numel() for p in model.parameters()),
              "paired_rows": {m: int(p.paired.sum()) for m, p in train_pools.items()},
              "train_rows": {m: len(p.y) for m, p in train_pools.items()}}
    result["peak_rss_training_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["accuracy"] = {f"{s}->{t}": cross_accuracy(mg, best, s, t, maps[(s, t)], dists[t])
                          for s, t in ((a, b), (b, a))}
    # Each modality through the peer's own encoder and decoder (a diagnostic: did it learn the modality?).
    identity = {m: {i: i for i in range(len(nodes[m].modality.classes))} for m in (a, b)}
    result["reconstruction"] = {m: cross_accuracy(mg, best, m, m, identity[m], dists[m], limit=2000) for m in (a, b)}
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # evaluation included
    return result


@torch.no_grad()
def cross_accuracy(mg: ModGraph, model, source: str, target: str, mapping: dict, target_dist: str,
                   limit: int | None = None) -> dict:
    """As ``ModGraph.evaluate``: the source's test originals in a paired class, normalised, translated with
    the posterior mean, classified by the target node's recognizer, compared with the paired class
    (``limit``: the first rows only)."""
    from multivae.data.datasets import MultimodalBaseDataset

    src, dst = mg.node(source), mg.node(target)
    feats = mg.features(src.modality, "test").originals()
    keep = torch.tensor([int(c) in mapping for c in feats.y.tolist()], dtype=torch.bool)
    x = feats.x[keep]
    expected = torch.tensor([mapping[int(c)] for c in feats.y[keep].tolist()], dtype=torch.long)
    x, expected = x[:limit], expected[:limit]
    preds = []
    for s in range(0, len(x), 1024):
        xs = src.modality.normalize(x[s:s + 1024], src.stats)
        # Models that encode every modality they are given need a placeholder for the absent one.
        data = {m: torch.zeros(len(xs), *mg.node(m).modality.input_shape) for m in model.encoders}
        data[source] = xs
        z = model.encode(MultimodalBaseDataset(data=data), cond_mod=[source], return_mean=True)
        out = model.decode(z, [target])[target]
        if target_dist == "bernoulli":
            out = torch.sigmoid(out)
        preds.append(predict(dst.recognizer, out))
    pred = torch.cat(preds)
    return {"accuracy": (pred == expected).float().mean().item(), "n": len(expected)}


# -- the whole benchmark (parent) -------------------------------------------------------------
def modgraph_figures(out: Path) -> tuple[dict, str]:
    """modgraph's cross-generation accuracies as written by its own benchmarks (mean, std or None)."""
    for name in ("paper_tables.json", "core_bars.json"):
        path = out / name
        if not path.exists():
            continue
        payload = json.loads(path.read_text())
        cross = payload.get("cross")
        if isinstance(cross, dict) and cross:
            figures = {}
            for node, metrics in (payload.get("nodes") or {}).items():
                if isinstance(metrics, dict) and isinstance(metrics.get("reconstruction_accuracy"), (int, float)):
                    figures[f"{node}->{node}"] = (float(metrics["reconstruction_accuracy"]), None)
            for key, a in (payload.get("aggregate") or {}).items():  # paper_tables.json: % over seeds
                node, _, what = key.partition(" ")
                if what == "reconstruction" and isinstance(a, dict) and a.get("mean") is not None:
                    figures[f"{node}->{node}"] = (a["mean"] / 100, None if a.get("std") is None else a["std"] / 100)
            for key, value in cross.items():
                if isinstance(value, dict) and "mean" in value:
                    figures[key] = (value["mean"], value.get("std"))
                elif isinstance(value, (int, float)):
                    figures[key] = (float(value), None)
            return figures, name
    return {}, ""


def _key(spec: dict) -> str:
    return f"{spec['scenario']}_{spec['model']}_p{spec['fraction']}_s{spec['seed']}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--registry", type=Path, default=DEFAULT_REGISTRY,
                        help="registry whose nodes (features' normalisation, recognizers) are used, read-only")
    parser.add_argument("--data-root", type=Path, default=Path(os.environ.get("MODGRAPH_DATA", "../shared/data")))
    parser.add_argument("--out", type=Path, default=Path("docs/results"))
    parser.add_argument("--work", type=Path, default=Path("benchmarks/.work/peers"))
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--scenarios", default="fsdd-mnist", help=f"comma-separated: {', '.join(SCENARIOS)}")
    parser.add_argument("--fractions", default="1.0,0.05")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--samples-per-epoch", type=int, default=10000,
                        help="samples drawn per epoch (10,000: about one pass over FSDD's 10,125 training rows)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--val-pairs", type=int, default=2000)
    parser.add_argument("--fresh", action="store_true", help="retrain runs already stored under --work")
    parser.add_argument("--no-write", action="store_true", help="print the table only (smoke runs)")
    parser.add_argument("--note", default="", help="a sentence for peers.md (for example what a run left out)")
    parser.add_argument("--report-only", action="store_true",
                        help="train nothing: report the runs stored under --work with these settings")
    parser.add_argument("--runs-from", type=Path,
                        help="with --report-only: the runs stored in this peers.json instead of --work (to write the "
                             "report again over modgraph's current figures without retraining the peers)")
    parser.add_argument("--run-one", help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_one:  # a child: it stores its own result, so nothing is lost if the parent goes
        spec = json.loads(args.run_one)
        try:
            result = run_one(spec)
        except ArithmeticError as exc:  # MultiVae stops on a NaN loss: a finding to report, not a crash
            result = {**spec, "failed": f"{type(exc).__name__}: {exc}"}
            print(f"run {_key(spec)} diverged: {result['failed']}", file=sys.stderr, flush=True)
        tmp = args.result.with_suffix(".tmp")
        tmp.write_text(json.dumps(result, indent=2))
        os.replace(tmp, args.result)
        return

    if args.runs_from and not args.report_only:
        parser.error("--runs-from reports stored runs; add --report-only")
    stored_report = json.loads(args.runs_from.read_text()) if args.runs_from else None
    # the version that trained the runs: the stored report's where they come from one
    args.multivae = stored_report["multivae"] if stored_report else _version("multivae")
    runs_dir = args.work / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    results = []
    started = time.monotonic()
    for scenario in ([] if args.report_only else args.scenarios.split(",")):
        for fraction in (float(f) for f in args.fractions.split(",")):
            for model in args.models.split(","):
                for seed in (int(s) for s in args.seeds.split(",")):
                    spec = {"scenario": scenario, "model": model, "fraction": fraction, "seed": seed,
                            "epochs": args.epochs, "samples_per_epoch": args.samples_per_epoch,
                            "batch_size": args.batch_size, "lr": args.lr, "val_pairs": args.val_pairs,
                            "registry": str(args.registry), "data_root": str(args.data_root)}
                    path = runs_dir / f"{_key(spec)}.json"
                    if path.exists() and not args.fresh:
                        stored = json.loads(path.read_text())
                        if all(stored.get(k) == v for k, v in spec.items()):
                            results.append(stored)
                            continue
                    print(f"[{time.monotonic() - started:.0f} s] {_key(spec)}", flush=True)
                    code = subprocess.run([sys.executable, __file__, "--run-one", json.dumps(spec),
                                           "--result", str(path)]).returncode
                    if code != 0:
                        raise SystemExit(f"run {_key(spec)} failed (exit {code}); see its output above")
                    result = json.loads(path.read_text())
                    results.append(result)
                    if "failed" in result:
                        print(f"    diverged: {result['failed']}", flush=True)
                        continue
                    print(f"    {result['accuracy']}, reconstruction {result['reconstruction']}, "
                          f"{result['samples_per_second']:.0f} samples/s, "
                          f"peak RSS {result['peak_rss_training_mb']:.0f} MB in training", flush=True)
    # Earlier runs with the same settings (other models or seeds run before) join the report.
    fixed = {"epochs": args.epochs, "samples_per_epoch": args.samples_per_epoch, "batch_size": args.batch_size,
             "lr": args.lr, "val_pairs": args.val_pairs, "registry": str(args.registry)}
    done = {_key(r) for r in results}
    stored_runs = (stored_report["runs"] if stored_report
                   else [json.loads(path.read_text()) for path in sorted(runs_dir.glob("*.json"))])
    for stored in stored_runs:
        if _key(stored) not in done and all(stored.get(k) == v for k, v in fixed.items()):
            results.append(stored)
    report(args, sorted(results, key=lambda r: (r["scenario"], -r["fraction"], MODELS.index(r["model"]), r["seed"])))


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def report(args, results: list[dict]) -> None:
    ours, source = modgraph_figures(args.out)
    groups: dict = {}
    for r in results:
        groups.setdefault((r["scenario"], r["fraction"], r["model"]), []).append(r)
    summary = []
    for (scenario, fraction, model), every_run in groups.items():
        runs = [r for r in every_run if "failed" not in r]
        diverged = {r["seed"]: r["failed"] for r in every_run if "failed" in r}
        row = {"scenario": scenario, "fraction": fraction, "model": model, "seeds": [r["seed"] for r in runs],
               "diverged_seeds": sorted(diverged), "diverged": sorted(set(diverged.values())), "accuracy": {}}
        if not runs:
            summary.append(row)
            continue
        row["with_singles"] = runs[0]["with_singles"]
        for direction in runs[0]["accuracy"]:
            mean, std = _mean_std([r["accuracy"][direction]["accuracy"] for r in runs])
            row["accuracy"][direction] = {"mean": mean, "std": std, "n": runs[0]["accuracy"][direction]["n"],
                                          "per_seed": [r["accuracy"][direction]["accuracy"] for r in runs]}
        for k in ("samples_per_second", "peak_rss_training_mb", "peak_rss_mb", "train_seconds",
                  "rss_before_training_mb"):
            mean, std = _mean_std([r[k] for r in runs])
            row[k] = {"mean": mean, "std": std}
        row["reconstruction"] = {m: dict(zip(("mean", "std"), _mean_std([r["reconstruction"][m]["accuracy"]
                                                                          for r in runs])))
                                 for m in runs[0]["reconstruction"]}
        row["parameters"] = runs[0]["parameters"]
        row["paired_rows"], row["train_rows"] = runs[0]["paired_rows"], runs[0]["train_rows"]
        summary.append(row)

    def fmt(mean, std):
        return f"{100 * mean:.1f}" + (f" ± {100 * std:.1f}" if std is not None else "")

    lines = ["| scenario | paired | model | data seen | A -> B | B -> A | own reconstruction A / B | seeds "
             "| samples/s | peak RSS (MB) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for scenario in dict.fromkeys(r["scenario"] for r in summary):
        a, b, _ = SCENARIOS[scenario]
        for fraction in dict.fromkeys(r["fraction"] for r in summary if r["scenario"] == scenario):
            pct = f"{100 * fraction:g}%"
            suffix = "" if fraction >= 1.0 else f" {pct}"
            mine = [ours.get(f"{a}->{b}{suffix}"), ours.get(f"{b}->{a}{suffix}")]
            if any(mine):
                cells = [fmt(*m) if m else "not measured" for m in mine]
                recon = [fmt(*ours[f"{m}->{m}"]) if f"{m}->{m}" in ours else "" for m in (a, b)]
                spread = "" if fraction >= 1.0 else " as targets; as sources also unpaired rows labelled by spreading"
                lines.append(f"| {a} <-> {b} | {pct} | **modgraph** (associators; {source}) | "
                             f"VAEs: all rows; associators: paired rows{spread} | {cells[0]} | {cells[1]} | "
                             f"{recon[0]} / {recon[1]} | | | |")
            for row in (r for r in summary if r["scenario"] == scenario and r["fraction"] == fraction):
                seeds = (",".join(map(str, row["seeds"])) + "".join(
                    f" (seed {s} diverged: NaN loss)" for s in row["diverged_seeds"])).strip()
                if not row["seeds"]:
                    lines.append(f"| {a} <-> {b} | {pct} | {row['model']} | | diverged | diverged | | {seeds} | | |")
                    continue
                seen = ("all rows, paired" if fraction >= 1.0 else
                        "paired + unpaired rows (missing-modality support)" if row["with_singles"]
                        else "paired rows only")
                acc = row["accuracy"]
                lines.append(f"| {a} <-> {b} | {pct} | {row['model']} | {seen} | "
                             f"{fmt(acc[f'{a}->{b}']['mean'], acc[f'{a}->{b}']['std'])} | "
                             f"{fmt(acc[f'{b}->{a}']['mean'], acc[f'{b}->{a}']['std'])} | "
                             f"{fmt(**row['reconstruction'][a])} / {fmt(**row['reconstruction'][b])} | "
                             f"{seeds} | {row['samples_per_second']['mean']:.0f} | "
                             f"{row['peak_rss_training_mb']['mean']:.0f} |")
    table = "\n".join(lines)
    print(table)
    if args.no_write:
        return
    argv = list(sys.argv)
    if "--note" in argv:  # the note is printed below the command, not inside it
        i = argv.index("--note")
        argv[i + 1:i + 2] = ["..."]
    command = "python " + shlex.join(argv)
    meta = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": platform.platform(),
            "cpus": os.cpu_count(), "threads": int(os.environ["MODGRAPH_NUM_THREADS"]), "torch": torch.__version__,
            "modgraph": __version__, "multivae": args.multivae, "command": command}
    settings = {k: getattr(args, k) for k in ("epochs", "samples_per_epoch", "batch_size", "lr", "val_pairs")}
    settings.update(hidden=[HIDDEN, HIDDEN], latent_dim=LATENT, mmvaeplus_private_dim=MMVAEPLUS_PRIVATE,
                    registry=str(args.registry))
    payload = {**meta, "argv": sys.argv, "note": args.note, "settings": settings, "modgraph_source": source,
               "modgraph_figures": {k: {"mean": m, "std": s} for k, (m, s) in ours.items()},
               "peers": summary, "runs": results}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "peers.json").write_text(json.dumps(payload, indent=2))
    (args.out / "peers.md").write_text(
        "## Peers on the same pairs: MultiVae against modgraph\n\n"
        f"`MODGRAPH_DATA=DATA {command}`\n\n"
        f"{meta['date']}, {meta['machine']}, {meta['cpus']} CPU cores (1 torch thread per run), torch "
        f"{meta['torch']}, modgraph {__version__}, multivae {meta['multivae']}\n\n"
        "Cross-generation accuracy on the test split in % (mean ± std over the seeds; no std for one seed), "
        "judged by the registry nodes' recognizers as `modgraph eval` does (FSDD: its 250 test clips; MNIST: "
        "its 10,000 test images).\n\n"
        f"- Peers: MultiVae's models with MLP encoders and decoders of 2x{HIDDEN} and a {LATENT}-d latent "
        f"(MMVAE+: {LATENT} shared and {MMVAEPLUS_PRIVATE} private per modality, K=1 IWAE bound; JMVAE and "
        "MVAE: the library's KL warm-up over 10 epochs), Bernoulli (logits) for images and a unit Gaussian "
        f"for standardised MFCCs; {args.epochs} epochs of {args.samples_per_epoch:,} samples, batch "
        f"{args.batch_size}, Adam lr {args.lr:g}; the epoch with the best loss on {args.val_pairs:,} validation "
        "pairs is kept (after the warm-up); posterior means for cross-generation.\n"
        "- Data: the rows modgraph's `link` trains on (the training split less its validation origins, FSDD's "
        "augmented copies included), normalised with the registry nodes' stored statistics. Each sample is a "
        "random row of one modality (alternately) with a random paired row of the partner class of the other, "
        "redrawn at every epoch. Below 100% pairing a row outside the paired subset comes alone (the other "
        "modality masked) for the models with missing-modality support; JMVAE has none and sees the paired "
        "rows only.\n"
        "- Own reconstruction: each modality through the model's own encoder and decoder, judged the same way "
        "(peers: MNIST's first 2,000 test images); for modgraph, its VAEs' reconstruction accuracy.\n"
        f"- modgraph's figures are read from `docs/results/{source}` (one seed unless a std is shown), not "
        "retrained here.\n"
        "- Cost: samples/s counts the training passes of MultiVae's BaseTrainer (one thread, on a machine shared "
        "with other jobs); peak RSS is the run's process up to the end of training, data included.\n"
        + (f"\n{args.note}\n" if args.note else "") + "\n" + table + "\n")


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


if __name__ == "__main__":
    main()
