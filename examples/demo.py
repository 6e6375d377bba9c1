"""The paper's loop on real data, on a small budget: what `make demo` runs.

Equivalent CLI:
    modgraph add-modality mnist
    modgraph add-modality fsdd
    modgraph link fsdd mnist
    modgraph translate --from fsdd --to mnist 7_jackson_3.wav -o seven.png
    modgraph eval --from fsdd --to mnist

Data come from MODGRAPH_DATA (or --data-root); they are downloaded only when missing.
Everything is written under demo-out/ (registry, inputs, translations).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from modgraph import ModGraph
from modgraph.errors import DataNotFoundError
from modgraph.features.cache import default_data_root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=Path("demo-out"))
    parser.add_argument("--epochs", type=int, default=3, help="VAE epochs per modality (small budget)")
    parser.add_argument("--link-epochs", type=int, default=3)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    out = args.out
    data_root = args.data_root or default_data_root()
    mg = ModGraph(registry=out / "registry", data_root=data_root, device=args.device)
    started = time.monotonic()
    print(f"Data: {data_root}   registry: {mg.registry.root}")

    nodes = {}
    for name in ("mnist", "fsdd"):
        print(f"\n$ modgraph add-modality {name} --epochs {args.epochs}")
        try:
            nodes[name] = mg.add_modality(name, epochs=args.epochs, recognizer_epochs=2)
        except DataNotFoundError as exc:
            print(f"{exc}\n-> not found locally, downloading")
            nodes[name] = mg.add_modality(name, epochs=args.epochs, recognizer_epochs=2, download=True)
        m = nodes[name]["metrics"]
        print(f"  recognizer {m['recognizer_accuracy']:.2%}, VAE reconstruction {m['reconstruction_accuracy']:.2%}")

    print(f"\n$ modgraph link fsdd mnist --epochs {args.link_epochs}")
    link = mg.link("fsdd", "mnist", epochs=args.link_epochs)
    for direction, m in link["metrics"].items():
        print(f"  {direction}: {m['accuracy']:.2%}")

    # Real files in: FSDD test recordings and MNIST test digits written as PNGs.
    inputs = out / "inputs"
    inputs.mkdir(parents=True, exist_ok=True)
    recordings = Path(data_root) / "fsdd" / "recordings"
    wavs = [recordings / f"{d}_jackson_3.wav" for d in range(10)]
    mnist = mg.node("mnist").modality
    test = mg.features(mnist, "test")
    pngs = []
    for digit in range(10):
        row = int((test.y == digit).nonzero()[0])
        pngs += mnist.write_file(test.x[row], inputs / f"mnist_test_{digit}.png")

    print("\n$ modgraph translate --from fsdd --to mnist <10 wavs> -o demo-out/translations/fsdd-to-mnist")
    to_png = mg.translate_files("fsdd", "mnist", wavs, out / "translations" / "fsdd-to-mnist")
    print("$ modgraph translate --from mnist --to fsdd <10 pngs> -o demo-out/translations/mnist-to-fsdd")
    to_wav = mg.translate_files("mnist", "fsdd", pngs, out / "translations" / "mnist-to-fsdd")
    single = mg.translate_files("fsdd", "mnist", [recordings / "7_jackson_3.wav"], out / "seven.png")

    print("\n$ modgraph eval --from fsdd --to mnist ; eval --from mnist --to fsdd")
    results = {(a, b): mg.evaluate(a, b) for a, b in (("fsdd", "mnist"), ("mnist", "fsdd"))}

    print("\n" + "=" * 72)
    print(f"Done in {time.monotonic() - started:.0f} s. Wrote:")
    print(f"  registry:        {mg.registry.root}/ (nodes/mnist, nodes/fsdd, edges fsdd--mnist, mnist--fsdd)")
    print(f"  fsdd -> mnist:   {len(to_png['written'])} PNGs in {out / 'translations' / 'fsdd-to-mnist'}")
    print(f"  mnist -> fsdd:   {len(to_wav['written'])} files (wav + MFCC png) in {out / 'translations' / 'mnist-to-fsdd'}")
    print(f"  the README's example: {single['written'][0]} (from 7_jackson_3.wav)")
    print("Accuracies measured on the test splits (recognizers trained on real data):")
    for name, report in nodes.items():
        m = report["metrics"]
        print(f"  {name:<6} recognizer {m['recognizer_accuracy']:.2%}   VAE reconstruction {m['reconstruction_accuracy']:.2%}")
    for (a, b), r in results.items():
        print(f"  {a} -> {b}: {r['accuracy']:.2%} (n={r['n']})")
    print(f"Small budget ({args.epochs} VAE epochs); `modgraph add-modality` with defaults trains longer.")
    remember({"registry": mg.registry.root, "data-root": data_root})


def remember(places: dict) -> None:
    """The demo's registry and data root as the user's defaults (modgraph config), unless set already,
    so that the README's commands (eval, translate, serve) work after make demo without a flag."""
    from modgraph.runtime.user_config import config_path, configured, set_value

    new = {key: value for key, value in places.items() if configured(key) is None}
    for key, value in new.items():
        set_value(key, str(value))
    if new:
        print(f"Remembered {' and '.join(f'{k} {Path(v).resolve()}' for k, v in new.items())} in {config_path()} "
              f"(modgraph config shows them; modgraph config unset KEY forgets one)")


if __name__ == "__main__":
    main()
