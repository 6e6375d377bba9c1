"""Issue 18's GPU figures: the trainers against a bare PyTorch loop on one GPU, epoch times, the recipe, one paper seed.

    python benchmarks/gpu.py [--data-root ../shared/data] [--seeds 3] [--precisions fp32 bf16] [--out docs/results]
    python benchmarks/gpu.py --device cpu --smoke     # a dry run of this script on tiny settings (not figures)

Throughput (samples/s) of ``train_vae`` (mnist, fsdd) and ``train_associator`` (fsdd -> mnist)
against a bare loop written here (same model, batch and steps, data and batch order on the GPU,
bf16 autocast alike), each precision; the VAE epoch times the recipe's nodes recorded; the
recipe's wall time (three ``add-modality``, two ``link``, as commands, features cached first);
and ``benchmarks/paper_tables.py --seeds 0`` on the GPU. Writes ``docs/results/gpu.{json,md}``.
Without a CUDA GPU it says so and exits 0, writing nothing.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from contextlib import nullcontext
from datetime import datetime, timezone
from pathlib import Path

from modgraph import ModGraph, __version__  # first: it sets the OpenMP wait policy before torch loads

import torch
import torch.nn.functional as F
from modgraph.learning.splits import split_validation
from modgraph.learning.models import VAE, Associator
from modgraph.learning.pairing import class_map
from modgraph.learning.training import ClassPairSampler, TrainSettings, encode_all, train_associator, train_vae
from cost import git_revision, log  # noqa: E402  (benchmarks/ is on the path when a script in it runs)

RECIPE = [["add-modality", "mnist"], ["add-modality", "fmnist"], ["add-modality", "fsdd"],
          ["link", "fsdd", "mnist"], ["link", "fmnist", "mnist", "--pairing", "index"]]
SMOKE = {"seeds": 1, "max_steps": 4, "pairs": 256, "batch_size": 8,
         "add-modality": ["--epochs", "1", "--recognizer-epochs", "1"],
         "link": ["--epochs", "1", "--batch-size", "1024"],
         "paper": ["--budget", "quick", "--fractions", "1", "--skip-gtsrb-text"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=Path(os.environ.get("MODGRAPH_DATA", "../shared/data")))
    parser.add_argument("--device", default="cuda", help="cuda (the figures) or cpu (with --smoke: a dry run)")
    parser.add_argument("--seeds", type=int, default=3, help="timed runs of each trainer and of the bare loop")
    parser.add_argument("--precisions", nargs="+", choices=["fp32", "bf16"], default=["fp32", "bf16"])
    parser.add_argument("--max-steps", type=int, default=200, help="steps of each VAE throughput run")
    parser.add_argument("--skip", nargs="+", default=[], choices=["throughput", "recipe", "paper"])
    parser.add_argument("--smoke", action="store_true", help="tiny budgets everywhere; figures go to --work")
    parser.add_argument("--out", type=Path, default=None, help="default docs/results (--smoke: under --work)")
    parser.add_argument("--work", type=Path, default=Path("benchmarks/.work/gpu"))
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no GPU is present (torch.cuda.is_available() is False): nothing measured, nothing written")
        return
    if device.type != "cuda" and not args.smoke:
        parser.error("figures come from a GPU; --device cpu is for a --smoke dry run")
    if "bf16" in args.precisions and device.type == "cuda" \
            and not torch.cuda.is_bf16_supported(including_emulation=False):
        print(f"{torch.cuda.get_device_name(device)} has no native bf16: measuring fp32 only")
        args.precisions = ["fp32"]
    args.out = args.out or (args.work / "smoke-results" if args.smoke else Path("docs/results"))
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    fig = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": platform.platform(),
           "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None, "device": str(device),
           "torch": torch.__version__, "cuda": torch.version.cuda, "modgraph": __version__,
           "revision": git_revision(), "command": shlex.join(["python", *sys.argv]), "smoke": args.smoke,
           "precisions": args.precisions}
    registry = args.work / "recipe-fp32" / "registry"
    if "recipe" not in args.skip:
        fig["recipe"] = {p: recipe(args, p) for p in args.precisions}
        fig["epochs"] = epoch_times(args, args.work / f"recipe-{args.precisions[0]}" / "registry")
        registry = args.work / f"recipe-{args.precisions[0]}" / "registry"
    if "throughput" not in args.skip:
        fig["throughput"] = throughput(args, device, registry)
    if "paper" not in args.skip:
        fig["paper"] = paper_seed(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu.json").write_text(json.dumps(fig, indent=2) + "\n")
    md = render(fig)
    (args.out / "gpu.md").write_text(md)
    print(md)
    from render_results import write  # benchmarks/ is on sys.path when this runs as a script

    print(f"wrote {args.out / 'gpu.json'}, {args.out / 'gpu.md'} and {write(args.out, args.out.parent / 'results.md')}")


# -- the recipe and the paper seed, as a user runs them -----------------------------------------


def recipe(args, precision: str) -> dict:
    """The README's recipe as five commands on the device (features cached beforehand), each timed."""
    work = args.work / f"recipe-{precision}"
    mg = ModGraph(registry=work / "registry", data_root=args.data_root, device="cpu", progress=False)
    for name in ("mnist", "fmnist", "fsdd"):
        for split in ("train", "test"):
            mg.features(mg.modality(name), split)
    modgraph = str(Path(sys.executable).with_name("modgraph"))
    extra = ["--device", args.device, "--registry", str(work / "registry"), "--data-root", str(args.data_root)]
    seconds = {}
    for command in RECIPE:
        budget = SMOKE[command[0]] if args.smoke else []
        training = [*extra, *budget] + (["--precision", precision] if precision != "fp32" else [])
        seconds[" ".join(command)] = timed_command([modgraph, *command, *training])
    metrics = {e["source"] + "->" + e["target"]: e["metrics"]["accuracy"] for e in mg.describe()["edges"]}
    return {"seconds": seconds, "total_s": sum(seconds.values()), "accuracy": metrics}


def epoch_times(args, registry: Path) -> dict:
    """Seconds per VAE epoch (training steps only, as the trainer records them) of the recipe's nodes."""
    mg = ModGraph(registry=registry, data_root=args.data_root, device="cpu", progress=False)
    out = {}
    for name in ("mnist", "fmnist", "fsdd"):
        history = mg.registry.node_metadata(name)["training"]["history"]
        out[name] = {"epochs": len(history), "seconds_per_epoch": mean_std([h["seconds"] for h in history]),
                     "train_rows": mg.registry.node_metadata(name)["data"]["train_rows"]}
    return out


def paper_seed(args) -> dict:
    """``paper_tables.py --seeds 0`` on the device, timed as one command."""
    cmd = [sys.executable, str(Path(__file__).with_name("paper_tables.py")), "--seeds", "0", "--device", args.device,
           "--data-root", str(args.data_root), "--work", str(args.work / "paper"), "--out",
           str(args.work / "paper-out"), *(SMOKE["paper"] if args.smoke else [])]
    return {"seconds": timed_command(cmd), "command": shlex.join([os.path.relpath(cmd[1]), *cmd[2:]])}


def timed_command(cmd: list[str]) -> float:
    log("$ " + shlex.join(cmd))
    start = time.perf_counter()
    done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{shlex.join(cmd)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    log(f"  {seconds:.1f} s")
    return round(seconds, 2)


# -- trainer throughput against a bare loop --------------------------------------------------------


def throughput(args, device: torch.device, registry: Path) -> dict:
    mg = ModGraph(registry=registry, data_root=args.data_root, device=args.device, progress=False)
    seeds = list(range(SMOKE["seeds"] if args.smoke else args.seeds))
    max_steps = SMOKE["max_steps"] if args.smoke else args.max_steps
    batch_size = SMOKE["batch_size"] if args.smoke else None  # None: the modality's default
    out = {}
    for precision in args.precisions:
        for name in ("mnist", "fsdd"):
            log(f"VAE {name} {precision}")
            out[f"VAE {name} {precision}"] = vae_throughput(mg, name, device, precision, seeds, max_steps, batch_size)
        if mg.registry.node_path("fsdd").exists() and mg.registry.node_path("mnist").exists():  # the recipe's nodes
            log(f"associator fsdd -> mnist {precision}")
            out[f"associator fsdd->mnist {precision}"] = associator_throughput(
                mg, "fsdd", "mnist", device, precision, seeds, SMOKE["pairs"] if args.smoke else None, batch_size)
    return out


def vae_throughput(mg: ModGraph, name: str, device: torch.device, precision: str, seeds: list[int],
                   max_steps: int, batch_size: int | None = None) -> dict:
    """One epoch of ``max_steps`` full batches of train_vae and of the bare loop, data already on the device."""
    modality = mg.modality(name)
    d = modality.training_defaults
    train, val = split_validation(mg.features(modality, "train"), seed=0)
    stats = modality.fit_normalization(train.x)
    bs = batch_size or d.batch_size
    steps = min(max_steps, len(train) // bs)
    pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:steps * bs]
    n_val = round(len(val) * steps * bs / len(train))  # the recipe's share of validation per epoch
    xt = modality.normalize(train.x[pick], stats).to(device)
    xv = modality.normalize(val.x[:n_val], stats).to(device)
    kind = modality.reconstruction_loss

    def new_vae(seed: int) -> VAE:
        torch.manual_seed(seed)
        return VAE(modality.vae_config(modality.default_latent_dim)).to(device)

    def ours(seed: int) -> None:
        settings = TrainSettings(epochs=1, batch_size=bs, lr=d.lr, kl_weight=d.kl_weight, seed=seed, device=device,
                                 progress=False, precision=precision)
        train_vae(new_vae(seed), xt, xv, kind, settings, augment=modality.augment_batch)

    def bare(seed: int) -> None:
        vae = new_vae(seed).train()
        opt = torch.optim.Adam(vae.parameters(), lr=d.lr, fused=device.type == "cuda")
        order = torch.randperm(len(xt), generator=torch.Generator().manual_seed(seed)).to(device)
        for start in range(0, len(xt), bs):
            target = xt[order[start:start + bs]]
            inputs = modality.augment_batch(target)
            with autocast(device, precision):
                mu, logvar = vae.encode(inputs)
                logits = vae.decode_logits(mu + torch.randn_like(mu) * torch.exp(0.5 * logvar))
            loss = (reconstruction(logits.float(), target, kind) + d.kl_weight * kl(mu.float(), logvar.float())).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    return compare(ours, bare, seeds, steps * bs, device) | {"steps": steps, "batch_size": bs, "val_rows": n_val}


def associator_throughput(mg: ModGraph, source: str, target: str, device: torch.device, precision: str,
                          seeds: list[int], pairs: int | None, batch_size: int | None = None) -> dict:
    """One epoch of the target's ``link_pairs_per_epoch`` pairs: train_associator against the bare loop."""
    a, b = mg.node(source), mg.node(target)
    prepared = {}
    for name, node in ((source, a), (target, b)):
        train, val = split_validation(mg.features(node.modality, "train"), seed=0)
        x = node.modality.normalize(train.x, node.stats).to(device)
        x_val = node.modality.normalize(val.x, node.stats).to(device)
        mu, logvar = encode_all(node.vae, x)
        prepared[name] = dict(train=train, val=val, x=x, x_val=x_val, mu=mu, logvar=logvar,
                              val_mu=encode_all(node.vae, x_val)[0])
    s, t = prepared[source], prepared[target]
    d = b.modality.training_defaults
    mapping = class_map(a.modality, b.modality, "concept")
    n_pairs = pairs or d.link_pairs_per_epoch or len(s["train"])
    candidates, kind = d.link_candidates, b.modality.reconstruction_loss
    bs = batch_size or d.batch_size

    def new_associator(seed: int) -> Associator:
        torch.manual_seed(seed)
        return Associator(b.modality.associator_config(a.vae.latent_dim, b.vae.latent_dim)).to(device)

    def ours(seed: int) -> None:
        settings = TrainSettings(epochs=1, batch_size=bs, lr=d.lr, kl_weight=d.kl_weight, seed=seed,
                                 device=device, progress=False, precision=precision)
        train_associator(new_associator(seed), s["mu"], s["logvar"],
                         ClassPairSampler(s["train"].y, t["train"].y, mapping, seed),
                         ClassPairSampler(s["val"].y, t["val"].y, mapping, seed + 1), s["val_mu"], b.vae,
                         t["x"], t["x_val"], kind, settings, pairs_per_epoch=n_pairs, candidates=candidates)

    def bare(seed: int) -> None:
        assoc = new_associator(seed).train()
        b.vae.eval().requires_grad_(False)
        opt = torch.optim.Adam(assoc.parameters(), lr=d.lr)
        src, tgt = ClassPairSampler(s["train"].y, t["train"].y, mapping, seed).draw(limit=n_pairs,
                                                                                     candidates=candidates)
        src, tgt = src.to(device), tgt.view(len(tgt), -1).to(device)
        for start in range(0, len(src), bs):
            i, j = src[start:start + bs], tgt[start:start + bs]
            z = s["mu"][i] + torch.randn_like(s["mu"][i]) * torch.exp(0.5 * s["logvar"][i])
            with autocast(device, precision):
                a_mu, a_logvar = assoc(z)
                logits = b.vae.decode_logits(a_mu + torch.randn_like(a_mu) * torch.exp(0.5 * a_logvar))
            partners = t["x"][j]  # (B, K, ...)
            err = reconstruction(logits.float().unsqueeze(1).expand_as(partners).flatten(0, 1),
                                 partners.flatten(0, 1), kind).view(partners.shape[:2]).min(1).values
            loss = (err + d.kl_weight * kl(a_mu.float(), a_logvar.float())).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        b.vae.requires_grad_(True)

    result = compare(ours, bare, seeds, n_pairs, device)
    return result | {"steps": math.ceil(n_pairs / bs), "batch_size": bs, "pairs": n_pairs,
                     "candidates": candidates}


def compare(ours, bare, seeds: list[int], samples: int, device: torch.device) -> dict:
    """Both timed per seed (alternating which goes first), after one untimed warm-up of each; the GPU is
    synchronised before and after every timed run, so queued kernels count."""
    ours(0), bare(0)
    runs = {"ours": [], "bare": []}
    for i, seed in enumerate(seeds):
        for key, fn in ((("ours", ours), ("bare", bare)) if i % 2 == 0 else (("bare", bare), ("ours", ours))):
            synchronize(device)
            start = time.perf_counter()
            fn(seed)
            synchronize(device)
            runs[key].append(samples / (time.perf_counter() - start))
            log(f"  seed {seed} {key}: {runs[key][-1]:.0f} samples/s")
    return {"ours_samples_per_s": mean_std(runs["ours"]), "bare_samples_per_s": mean_std(runs["bare"]),
            "ratio": mean_std([o / b for o, b in zip(runs["ours"], runs["bare"])]), "samples": samples}


def reconstruction(logits: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    err = (F.binary_cross_entropy_with_logits(logits, target, reduction="none") if kind == "bce"
           else (logits - target).pow(2))
    return err.flatten(1).sum(1)


def kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1)


def autocast(device: torch.device, precision: str):
    return torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16" else nullcontext()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# -- the report -----------------------------------------------------------------------------------


def render(fig: dict) -> str:
    lines = ["## GPU: trainers, epochs, recipe and one paper seed", ""]
    if fig["smoke"]:
        lines += ["**Smoke run (tiny budgets): these figures say nothing about modgraph.**", ""]
    lines += [f"{fig['gpu'] or fig['device']}, torch {fig['torch']} (CUDA {fig['cuda']}), modgraph {fig['modgraph']} "
              f"at {fig['revision']}, {fig['date']}: `{fig['command']}`", ""]
    if "throughput" in fig:
        lines += ["Trainer throughput against a bare PyTorch loop on the same GPU (same model, batch, steps and "
                  "augmentation; data and batch order on the GPU), one epoch, mean ± std over seeds:", "",
                  "| run | steps x batch | ours (samples/s) | bare loop (samples/s) | ours / bare |",
                  "|---|---|---|---|---|"]
        for key, r in fig["throughput"].items():
            lines.append(f"| {key} | {r['steps']} x {r['batch_size']} | {fmt(r['ours_samples_per_s'])} | "
                         f"{fmt(r['bare_samples_per_s'])} | {fmt(r['ratio'], 2)} |")
        lines.append("")
    if "epochs" in fig:
        lines += ["VAE epochs of the recipe's nodes (training steps, as the trainer records them):", "",
                  "| node | training rows | epochs | seconds per epoch |", "|---|---|---|---|"]
        for name, e in fig["epochs"].items():
            lines.append(f"| {name} | {e['train_rows']:,} | {e['epochs']} | {fmt(e['seconds_per_epoch'], 1)} |")
        lines.append("")
    if "recipe" in fig:
        lines += ["The recipe as commands (features cached beforehand), seconds:", "",
                  "| command | " + " | ".join(fig["recipe"]) + " |", "|---|" + "---|" * len(fig["recipe"])]
        for command in next(iter(fig["recipe"].values()))["seconds"]:
            lines.append(f"| `modgraph {command}` | "
                         + " | ".join(f"{r['seconds'][command]:.1f}" for r in fig["recipe"].values()) + " |")
        lines.append("| **total** | " + " | ".join(f"**{r['total_s']:.0f}**" for r in fig["recipe"].values()) + " |")
        lines.append("")
    if "paper" in fig:
        lines += [f"One seed of the paper benchmark (`{fig['paper']['command']}`): {fig['paper']['seconds']:.0f} s.",
                  ""]
    lines.append("Figures: [gpu.json](gpu.json)")
    return "\n".join(lines) + "\n"


def mean_std(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "runs": values}


def fmt(stat: dict, digits: int = 0) -> str:
    return f"{stat['mean']:,.{digits}f} ± {stat['std']:,.{digits}f}"


if __name__ == "__main__":
    main()
