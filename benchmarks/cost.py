"""What training and translation cost: issue 4's cost figures, printed as a markdown table.

    python benchmarks/cost.py [--data-root ../shared/data] [--registry PATH] [--seeds 3] [--out docs/results]

Trainer throughput (samples/s) of ``train_vae`` (MNIST, FSDD) and ``train_associator``
(fsdd -> mnist) against a bare PyTorch loop written here, on the same model, data, batch
size and number of steps; peak resident memory of each; the recipe's wall time (read from
``docs/results/core_bars.json``, not re-run); translate latency for one wav -> PNG in a new
process, and throughput for a folder of 1,000 wavs (inside the process, and with start-up).
Writes ``docs/results/cost.json`` and ``docs/results/cost.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from modgraph import ModGraph, __version__  # first: it sets the OpenMP wait policy before torch loads

import torch
import torch.nn.functional as F
from modgraph_audio import features as audio_features
from modgraph.learning.cross_modal import prepare_side
from modgraph.settings import LinkSettings
from modgraph.learning.splits import split_validation
from modgraph.learning.models import VAE, Associator
from modgraph.learning.pairing import class_map
from modgraph.learning.training import (ClassPairSampler, TrainSettings, associator_loss, train_associator,
                               train_vae, vae_loss_eval)


# -- measuring ----------------------------------------------------------------------------------


def reset_peak_rss() -> None:
    """Start a new high-water mark of this process's resident memory (Linux: clear_refs 5)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_rss_mib(field: str = "VmHWM") -> float:
    """This process's peak resident memory since the last :func:`reset_peak_rss`, in MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mib() -> float:
    """This process's resident memory now, in MiB."""
    return peak_rss_mib("VmRSS")


# Starts the command from a fresh small Python, not from this process: a child forked from a large
# process inherits that size as its high-water mark, and its ru_maxrss would be ours.
_SPAWN = """import json, os, subprocess, sys, time
cmd = json.loads(sys.argv[1])
start = time.perf_counter()
proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
err = proc.stderr.read()
_, status, usage = os.wait4(proc.pid, 0)
print(json.dumps({"wall": time.perf_counter() - start, "maxrss_kib": usage.ru_maxrss,
                  "rc": os.waitstatus_to_exitcode(status), "err": err.decode(errors="replace")[-500:]}))
"""


def run_child(cmd: list[str]) -> tuple[float, float]:
    """Run ``cmd`` to completion: (seconds from start to exit, its peak RSS in MiB)."""
    done = subprocess.run([sys.executable, "-c", _SPAWN, json.dumps(cmd)], capture_output=True, text=True, check=True)
    result = json.loads(done.stdout)
    if result["rc"] != 0:
        raise SystemExit(f"{shlex.join(cmd)} failed ({result['rc']}): {result['err'].strip()}")
    return result["wall"], result["maxrss_kib"] / 1024


def git_revision() -> str:
    """The commit measured, ``-dirty`` when the working tree held uncommitted changes."""
    try:
        return subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True,
                              check=True, cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def mean_std(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "runs": values}


def fmt(stat: dict, digits: int = 0) -> str:
    return f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"


# -- the bare loops: plain PyTorch on the same modules -----------------------------------------


def bare_reconstruction(logits: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    err = (F.binary_cross_entropy_with_logits(logits, target, reduction="none") if kind == "bce"
           else (logits - target).pow(2))
    return err.flatten(1).sum(1)


def bare_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1)


def bare_vae_epoch(vae: VAE, x: torch.Tensor, kind: str, batch_size: int, lr: float, kl_weight: float,
                   augment, seed: int) -> None:
    """One epoch of Eq. 6 with Adam: shuffle, (augment), encode, sample, decode, loss, step. Nothing else."""
    opt = torch.optim.Adam(vae.parameters(), lr=lr)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    vae.train()
    for start in range(0, len(x), batch_size):
        target = x[order[start:start + batch_size]]
        inputs = augment(target) if augment is not None else target
        mu, logvar = vae.encode(inputs)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        loss = (bare_reconstruction(vae.decode_logits(z), target, kind) + kl_weight * bare_kl(mu, logvar)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def bare_associator_epoch(assoc: Associator, target_vae: VAE, mu: torch.Tensor, logvar: torch.Tensor,
                          pairs: ClassPairSampler, x_target: torch.Tensor, kind: str, batch_size: int, lr: float,
                          kl_weight: float, n_pairs: int, candidates: int) -> None:
    """One epoch of Eq. 7 with Adam, the target VAE frozen: the same pairs, nothing but the steps.

    With K candidate partners per sample, the reconstruction term is that of the closest (as ``link``'s).
    """
    for p in target_vae.parameters():
        p.requires_grad_(False)
    target_vae.eval()
    assoc.train()
    opt = torch.optim.Adam(assoc.parameters(), lr=lr)
    src, tgt = pairs.draw(limit=n_pairs, candidates=candidates)
    tgt = tgt.view(len(tgt), -1)  # (N, K)
    for start in range(0, len(src), batch_size):
        s, t = src[start:start + batch_size], tgt[start:start + batch_size]
        z = mu[s] + torch.randn_like(mu[s]) * torch.exp(0.5 * logvar[s])
        a_mu, a_logvar = assoc(z)
        logits = target_vae.decode_logits(a_mu + torch.randn_like(a_mu) * torch.exp(0.5 * a_logvar))
        partners = x_target[t]  # (B, K, ...)
        logits = logits.unsqueeze(1).expand_as(partners)
        err = (F.binary_cross_entropy_with_logits(logits, partners, reduction="none") if kind == "bce"
               else (logits - partners).pow(2))
        rec = err.flatten(2).sum(2).min(1).values
        loss = (rec + kl_weight * bare_kl(a_mu, a_logvar)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    for p in target_vae.parameters():
        p.requires_grad_(True)


# -- training throughput -------------------------------------------------------------------------


def vae_throughput(mg: ModGraph, name: str, seeds: list[int], max_steps: int) -> dict:
    """train_vae against the bare loop: one epoch of at most ``max_steps`` full batches each.

    The validation rows keep the recipe's proportion to the training rows, so the share of an
    epoch our trainer spends validating is the recipe's.
    """
    modality = mg.modality(name)
    d = modality.training_defaults
    train, val = split_validation(mg.features(modality, "train"), seed=0)
    stats = modality.fit_normalization(train.x)
    bs = d.batch_size
    steps = min(max_steps, len(train) // bs)
    pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:steps * bs]
    n_val = round(len(val) * steps * bs / len(train))
    xt = modality.normalize(train.x[pick], stats)
    xv = modality.normalize(val.x[:n_val], stats)
    kind = modality.reconstruction_loss

    def ours(seed: int, x: torch.Tensor = xt, xval: torch.Tensor = xv) -> None:
        torch.manual_seed(seed)
        vae = VAE(modality.vae_config(modality.default_latent_dim))
        settings = TrainSettings(epochs=1, batch_size=bs, lr=d.lr, kl_weight=d.kl_weight, seed=seed, progress=False)
        train_vae(vae, x, xval, kind, settings, augment=modality.augment_batch)

    def bare(seed: int, x: torch.Tensor = xt) -> None:
        torch.manual_seed(seed)
        vae = VAE(modality.vae_config(modality.default_latent_dim))
        bare_vae_epoch(vae, x, kind, bs, d.lr, d.kl_weight, modality.augment_batch, seed)

    ours(0, xt[:3 * bs], xv[:bs])  # first calls import and allocate; keep that out of both timings
    bare(0, xt[:3 * bs])
    def validation() -> None:
        torch.manual_seed(0)
        vae_loss_eval(VAE(modality.vae_config(modality.default_latent_dim)), xv, kind, d.kl_weight)

    result = compare(ours, bare, seeds, steps * bs, validation)
    result.update({"steps": steps, "batch_size": bs, "train_rows": steps * bs, "val_rows": n_val,
                   "kl_weight": d.kl_weight, "loss": kind})
    return result


def associator_throughput(mg: ModGraph, source: str, target: str, seeds: list[int],
                          pairs: int | None = None) -> dict:
    """train_associator against the bare loop, prepared as ``link`` prepares it: one epoch of the
    target's ``link_pairs_per_epoch`` pairs, validation on up to 5,000 pairs as in ``link``."""
    a, b = mg.node(source), mg.node(target)
    sides = {name: prepare_side(mg, name, mg.features(node.modality, "train"), LinkSettings(), spreads=True,
                                aimed_at=True, device=mg.device) for name, node in ((source, a), (target, b))}
    s, t = sides[source], sides[target]
    d = b.modality.training_defaults
    mapping = class_map(a.modality, b.modality, "concept")
    n_pairs = pairs or d.link_pairs_per_epoch or len(s.train)
    candidates = getattr(d, "link_candidates", 1)
    kind = b.modality.reconstruction_loss

    def new_associator(seed: int) -> Associator:
        torch.manual_seed(seed)
        return Associator(b.modality.associator_config(a.vae.latent_dim, b.vae.latent_dim))

    def ours(seed: int, pairs: int = n_pairs) -> None:
        settings = TrainSettings(epochs=1, batch_size=d.batch_size, lr=d.lr, kl_weight=d.kl_weight, seed=seed,
                                 progress=False)
        train_associator(new_associator(seed), s.mu, s.logvar, ClassPairSampler(s.source_y, t.y, mapping, seed),
                         ClassPairSampler(s.val.y, t.val_y, mapping, seed + 1), s.val_mu, b.vae, t.x, t.x_val, kind, settings, pairs_per_epoch=pairs, candidates=candidates)

    def bare(seed: int, pairs: int = n_pairs) -> None:
        bare_associator_epoch(new_associator(seed), b.vae, s.mu, s.logvar,
                              ClassPairSampler(s.source_y, t.y, mapping, seed), t.x, kind,
                              d.batch_size, d.lr, d.kl_weight, pairs, candidates)

    ours(0, 3 * d.batch_size)
    bare(0, 3 * d.batch_size)
    @torch.no_grad()
    def validation() -> None:  # what train_associator computes after each epoch
        assoc = new_associator(0).eval()
        val_pairs = ClassPairSampler(s.val.y, t.val_y, mapping, 1)
        vsrc, vtgt = val_pairs.draw(limit=min(5000, len(val_pairs)), candidates=candidates)
        for start in range(0, len(vsrc), 1024):
            i, j = vsrc[start:start + 1024], vtgt[start:start + 1024]
            associator_loss(assoc, b.vae, s.val_mu[i], t.x_val[j], kind, d.kl_weight, sample=False).sum().item()

    result = compare(ours, bare, seeds, n_pairs, validation)
    result.update({"steps": math.ceil(n_pairs / d.batch_size), "batch_size": d.batch_size, "pairs": n_pairs,
                   "val_pairs": min(5000, len(ClassPairSampler(s.val.y, t.val_y, mapping, 1))),
                   "candidates": candidates,
                   "kl_weight": d.kl_weight, "loss": kind})
    return result


def compare(ours, bare, seeds: list[int], samples: int, validation) -> dict:
    """Time both per seed (alternating which goes first, so a drifting load hits both alike), and
    ``validation``, the pass over the validation rows our trainer makes once an epoch.

    On a shared machine a burst of load in one run moves its wall time a lot, so each run is also
    timed with its optimizer steps at their median interval ("steady"): the time to the first
    step, the median step-to-step interval for every later step, and the time after the last.
    """
    from torch.optim.optimizer import register_optimizer_step_post_hook

    stamps: list[float] = []
    hook = register_optimizer_step_post_hook(lambda *_: stamps.append(time.perf_counter()))
    keys = ("samples_per_s", "steady_samples_per_s", "peak_rss_mib")
    runs: dict[str, dict[str, list[float]]] = {k: {key: [] for key in keys} for k in ("ours", "bare")}
    val_seconds, ratios_without = [], []
    try:
        for i, seed in enumerate(seeds):
            order = (("ours", ours), ("bare", bare)) if i % 2 == 0 else (("bare", bare), ("ours", ours))
            walls = {}
            for key, fn in order:
                reset_peak_rss()
                stamps.clear()
                start = time.perf_counter()
                fn(seed)
                end = time.perf_counter()
                walls[key] = end - start
                steps = torch.tensor(stamps, dtype=torch.float64)
                steady = (stamps[0] - start) + (end - stamps[-1]) + float(steps.diff().median()) * (len(stamps) - 1)
                runs[key]["samples_per_s"].append(samples / walls[key])
                runs[key]["steady_samples_per_s"].append(samples / steady)
                runs[key]["peak_rss_mib"].append(peak_rss_mib())
                log(f"  seed {seed} {key}: {samples / walls[key]:.0f} samples/s ({samples / steady:.0f} steady)")
            start = time.perf_counter()
            validation()
            val_seconds.append(time.perf_counter() - start)
            ratios_without.append(walls["bare"] / max(1e-9, walls["ours"] - val_seconds[-1]))
    finally:
        hook.remove()
    o, b = runs["ours"], runs["bare"]
    return {"ours": {k: mean_std(v) for k, v in o.items()}, "bare": {k: mean_std(v) for k, v in b.items()},
            "ratio": mean_std([x / y for x, y in zip(o["samples_per_s"], b["samples_per_s"])]),
            "steady_ratio": mean_std([x / y for x, y in zip(o["steady_samples_per_s"], b["steady_samples_per_s"])]),
            "validation_seconds": mean_std(val_seconds), "ratio_without_validation": mean_std(ratios_without)}


# -- translation ---------------------------------------------------------------------------------


def sample_wavs(data_root: Path, folder: Path, n: int, seed: int = 0) -> list[Path]:
    recordings = sorted((data_root / "fsdd" / "recordings").glob("*.wav"))
    if len(recordings) < n:
        raise SystemExit(f"need {n} FSDD recordings in {data_root / 'fsdd' / 'recordings'}, found {len(recordings)}")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    picked = random.Random(seed).sample(recordings, n)
    for path in picked:
        shutil.copy(path, folder / path.name)
    return sorted(folder.iterdir())


def translate_figures(args, registry: Path, work: Path, repeats: int) -> dict:
    wavs = sample_wavs(args.data_root, work / "wavs", args.files)
    exe = str(Path(sys.executable).with_name("modgraph"))
    base = [exe, "translate", "--registry", str(registry), "--from", "fsdd", "--to", "mnist"]
    out: dict = {"files": len(wavs)}

    # One wav -> PNG in a new process: start-up, plugin loading, model loading, one file.
    lat, rss = [], []
    for i in range(repeats):
        wall, peak = run_child(base + [str(wavs[i]), "-o", str(work / f"one-{i}.png")])
        lat.append(wall)
        rss.append(peak)
    out["one_file_new_process"] = {"seconds": mean_std(lat), "peak_rss_mib": mean_std(rss)}
    log(f"one wav -> png, new process: {fmt(out['one_file_new_process']['seconds'], 2)} s")

    # The folder inside one process (start-up and model loading excluded), by the library API.
    mg = ModGraph(registry=registry, data_root=args.data_root, device="cpu", progress=False)
    out["folder_in_process"] = folder_in_process(mg, work, repeats)
    log(f"folder in process: {fmt(out['folder_in_process']['files_per_s'])} files/s")
    out["stages"] = translate_stages(mg, work / "wavs", work / "stages", repeats)

    # The same folder by the command line, start-up included.
    rates, rss = [], []
    for i in range(repeats):
        target = work / f"cli-{i}"
        shutil.rmtree(target, ignore_errors=True)
        wall, peak = run_child(base + [str(work / "wavs"), "-o", str(target)])
        rates.append(len(wavs) / wall)
        rss.append(peak)
    out["folder_new_process"] = {"files_per_s": mean_std(rates), "peak_rss_mib": mean_std(rss)}
    log(f"folder by the CLI: {fmt(out['folder_new_process']['files_per_s'])} files/s")
    for i in range(repeats):
        for name in (f"folder-{i}", f"cli-{i}"):
            shutil.rmtree(work / name, ignore_errors=True)
    shutil.rmtree(work / "stages", ignore_errors=True)
    return out


def folder_in_process(mg: ModGraph, work: Path, repeats: int) -> dict:
    """files/s translating the folder ``work/wavs`` with ``translate_files`` (models loaded beforehand)."""
    wavs = sorted((work / "wavs").iterdir())
    mg.translate_files("fsdd", "mnist", [wavs[0]], work / "warm.png")  # loads both nodes and the associator
    rates, rss = [], []
    for i in range(repeats):
        target = work / f"folder-{i}"
        shutil.rmtree(target, ignore_errors=True)
        reset_peak_rss()
        start = time.perf_counter()
        report = mg.translate_files("fsdd", "mnist", [work / "wavs"], target)
        wall = time.perf_counter() - start
        assert len(report["written"]) == len(wavs)
        rates.append(len(wavs) / wall)
        rss.append(peak_rss_mib())
        shutil.rmtree(target, ignore_errors=True)
    return {"files_per_s": mean_std(rates), "peak_rss_mib": mean_std(rss)}


def translate_stages(mg: ModGraph, folder: Path, target: Path, repeats: int) -> dict:
    """Where a folder's time goes: reading and MFCCs, the models, writing PNGs (milliseconds per file)."""
    src, dst = mg.node("fsdd"), mg.node("mnist")
    files = sorted(folder.iterdir())
    path = mg.route("fsdd", "mnist")
    before = "read wavs + MFCC, resampled by torchaudio's convolution (before)"
    times: dict[str, list[float]] = {"read wavs + MFCC": [], before: [],
                                     "models (encode, associate, decode)": [], "write PNGs": []}
    for i in range(repeats):
        start = time.perf_counter()
        x, _ = src.modality.read_files(files)
        times["read wavs + MFCC"].append(time.perf_counter() - start)
        few_phases, audio_features._FEW_PHASES = audio_features._FEW_PHASES, 0  # every rate by torchaudio
        try:
            start = time.perf_counter()
            x_before, _ = src.modality.read_files(files)
            times[before].append(time.perf_counter() - start)
        finally:
            audio_features._FEW_PHASES = few_phases
        assert torch.equal(x, x_before)
        start = time.perf_counter()
        out = torch.cat([mg.translate_normalized(path, src.modality.normalize(x[s:s + 256], src.stats))
                         for s in range(0, len(x), 256)])
        raw = dst.modality.denormalize(out.flatten(0, 1), dst.stats)
        times["models (encode, associate, decode)"].append(time.perf_counter() - start)
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        start = time.perf_counter()
        for f, sample in zip(files, raw):
            dst.modality.write_file(sample, target / f"{f.stem}.png")
        times["write PNGs"].append(time.perf_counter() - start)
    return {k: mean_std([1000 * t / len(files) for t in v]) for k, v in times.items()}


# -- the registry --------------------------------------------------------------------------------


def build_registry(args, registry: Path) -> dict:
    """A small registry (fsdd and mnist nodes, the fsdd -> mnist edge): one epoch of each, about 5 minutes."""
    shutil.rmtree(registry, ignore_errors=True)
    mg = ModGraph(registry=registry, data_root=args.data_root, device="cpu", progress=False)
    start = time.perf_counter()
    mg.add_modality("mnist", epochs=1, recognizer_epochs=1)
    mg.add_modality("fsdd", epochs=1, recognizer_epochs=1)
    mg.link("fsdd", "mnist", epochs=1, one_way=True)
    return {"built": True, "seconds": time.perf_counter() - start,
            "budget": "add-modality mnist/fsdd --epochs 1 --recognizer-epochs 1; link fsdd mnist --epochs 1 --one-way"}


# -- the report -------------------------------------------------------------------------------------


def render(fig: dict) -> tuple[str, str]:
    t, tr = fig["training"], fig["translate"]
    rows = []
    for key, label in (("vae mnist", "VAE phase, MNIST"), ("vae fsdd", "VAE phase, FSDD"),
                       ("associator fsdd->mnist", "associator phase, fsdd -> mnist")):
        r = t[key]
        if r.get("kept_from"):  # a section not re-run by --only: say when it was measured
            label = f"{label} (measured {r['kept_from']}, with its registry)"
        k = f", {r['candidates']} candidates" if r.get("candidates", 1) > 1 else ""
        rows.append((f"{label}: samples/s, modgraph / bare loop ({r['steps']} steps of {r['batch_size']}{k})",
                     ">= 0.9 of bare", f"{fmt(r['ours']['samples_per_s'])} / {fmt(r['bare']['samples_per_s'])} "
                                       f"= **{fmt(r['ratio'], 3)}**"))
        if "steady_ratio" in r:
            rows.append((f"{label}: the same, steps at their median interval (steady)", ">= 0.9 of bare",
                         f"{fmt(r['ours']['steady_samples_per_s'])} / {fmt(r['bare']['steady_samples_per_s'])} "
                         f"= **{fmt(r['steady_ratio'], 3)}**"))
        if "ratio_without_validation" in r:
            val = fmt(r["validation_seconds"], 2)
            rows.append((f"{label}: the same without our validation pass ({val} s an epoch)",
                         "", f"**{fmt(r['ratio_without_validation'], 3)}**"))
        rows.append((f"{label}: peak RSS MiB, modgraph / bare loop", "",
                     f"{fmt(r['ours']['peak_rss_mib'])} / {fmt(r['bare']['peak_rss_mib'])}"))
    recipe = fig.get("recipe")
    rows.append(("recipe wall time (3 add-modality + 2 link, defaults)", "",
                 f"{recipe['seconds']:.0f} s (from core_bars.json, {recipe['date']}, not re-run)" if recipe
                 else "not measured (no docs/results/core_bars.json)"))
    when = f" (measured {tr['kept_from']}, with its registry)" if tr.get("kept_from") else ""
    one = tr["one_file_new_process"]
    rows.append((f"translate one wav -> PNG, new process{when}", "", f"{fmt(one['seconds'], 2)} s, "
                 f"peak RSS {fmt(one['peak_rss_mib'])} MiB"))
    fin = tr["folder_in_process"]
    rows.append((f"translate a folder of {tr['files']} wavs -> PNGs, in process (start excluded){when}",
                 ">= 200 files/s",
                 f"**{fmt(fin['files_per_s'])} files/s**, peak RSS {fmt(fin['peak_rss_mib'])} MiB"))
    spin = fig.get("translate_spinning")
    if spin:
        rows.append(("the same, OpenMP threads spinning while they wait (libgomp's default; before)", "",
                     f"{fmt(spin['folder_in_process']['files_per_s'])} files/s"))
    fnp = tr["folder_new_process"]
    rows.append((f"the same folder by `modgraph translate`, start-up included", "",
                 f"{fmt(fnp['files_per_s'])} files/s, peak RSS {fmt(fnp['peak_rss_mib'])} MiB"))
    table = "| what | bar | measured (mean ± std of 3 runs; training: seeds 0-2) |\n| --- | --- | --- |\n" + "\n".join(
        f"| {a} | {b} | {c} |" for a, b, c in rows)
    stages = "| stage | ms per file |\n| --- | --- |\n" + "\n".join(
        f"| {k} | {fmt(v, 2)} |" for k, v in tr["stages"].items())
    load = fig["load_average"]
    busy = max(load["before"][0], load["after"][0]) > 0.5 * fig["cpus"]
    shared = (f"The machine was shared with other jobs (load average above {0.5 * fig['cpus']:g} on {fig['cpus']} "
              "cores): wall times are those of a busy machine, and the ratios compare runs that met the same "
              "load.\n\n") if busy else ""
    md = (
        "## Cost: trainer throughput, memory, translation speed\n\n"
        f"Command: `{fig['command']}`\n\n"
        f"{fig['date']} · {fig['machine']} · {fig['cpus']} CPU cores, no GPU · torch {fig['torch']} "
        f"(threads per process: {fig['threads']}, MODGRAPH_NUM_THREADS={fig['modgraph_num_threads'] or 'unset'}) "
        f"· modgraph {fig['modgraph']} ({fig.get('revision', '?')}) · load average {load['before'][0]:.2f} before, "
        f"{load['after'][0]:.2f} after · raw figures: [cost.json](cost.json)\n\n"
        + shared + table + "\n\n"
        "Throughput is training samples over the wall time of one epoch (modgraph: the whole `train_vae` / "
        "`train_associator` call, with its validation pass, best-state copy, gradient clipping and learning-rate "
        "schedule; bare: Adam steps on the same modules and loss, nothing else), progress display off. "
        "VAE epochs are a seeded subset of the training split, validated on rows in the recipe's 9:1 proportion; "
        "the associator epoch is `link`'s (the target's pairs per epoch; validation on up to 5,000 pairs, "
        f"here {t['associator fsdd->mnist'].get('val_pairs')}, one per FSDD validation clip). "
        "modgraph's VAE trainer steps Adam's fused kernel, the bare loop the default one. "
        "Peak RSS is the process's high-water mark during the run (reset before it), so it includes the "
        "loaded features. The steady rows time each run with its optimizer steps at their median interval "
        "(time to the first step + median step interval x the later steps + time after the last), which a burst "
        "of load on a shared machine moves far less than the wall time. "
        "modgraph makes waiting OpenMP threads sleep (`OMP_WAIT_POLICY=PASSIVE` unless set); "
        "the spinning row runs the same folder with libgomp's default spin (`GOMP_SPINCOUNT=300000`).\n\n"
        f"Where a folder's time goes (each stage alone on the same {tr['files']} files):\n\n" + stages + "\n")
    return table, md


SECTIONS = ("vae mnist", "vae fsdd", "associator fsdd->mnist", "translate", "translate, spinning threads")
# libgomp's default when OMP_WAIT_POLICY is unset (about 3 ms of spinning), overriding modgraph's passive policy.
SPINNING = {"GOMP_SPINCOUNT": "300000"}


def section_slot(fig: dict, name: str, value: dict | None = None) -> dict | None:
    """Where a section's figures live in cost.json: read them, or store ``value`` there."""
    key = {"translate": "translate", "translate, spinning threads": "translate_spinning"}.get(name)
    holder, key = (fig, key) if key else (fig.setdefault("training", {}), name)
    if value is not None:
        holder[key] = value
    return holder.get(key)


def run_section(args, name: str, registry: Path) -> dict:
    """One section in this process (the orchestrator starts one process per section, so that each
    starts from the same state and its peak memory is its own)."""
    seeds = list(range(args.seeds))
    if name == "translate":
        return translate_figures(args, registry, args.work, args.seeds)
    if name == "translate, spinning threads":
        mg = ModGraph(registry=registry, data_root=args.data_root, device="cpu", progress=False)
        return {"folder_in_process": folder_in_process(mg, args.work, args.seeds), "env": SPINNING}
    mg = ModGraph(registry=registry, data_root=args.data_root, device="cpu", progress=False)
    if name.startswith("vae "):
        return vae_throughput(mg, name.split()[1], seeds, args.vae_steps)
    return associator_throughput(mg, "fsdd", "mnist", seeds, args.assoc_pairs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", type=Path, default=Path(os.environ.get("MODGRAPH_DATA", "../shared/data")))
    parser.add_argument("--registry", type=Path, help="a registry with fsdd and mnist nodes and the fsdd -> mnist "
                                                      "edge (default: build a small one under --work)")
    parser.add_argument("--work", type=Path, default=Path("benchmarks/.work/cost"))
    parser.add_argument("--out", type=Path, default=Path("docs/results"))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--vae-steps", type=int, default=150, help="at most this many VAE steps per run")
    parser.add_argument("--files", type=int, default=1000, help="wavs in the translated folder")
    parser.add_argument("--assoc-pairs", type=int, help="pairs per associator run (default: link's epoch)")
    parser.add_argument("--core-bars", type=Path, default=Path("docs/results/core_bars.json"),
                        help="where the recipe's wall time is read from")
    parser.add_argument("--only", action="append", choices=SECTIONS,
                        help="run only these sections; the others are kept from the last cost.json")
    parser.add_argument("--render", action="store_true", help="only rewrite cost.md (and results.md) from cost.json")
    parser.add_argument("--section", choices=SECTIONS, help=argparse.SUPPRESS)  # internal: one section, JSON out
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    registry = args.registry if args.registry is not None else args.work / "registry"
    if args.render:
        write_report(args, json.loads((args.out / "cost.json").read_text()))
        return
    if args.section:
        result = run_section(args, args.section, registry)
        result["threads"] = torch.get_num_threads()
        result["rss_at_end_mib"] = rss_mib()
        print("SECTION " + json.dumps(result), flush=True)
        return

    fig: dict = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": platform.platform(),
                 "cpus": os.cpu_count(), "torch": torch.__version__, "modgraph": __version__,
                 "command": " ".join([*(f"{k}={shlex.quote(os.environ[k])}" for k in ("MODGRAPH_NUM_THREADS",)
                                        if k in os.environ), shlex.join(["python", *sys.argv])]),
                 "revision": git_revision(),
                 "modgraph_num_threads": os.environ.get("MODGRAPH_NUM_THREADS"),
                 "load_average": {"before": list(os.getloadavg())}}
    if args.registry is None:
        log(f"building a small registry in {registry}")
        fig["registry"] = build_registry(args, registry)
    else:
        fig["registry"] = {"built": False, "path": str(registry)}
    previous = json.loads((args.out / "cost.json").read_text()) if args.only else {}
    fig.update({"training": {}, "translate": None, "translate_spinning": None})
    single_thread = os.environ.get("MODGRAPH_NUM_THREADS") == "1" or len(os.sched_getaffinity(0)) == 1
    for name in SECTIONS:
        if name == "translate, spinning threads" and single_thread:
            continue  # one thread never waits for another: nothing to compare
        if args.only and name not in args.only:
            kept = section_slot(previous, name)
            if kept is None:
                raise SystemExit(f"no earlier figures for {name!r} in {args.out / 'cost.json'}; run it too")
            result = {**kept, "kept_from": kept.get("kept_from", previous.get("date"))}
        else:
            log(name)
            cmd = [sys.executable, __file__, *sys.argv[1:], "--section", name, "--registry", str(registry)]
            env = {**os.environ, **SPINNING} if name == "translate, spinning threads" else None
            done = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True, env=env)
            lines = [line for line in done.stdout.splitlines() if line.startswith("SECTION ")]
            result = json.loads(lines[-1][len("SECTION "):])
        section_slot(fig, name, result)
    fig["threads"] = fig["translate"].get("threads")
    if args.core_bars.exists():
        c = json.loads(args.core_bars.read_text())
        fig["recipe"] = {"seconds": c["timings_s"]["recipe total"], "date": c["date"], "threads": c.get("threads"),
                         "source": str(args.core_bars)}
    fig["load_average"]["after"] = list(os.getloadavg())

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cost.json").write_text(json.dumps(fig, indent=2) + "\n")
    write_report(args, fig)


def write_report(args, fig: dict) -> None:
    table, md = render(fig)
    (args.out / "cost.md").write_text(md)
    print(table)
    from render_results import write  # benchmarks/ is on sys.path when this runs as a script

    results_md = write(args.out, args.out.parent / "results.md")
    print(f"wrote {args.out / 'cost.json'}, {args.out / 'cost.md'} and {results_md}")


if __name__ == "__main__":
    main()
