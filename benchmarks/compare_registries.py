"""Are two registries the same training? Per node and edge file: its weights bit for bit, and its
measured figures (the header's ``metrics``) to the last digit.

    python benchmarks/compare_registries.py OLD_REGISTRY NEW_REGISTRY

Used to show that a change of code leaves training as it was: train the same recipe at two commits
on one machine with the same threads (``MODGRAPH_NUM_THREADS``), then compare. Figures a newer
version adds are listed as added, not as differences. Exits 1 when a file or figure differs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from modgraph.storage.headers import file_metadata


def compare(old: Path, new: Path) -> tuple[list[str], bool]:
    """A line per file of ``new`` (and per file only ``old`` has), and whether everything matched."""
    lines, same = [], True
    names = sorted({p.relative_to(old) for p in old.rglob("*.safetensors")}
                   | {p.relative_to(new) for p in new.rglob("*.safetensors")})
    for name in names:
        a, b = old / name, new / name
        if not (a.exists() and b.exists()):
            lines.append(f"{name}: only in {'the old' if a.exists() else 'the new'} registry")
            same = False
            continue
        ta, tb = load_file(str(a)), load_file(str(b))
        weights = ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)
        ma = json.loads(file_metadata(a).get("metrics", "{}"))
        mb = json.loads(file_metadata(b).get("metrics", "{}"))
        changed = sorted(k for k in ma if ma[k] != mb.get(k))
        added = sorted(set(mb) - set(ma))
        same &= weights and not changed
        line = (f"{name}: weights {'bit-identical' if weights else 'DIFFER'}, figures "
                f"{'identical' if not changed else 'DIFFER: ' + ', '.join(f'{k} {ma[k]} -> {mb.get(k)}' for k in changed)}")
        lines.append(line + (f" (new figures: {', '.join(added)})" if added else ""))
    return lines, same


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    args = parser.parse_args()
    lines, same = compare(args.old, args.new)
    print("\n".join(lines))
    print("the same training" if same else "NOT the same training")
    sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()
