"""Spoken digits said by people a node never heard: Speech Commands digit clips through the fsdd (or spoken) node.

    python benchmarks/unheard_voices.py --registry R [--node spoken] [--data-root D] [--option band_rate=8000]

R holds the node (fsdd by default), an mnist node and the node -> mnist associator. The clips are the
digit words of Speech Commands' testing and validation lists (speakers kept out of its
training split), recorded at 16 kHz on their speakers' own microphones; FSDD's five
speakers are not among them. Prints the node's recognizer's and node -> mnist's accuracy
on them, per list and per digit; ``--option`` reads the clips with other options (the
node's own are the default).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch

from modgraph import ModGraph
from modgraph.settings import DEFAULT_ANCHOR
from modgraph.learning.training import predict

DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
LISTS = {"test": "testing_list.txt", "validation": "validation_list.txt"}


def held_out_digit_clips(data_root: Path, which: str = "test", version: str = "v0.01") -> tuple[list[Path], list[int]]:
    """The digit clips of one Speech Commands list (its speakers are in no training split), with their digits."""
    folder = Path(data_root) / "SpeechCommands" / f"speech_commands_{version}"
    listed = sorted(line.strip() for line in (folder / LISTS[which]).read_text().splitlines() if line.strip())
    paths, labels = [], []
    for entry in listed:
        word = entry.split("/")[0]
        if word in DIGITS and (folder / entry).is_file():
            paths.append(folder / entry)
            labels.append(DIGITS.index(word))
    return paths, labels


@torch.no_grad()
def measure(mg: ModGraph, paths: list[Path], labels: list[int], options: dict | None = None,
            node: str = "fsdd") -> dict:
    """``node``'s recognizer and ``node`` -> mnist accuracy on the clips (read with ``options`` on top of its own)."""
    loaded = mg.node(node)
    modality = loaded.modality.with_options({**loaded.modality.options.model_dump(), **(options or {})})
    x, _notes = modality.read_files(paths)
    y = torch.tensor(labels)
    xn = modality.normalize(x, loaded.stats)
    recognized = predict(loaded.recognizer, xn)
    # The spoken-digit modalities' class i is the digit i, and so is mnist's.
    judge = mg.node("mnist").recognizer
    translated = predict(judge, mg.translate_normalized([node, "mnist"], xn)[:, 0])
    # What `translate` writes by default: the latent anchored (modgraph.inference.anchors), where the node stores anchors.
    anchored = predict(judge, mg.translate_normalized([node, "mnist"], xn, anchor=DEFAULT_ANCHOR)[:, 0])
    result = {"n": len(y)}
    for name, pred in (("recognizer", recognized), ("to mnist", translated), ("to mnist anchored", anchored)):
        right = pred == y
        result[name] = round(right.float().mean().item(), 4)
        result[f"{name} per digit"] = {DIGITS[d]: round(right[y == d].float().mean().item(), 3)
                                       for d in y.unique().tolist()}
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--registry", type=Path, required=True)
    parser.add_argument("--data-root", type=Path, default=Path(os.environ.get("MODGRAPH_DATA", "../shared/data")))
    parser.add_argument("--node", default="fsdd", help="the spoken-digit node to measure (fsdd or spoken)")
    parser.add_argument("--option", action="append", default=[], help="KEY=VALUE read option of the node")
    args = parser.parse_args()
    options = {k: json.loads(v) if v[:1].isdigit() or v in ("true", "false") else v
               for k, v in (o.split("=", 1) for o in args.option)}
    mg = ModGraph(registry=args.registry, data_root=args.data_root, device="cpu", progress=False)
    for which in LISTS:
        paths, labels = held_out_digit_clips(args.data_root, which)
        print(which, json.dumps(measure(mg, paths, labels, options, args.node)), flush=True)


if __name__ == "__main__":
    main()
