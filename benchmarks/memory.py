"""Issue 5's memory bar: 100,000 MFCC-sized samples train with peak resident memory under 3 GiB.

    MODGRAPH_NUM_THREADS=1 python benchmarks/memory.py [--rows 100000] [--test-rows 10000] [--out docs/results]

Registers a synthetic speech modality (the audio plugin's MFCC model, normalisation and
augmentation over deterministic pseudo-MFCCs of 40x101 in 10 classes, produced in chunks),
builds its feature cache into a temporary folder, then runs add-modality for one VAE
epoch and one recognizer epoch. Resident memory is sampled from /proc/self/status every
20 ms per phase; the whole run's peak is ru_maxrss (and VmHWM).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

import modgraph.api
from modgraph import ModGraph, __version__, hookimpl
from modgraph.features.cache import concatenate_chunks, in_memory_limit
from modgraph.modality import ClassInfo, FeatureSet, TrainingDefaults
from modgraph.plugins import PluginHost
from modgraph_audio import features as audio_features
from modgraph_audio.speech import SpeechModality

GIB = 1 << 30
BAR_BYTES = 3 * GIB
CHUNK_ROWS = 4096
ROWS = {"train": 100_000, "test": 10_000}  # set from the command line before the modality is used


class SyntheticMFCC(SpeechModality):
    """Pseudo-MFCCs: a smooth pattern per class (level, slope and ripple over coefficients and frames) plus noise."""

    name = "synthmfcc"
    description = "deterministic pseudo-MFCCs of 40x101 in 10 classes (a memory benchmark)"
    classes = [ClassInfo(name=str(i), concept=f"class{i}") for i in range(10)]
    needs_data = False
    training_defaults = TrainingDefaults(epochs=1, batch_size=128, lr=1e-3, kl_weight=0.1, recognizer_epochs=1)

    def cache_key(self) -> str:
        return f"{super().cache_key()}-{ROWS['train']}-{ROWS['test']}"

    def feature_chunks(self, root, split, download=False):
        n = ROWS[split]
        return [functools.partial(self.chunk, split, start, min(CHUNK_ROWS, n - start))
                for start in range(0, n, CHUNK_ROWS)]

    def load_features(self, root, split, download=False) -> FeatureSet:
        return concatenate_chunks(self.feature_chunks(root, split, download))

    @staticmethod
    def chunk(split: str, start: int, rows: int) -> FeatureSet:
        coeffs = torch.arange(audio_features.N_MFCC, dtype=torch.float32)[:, None]
        frames = torch.linspace(0, 1, audio_features.FEATURE_SHAPE[-1])[None, :]
        templates = torch.stack([
            (30 - 3 * c) * torch.exp(-coeffs / 8) * torch.cos(torch.pi * (c + 1) * frames + coeffs * (c + 1) / 7)
            for c in range(10)])  # (10, 40, 101)
        gen = torch.Generator().manual_seed(1_000_003 * (split == "test") + start)
        y = (torch.arange(start, start + rows) * 7919 + (split == "test")) % 10
        noise = torch.randn(rows, *templates.shape[1:], generator=gen) * 4.0
        x = (templates[y] + noise).unsqueeze(1)
        return FeatureSet(x=x, y=y, groups={"speaker": [f"s{i % 50}" for i in range(start, start + rows)]})


class SyntheticPlugin:
    @hookimpl
    def register_modalities(self, register):
        register(SyntheticMFCC())


def rss_bytes(field: str = "VmRSS") -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


class PeakSampler:
    """The largest resident set seen while a phase runs, sampled every 20 ms on a thread."""

    def __init__(self):
        self.peak = 0
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while self.running:
            self.peak = max(self.peak, rss_bytes())
            time.sleep(0.02)

    def __enter__(self):
        self.peak = rss_bytes()
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.running = False
        self.thread.join()
        self.peak = max(self.peak, rss_bytes())
        return False


def timed_calls(module, name: str, log: list):
    """Wrap ``module.name`` so each call's duration lands in ``log`` (the VAE and recognizer loops)."""
    original = getattr(module, name)

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        start = time.monotonic()
        try:
            return original(*args, **kwargs)
        finally:
            log.append((name, time.monotonic() - start))

    setattr(module, name, wrapper)


def gib(n: int) -> float:
    return round(n / GIB, 3)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000, help="training samples")
    parser.add_argument("--test-rows", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=Path("docs/results"))
    parser.add_argument("--work", type=Path, default=None, help="cache and registry folder [a temporary one]")
    parser.add_argument("--render-only", action="store_true", help="rewrite memory.md from memory.json")
    args = parser.parse_args()
    if args.render_only:
        render(json.loads((args.out / "memory.json").read_text()), args.out)
        return
    ROWS.update(train=args.rows, test=args.test_rows)
    work = args.work or Path(tempfile.mkdtemp(prefix="modgraph-memory-"))
    host = PluginHost(load_entry_points=False)
    host.add_plugin(SyntheticPlugin(), name="synthetic", distribution="modgraph-benchmark", version=__version__)
    mg = ModGraph(registry=work / "registry", cache_dir=work / "cache", data_root=work / "data", device="cpu",
                  plugins=host)
    modality = mg.modality("synthmfcc")
    row_bytes = 4 * torch.Size(modality.input_shape).numel()
    fig = {"rows": {"train": args.rows, "test": args.test_rows}, "row_shape": list(modality.input_shape),
           "train_feature_gib": gib(args.rows * row_bytes), "in_memory_limit_gib": gib(in_memory_limit()),
           "rss_at_start_gib": gib(rss_bytes())}
    try:
        with PeakSampler() as build:
            start = time.monotonic()
            train = mg.features(modality, "train")
            mg.features(modality, "test")
            fig["cache_build_s"] = round(time.monotonic() - start, 1)
        fig["cache_build_peak_rss_gib"] = gib(build.peak)
        fig["train_features"] = type(train.x).__name__
        fig["cache_gib_on_disk"] = gib(sum(p.stat().st_size for p in (work / "cache").rglob("*.safetensors")))
        del train
        calls: list = []
        timed_calls(modgraph.api, "train_vae", calls)
        timed_calls(modgraph.api, "train_recognizer", calls)
        with PeakSampler() as training:
            start = time.monotonic()
            report = mg.add_modality("synthmfcc")
            fig["add_modality_s"] = round(time.monotonic() - start, 1)
        fig["add_modality_peak_rss_gib"] = gib(training.peak)
        train_rows = mg.node("synthmfcc").meta["data"]["train_rows"]
        seconds = dict(calls)
        fig["train_rows_after_validation_split"] = train_rows
        fig["vae_epoch_s"] = round(seconds["train_vae"], 1)
        fig["vae_rows_per_s"] = round(train_rows / seconds["train_vae"], 1)
        fig["recognizer_epoch_s"] = round(seconds["train_recognizer"], 1)
        fig["recognizer_rows_per_s"] = round(train_rows / seconds["train_recognizer"], 1)
        fig["metrics"] = {k: round(v, 4) if isinstance(v, float) else v for k, v in report["metrics"].items()}
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    fig["peak_rss_gib"] = gib(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    fig["vm_hwm_gib"] = gib(rss_bytes("VmHWM"))
    fig["bar_gib"] = gib(BAR_BYTES)
    fig["passes"] = fig["peak_rss_gib"] < fig["bar_gib"]
    fig["load_average_1min_at_end"] = round(os.getloadavg()[0], 1)  # other jobs on the machine slow throughput
    fig.update(date=datetime.now(timezone.utc).date().isoformat(), machine=platform.node() or platform.machine(),
               platform=platform.platform(), cpu_count=os.cpu_count(),
               threads=int(os.environ.get("MODGRAPH_NUM_THREADS") or torch.get_num_threads()),
               torch=torch.__version__, modgraph=__version__,
               command=" ".join(["MODGRAPH_NUM_THREADS=1 python benchmarks/memory.py", *sys.argv[1:]]))
    render(fig, args.out)


def render(fig: dict, out: Path) -> None:
    rows = [
        ("training samples (features on disk)", f"{fig['rows']['train']:,} x {'x'.join(map(str, fig['row_shape']))} "
                                                f"float32 = {fig['train_feature_gib']} GiB"),
        ("feature cache build (train + test)", f"{fig['cache_build_s']} s, {fig['cache_gib_on_disk']} GiB on disk, "
                                               f"peak RSS {fig['cache_build_peak_rss_gib']} GiB"),
        ("train features held as", f"{fig['train_features']} (in-memory limit {fig['in_memory_limit_gib']} GiB; "
                                   f"loaded, raw and normalised, they would take {2 * fig['train_feature_gib']:.2f} GiB)"),
        ("add-modality (1 VAE + 1 recognizer epoch)", f"{fig['add_modality_s']} s, peak RSS "
                                                      f"{fig['add_modality_peak_rss_gib']} GiB"),
        ("VAE throughput", f"{fig['vae_rows_per_s']} samples/s ({fig['vae_epoch_s']} s an epoch of "
                           f"{fig['train_rows_after_validation_split']:,})"),
        ("recognizer throughput", f"{fig['recognizer_rows_per_s']} samples/s ({fig['recognizer_epoch_s']} s)"),
        ("recognizer / reconstruction accuracy", f"{100 * fig['metrics']['recognizer_accuracy']:.2f}% / "
                                                 f"{100 * fig['metrics']['reconstruction_accuracy']:.2f}%"),
        ("**peak resident memory, whole run** (ru_maxrss)", f"**{fig['peak_rss_gib']} GiB** (bar < {fig['bar_gib']} "
                                                          f"GiB: {'met' if fig['passes'] else 'NOT met'})"),
    ]
    table = "| what | measured |\n| --- | --- |\n" + "\n".join(f"| {a} | {b} |" for a, b in rows)
    print(table)
    out.mkdir(parents=True, exist_ok=True)
    (out / "memory.json").write_text(json.dumps(fig, indent=2) + "\n")
    (out / "memory.md").write_text(
        "## Memory: 100,000 MFCC-sized samples\n\n"
        f"`{fig['command'].strip()}`\n\n"
        f"{fig['date']}, {fig['machine']} ({fig['cpu_count']} CPUs, {fig['threads']} torch thread(s)"
        + (f", load average {fig['load_average_1min_at_end']} from other jobs" if "load_average_1min_at_end" in fig
           else "")
        + f"), torch {fig['torch']}, modgraph {fig['modgraph']}.\n\n"
        "A synthetic speech modality (the audio plugin's MFCC model, normalisation and augmentation "
        "over deterministic pseudo-MFCCs in 10 classes) gives its features in chunks of "
        f"{CHUNK_ROWS} rows; the cache writes them as shards and training reads batches from disk.\n\n"
        + table + "\n")


if __name__ == "__main__":
    main()
