"""Issue 19's gsc bars on the real Speech Commands clips here, with defaults: a markdown table and JSON.

    python benchmarks/voices.py [--data-root ../shared/data] [--registry R] [--train] [--out docs/results]

With ``--train`` it runs ``add-modality`` for gsc, mnist, gtsrb, fsdd and spoken and ``link gsc
mnist``, ``link gsc gtsrb``, ``link fsdd mnist`` and ``link spoken mnist`` into R (defaults, seed
0), timing each; without it it measures the nodes and edges R already holds (the fsdd and
spoken tables where R has them). Every figure is on held-out speakers (gsc's test split) or the other
modality's test split, as ``modgraph eval`` reports it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from modgraph import ModGraph, __version__
from modgraph.settings import DEFAULT_ANCHOR
from core_bars import loso_file
from unheard_voices import held_out_digit_clips, measure as measure_unheard

# (what, source, target, bar): the bars.
BARS = [
    ("gsc recognizer (held-out speakers)", "gsc", None, 0.92),
    ("gsc VAE reconstruction", "gsc", "gsc", None),
    ("gsc -> mnist (shared digits)", "gsc", "mnist", 0.92),
    ("mnist -> gsc (shared digits)", "mnist", "gsc", 0.85),
    ("gsc -> gtsrb (go, left, right)", "gsc", "gtsrb", 0.85),
    ("gtsrb -> gsc (Ahead only, Turn left/right ahead)", "gtsrb", "gsc", 0.85),
]


SPOKEN = ("fsdd", "spoken")  # the spoken-digit modalities: the paper's five speakers, and with more voices


def train(mg: ModGraph, timings: dict) -> None:
    for name in ("gsc", "mnist", "gtsrb", *SPOKEN):
        start = time.monotonic()
        mg.add_modality(name)
        timings[f"add-modality {name}"] = round(time.monotonic() - start)
    for source, target in (("gsc", "mnist"), ("gsc", "gtsrb"), *((name, "mnist") for name in SPOKEN)):
        start = time.monotonic()
        mg.link(source, target)
        timings[f"link {source} {target}"] = round(time.monotonic() - start)


def measure_spoken_digits(mg: ModGraph, name: str, data_root: Path, loso: Path) -> list[dict]:
    """The issue's table for one spoken-digit node: node -> mnist and its recognizer, by who speaks."""
    node = mg.node(name)
    rows = [{"who": "FSDD's own test split (its 5 speakers)", "n": node.meta["metrics"]["test_samples"],
             "to mnist": round(mg.evaluate(name, "mnist", anchor=0)["accuracy"], 4),
             "anchored": round(mg.evaluate(name, "mnist", anchor=DEFAULT_ANCHOR)["accuracy"], 4),
             "recognizer": round(node.meta["metrics"]["recognizer_accuracy"], 4)}]
    if loso.exists():
        fig = json.loads(loso.read_text())
        per = ", ".join(f"{k} {100 * v['accuracy']:.1f}" for k, v in fig["loso"].items())
        rows.append({"who": f"one FSDD speaker never heard, mean of {len(fig['loso'])} "
                            f"({fig.get('loso_how', '`core_bars.py --part loso`')}, {fig['loso_date'][:10]}: {per})",
                     "n": sum(v["n"] for v in fig["loso"].values()),
                     "to mnist": round(fig["loso_mean"], 4), "recognizer": None})
    for which, lists in (("test", "testing"), ("validation", "validation")):
        paths, labels = held_out_digit_clips(data_root, which)
        result = measure_unheard(mg, paths, labels, node=name)
        rows.append({"who": f"Speech Commands digit words, speakers of its {lists} list (never in training), "
                            f"16 kHz, their own microphones", "n": result["n"],
                     "to mnist": result["to mnist"], "recognizer": result["recognizer"],
                     "anchored": result["to mnist anchored"], "per digit": result["to mnist per digit"]})
    return rows


def spoken_tables(mg: ModGraph, data_root: Path, out: Path) -> dict:
    """Each spoken-digit node the registry holds: its options and its rows."""
    return {name: {"options": mg.node(name).modality.options.model_dump(),
                   "rows": measure_spoken_digits(mg, name, data_root, loso_file(out, name))}
            for name in SPOKEN if name in mg.graph().nodes and mg.graph().has_edge(name, "mnist")}


def measure(mg: ModGraph) -> list[dict]:
    rows = []
    for what, source, target, bar in BARS:
        if target is None:
            node = mg.node(source)
            value, n, per_class = node.meta["metrics"]["recognizer_accuracy"], node.meta["metrics"]["test_samples"], {}
        else:
            result = mg.evaluate(source, target, anchor=0)
            value, n, per_class = result["accuracy"], result["n"], result["per_class"]
        rows.append({"what": what, "accuracy": round(value, 4), "n": n, "bar": bar, "per_class": per_class,
                     "met": None if bar is None else value >= bar})
    return rows


def render(fig: dict) -> str:
    lines = ["## Voices never heard: gsc on the Speech Commands clips here, and spoken digits (issue 19)", "",
             f"Command: `python benchmarks/voices.py{' --train' if fig['trained'] else ''}`. {fig['when']}, "
             f"{fig['platform']}, torch {fig['torch']}, modgraph {fig['modgraph']}. Defaults, seed 0. The gsc node "
             f"learnt {', '.join(fig['gsc_words'])} (Speech Commands {fig['gsc_version']}); test split: "
             f"held-out speakers.", "",
             "| figure | bar | measured | n | per class |", "| --- | --- | --- | --- | --- |"]
    for r in fig["rows"]:
        bar = "-" if r["bar"] is None else f">= {100 * r['bar']:.0f}"
        per_class = ", ".join(f"{k} {100 * v:.1f}" for k, v in r["per_class"].items())
        mark = "" if r["met"] is None else (" (met)" if r["met"] else " (missed)")
        lines.append(f"| {r['what']} | {bar} | {100 * r['accuracy']:.2f}{mark} | {r['n']} | {per_class} |")
    for name, table in fig.get("spoken", {}).items():
        lines += ["", f"### Spoken digits by who speaks (the {name} node)", "",
                  f"`add-modality {name}` with defaults ({table['options']}), `link {name} mnist` with defaults. "
                  f"Bars: {name} -> mnist >= 80 on speakers never heard, FSDD leave-one-speaker-out mean >= 85; "
                  "on FSDD's own test split fsdd -> mnist stays at 97.5.", "",
                  f"*{name} -> mnist*: the paper's translation (`eval --anchor 0`); *anchored*: what `translate` writes and `eval` measures "
                  "by default (`--anchor 20`, docs/tuning.md).", "",
                  f"| who speaks | n | {name} -> mnist | anchored | {name} recognizer | {name} -> mnist per digit |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for r in table["rows"]:
            rec = "-" if r["recognizer"] is None else f"{100 * r['recognizer']:.2f}"
            per = ", ".join(f"{k} {100 * v:.0f}" for k, v in r.get("per digit", {}).items())
            anchored = "-" if r.get("anchored") is None else f"{100 * r['anchored']:.2f}"
            lines.append(f"| {r['who']} | {r['n']} | {100 * r['to mnist']:.2f} | {anchored} | {rec} | {per} |")
    if fig.get("note"):
        lines += ["", fig["note"]]
    if fig.get("timings_s"):
        lines += ["", "| command | seconds |", "| --- | --- |"]
        lines += [f"| {k} | {v} |" for k, v in fig["timings_s"].items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-root", type=Path, default=Path(os.environ.get("MODGRAPH_DATA", "../shared/data")))
    parser.add_argument("--registry", type=Path, default=Path("benchmarks/.work/voices"))
    parser.add_argument("--out", type=Path, default=Path("docs/results"))
    parser.add_argument("--train", action="store_true", help="train the nodes and links first (defaults)")
    parser.add_argument("--note", help="how the measured nodes were trained, when not by --train; kept in the JSON")
    args = parser.parse_args()
    mg = ModGraph(registry=args.registry, data_root=args.data_root, device="cpu", progress=False)
    timings: dict = {}
    if args.train:
        train(mg, timings)
    gsc = mg.node("gsc").modality
    fig = {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "platform": platform.platform(),
           "torch": torch.__version__, "modgraph": __version__, "trained": args.train,
           "gsc_words": gsc.class_names, "gsc_version": gsc.options.version,
           "rows": measure(mg), "timings_s": timings, "note": args.note}
    fig["spoken"] = spoken_tables(mg, args.data_root, args.out)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "voices.json").write_text(json.dumps(fig, indent=2) + "\n")
    text = render(fig)
    (args.out / "voices.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
