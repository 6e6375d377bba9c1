"""Assembles docs/results.md from the fragments docs/results/<name>.md that each benchmark writes.

    python benchmarks/render_results.py [--results docs/results] [--output docs/results.md]

Known benchmarks come first in a fixed order, any others after them alphabetically. Relative
links in a fragment (plots next to it) are rewritten to resolve from the output file's folder.
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

ORDER = ["paper_tables", "core_bars", "second_judge", "scale_bars", "peers", "cost", "ddp", "memory", "gpu"]
BENCHMARKS = Path(__file__).resolve().parent
LINK = re.compile(r"(!?\[[^\]]*\]\()([^)\s]+)(\))")


def fragments(results: Path) -> list[Path]:
    """The fragment files of ``results``, in the order they appear in results.md."""
    found = {p.stem: p for p in results.glob("*.md")}
    known = [found.pop(name) for name in ORDER if name in found]
    return known + [found[name] for name in sorted(found)]


def title(text: str, fallback: str) -> str:
    for line in text.splitlines():
        if line.startswith("## "):
            return line[3:].strip()
    return fallback


def anchor(heading: str, seen: dict[str, int]) -> str:
    """GitHub's anchor for a heading, numbered like GitHub's when two headings share one."""
    slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
    count = seen.get(slug, 0)
    seen[slug] = count + 1
    return slug if count == 0 else f"{slug}-{count}"


def rebase_links(text: str, fragment: Path, output: Path) -> str:
    """Relative link targets, read from the fragment's folder, made relative to the output's folder."""
    def rebase(match: re.Match) -> str:
        target = match.group(2)
        if re.match(r"^([a-z][a-z0-9+.-]*:|/|#)", target, re.I):
            return match.group(0)
        path, _, frag = target.partition("#")
        resolved = fragment.parent / path
        if not resolved.exists() and Path(path).exists():  # written relative to the repository root
            resolved = Path(path)
        new = os.path.relpath(resolved.resolve(), output.parent.resolve()).replace(os.sep, "/")
        return match.group(1) + new + (f"#{frag}" if frag else "") + match.group(3)
    return LINK.sub(rebase, text)


def assemble(results: Path, output: Path) -> str:
    """The text of results.md: a header, an index, then every fragment with a section title."""
    parts, index, seen = [], [], {}
    for path in fragments(results):
        text = path.read_text().strip()
        heading = title(text, path.stem)
        if not text.startswith("## "):  # a fragment without its own title gets its name as one
            text = f"## {heading}\n\n{text}"
        script = BENCHMARKS / f"{path.stem}.py"
        command = f"`python benchmarks/{path.stem}.py`" if script.exists() else "no script of that name"
        index.append(f"- [{heading}](#{anchor(heading, seen)}) ({command}; "
                     f"[fragment]({os.path.relpath(path.resolve(), output.parent.resolve())}))")
        parts.append(rebase_links(text, path, output))
    header = (
        "# Results\n\n"
        "Generated, do not edit by hand: each benchmark script `python benchmarks/<name>.py` writes its figures "
        f"to `{results.as_posix()}/<name>.json` and its section to `{results.as_posix()}/<name>.md`, then "
        "`python benchmarks/render_results.py` assembles this file from those sections. Each section names the "
        "exact command, date, machine and versions that produced it. Translation accuracies are the paper's "
        "translation (`modgraph eval --anchor 0`) unless a column says *anchored* (what `translate` writes and "
        "`eval` measures by default, `--anchor 20`).\n\n"
    )
    body = "\n\n".join(parts) if parts else f"No results yet: no fragment in `{results.as_posix()}`."
    return header + "\n".join(index) + ("\n\n" if index else "") + body + "\n"


def write(results: Path = Path("docs/results"), output: Path = Path("docs/results.md")) -> Path:
    output.write_text(assemble(results, output))
    return output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("docs/results"), help="folder of the fragments")
    parser.add_argument("--output", type=Path, default=Path("docs/results.md"))
    args = parser.parse_args()
    out = write(args.results, args.output)
    names = [p.stem for p in fragments(args.results)]
    print(f"wrote {out}: {len(names)} sections ({', '.join(names) or 'none'})")


if __name__ == "__main__":
    main()
