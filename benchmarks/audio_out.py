"""Is translated audio worth listening to? MNIST -> FSDD wavs, read back, judged by FSDD's recognizer.

    python benchmarks/audio_out.py --registry benchmarks/.work/recipe/registry [--per-class 20]

Translates MNIST test digits to wav files (inverse MFCC + Griffin-Lim), reads the wavs back
as a user's files would be read, and reports the recognizer's accuracy on them beside its
accuracy on the same outputs before resynthesis.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from modgraph import ModGraph
from modgraph.training import predict


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--registry", type=Path, default=Path("benchmarks/.work/recipe/registry"))
    parser.add_argument("--data-root", type=Path, default=Path(os.environ.get("MODGRAPH_DATA", "../shared/data")))
    parser.add_argument("--per-class", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("docs/results"))
    args = parser.parse_args()
    mg = ModGraph(registry=args.registry, data_root=args.data_root, device="cpu", progress=False)
    mnist, fsdd = mg.node("mnist"), mg.node("fsdd")
    test = mg.features(mnist.modality, "test")
    rows = torch.cat([(test.y == c).nonzero().flatten()[: args.per_class] for c in range(10)])
    with tempfile.TemporaryDirectory() as tmp:
        inputs = [mnist.modality.write_file(test.x[int(r)], Path(tmp) / "in" / f"{int(r)}.png")[0] for r in rows]
        start = time.monotonic()
        report = mg.translate_files("mnist", "fsdd", inputs, Path(tmp) / "out")
        seconds = time.monotonic() - start
        wavs = sorted(Path(p) for p in report["written"] if p.endswith(".wav"))
        by_stem = {p.stem: p for p in wavs}
        wavs = [by_stem[Path(p).stem] for p in inputs]
        x, _ = fsdd.modality.read_files(wavs)
    expected = test.y[rows]  # digit k -> spoken k (concept pairing)
    reread = predict(fsdd.recognizer, fsdd.modality.normalize(x, fsdd.stats))
    direct = predict(fsdd.recognizer, mg.translate_normalized(
        ["mnist", "fsdd"], mnist.modality.normalize(test.x[rows], mnist.stats))[:, 0])
    fig = {"n": len(rows), "accuracy_resynthesised_wavs": (reread == expected).float().mean().item(),
           "accuracy_before_resynthesis": (direct == expected).float().mean().item(),
           "seconds_to_translate_and_write": seconds}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "audio_out.json").write_text(json.dumps(fig, indent=2))
    print(json.dumps(fig, indent=2))


if __name__ == "__main__":
    main()
