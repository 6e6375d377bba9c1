"""Issue 20's bars: digits typed in the installed fonts, read by mnist and translated to fsdd.

    python benchmarks/real_inputs.py --registry REG [--data-root ../shared/data] [--out docs/results]

Renders 0-9 in every TrueType/OpenType font ``fc-list`` finds (typed: canvases of various
sizes, dark on light and light on dark, rotated up to 10 degrees, uneven lighting, some
saved as JPEG; drawn: the glyph thickened by a round pen), reads them with ``modgraph read``'s
and ``modgraph translate``'s library functions, before (the plain resize reading) and after
(MNIST's framing), and reports accuracy by font group: group 0 was used for tuning, groups 1
and 2 never were. Also real MNIST test digits saved as PNG (the framing must not lose them).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import subprocess
import sys
import time
import zlib
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from modgraph import ModGraph, __version__
from modgraph.inference import translation as translation_module
from modgraph.inference.readings import read_files

GROUPS = 3  # fonts are split by family; group 0 is the tuning group
# Families whose digit code points draw something else (URW's clone of ITC Zapf Dingbats draws
# pencils, scissors and ticks there): their renderings are not digits of any kind.
NOT_DIGITS = {"D050000L"}
TUNING_GROUP = 0
WRITE_AUDIO = False  # --write-audio: translate writes every wav as the CLI does


def installed_fonts() -> list[tuple[str, Path]]:
    """(family, file) of every TrueType/OpenType font that draws ten distinct digits."""
    listing = subprocess.run(["fc-list", "--format", "%{family[0]}\t%{file}\n"], capture_output=True, text=True).stdout
    fonts = []
    for line in sorted(set(listing.splitlines())):
        family, _, file = line.partition("\t")
        if Path(file).suffix.lower() in (".ttf", ".otf") and family not in NOT_DIGITS and _draws_digits(Path(file)):
            fonts.append((family, Path(file)))
    return fonts


def _draws_digits(file: Path) -> bool:
    try:
        font = ImageFont.truetype(str(file), 40)
    except OSError:
        return False
    shapes = set()
    for text in [*"0123456789", "\uffff"]:
        image = Image.new("L", (80, 80))
        ImageDraw.Draw(image).text((40, 40), text, font=font, fill=255, anchor="mm")
        shapes.add(image.tobytes())
    return len(shapes) == 11  # no two digits alike, none drawn as the missing-glyph box


def group_of(family: str) -> int:
    return zlib.crc32(family.encode()) % GROUPS


def render(file: Path, digit: int, rng: random.Random, drawn: bool) -> tuple[Image.Image, dict]:
    """One digit on a canvas of random size, polarity, rotation, lighting and noise."""
    size = rng.randint(28, 160)
    font = ImageFont.truetype(str(file), size)
    stroke = max(1, round(size * rng.uniform(0.05, 0.09))) if drawn else 0
    left, top, right, bottom = font.getbbox(str(digit), stroke_width=stroke, anchor="mm")
    glyph_w, glyph_h = right - left, bottom - top
    width = max(glyph_w + 4, round(max(glyph_w, glyph_h) * rng.uniform(1.15, 3.0)))
    height = max(glyph_h + 4, round(max(glyph_w, glyph_h) * rng.uniform(1.15, 3.0)))
    cx = rng.uniform(glyph_w / 2 + 2, width - glyph_w / 2 - 2)
    cy = rng.uniform(glyph_h / 2 + 2, height - glyph_h / 2 - 2)
    mask = Image.new("L", (width, height))
    ImageDraw.Draw(mask).text((cx, cy), str(digit), font=font, fill=255, anchor="mm",
                              stroke_width=stroke, stroke_fill=255)
    angle = rng.uniform(-10, 10)
    mask = mask.rotate(angle, resample=Image.Resampling.BICUBIC, center=(cx, cy))
    light = rng.random() < 0.5
    paper, ink = (rng.uniform(170, 255), rng.uniform(0, 90)) if light else (rng.uniform(0, 80), rng.uniform(170, 255))
    m = np.asarray(mask, dtype=np.float32) / 255
    gradient = 0.0
    if rng.random() < 0.3:  # uneven lighting: a ramp across the page
        ramp = rng.uniform(-40, 40)
        gradient = np.linspace(-ramp, ramp, width)[None, :] + np.linspace(-ramp / 2, ramp / 2, height)[:, None]
    noise = np.random.default_rng(rng.randrange(1 << 30)).normal(0, rng.uniform(0, 6), m.shape)
    pixels = np.clip(paper + (ink - paper) * m + gradient + noise, 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels, mode="L")
    if rng.random() < 0.3:  # a tinted photo or scan
        tint = [rng.uniform(0.8, 1.0) for _ in range(3)]
        image = Image.merge("RGB", [image.point(lambda v, t=t: v * t) for t in tint])
    jpeg = rng.random() < 0.4
    return image, {"light": light, "angle": round(angle, 1), "jpeg": jpeg, "drawn": drawn,
                   "canvas": f"{width}x{height}", "quality": rng.randint(50, 95) if jpeg else None}


def write_set(folder: Path, fonts: list[tuple[str, Path]], typed: int, drawn: int, seed: int) -> list[dict]:
    """Render every font's digits into ``folder``; one record per file."""
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    for f, (family, file) in enumerate(fonts):
        for digit in range(10):
            for k in range(typed + drawn):
                rng = random.Random(f"{seed}-{file.name}-{digit}-{k}")
                image, info = render(file, digit, rng, drawn=k >= typed)
                path = folder / f"f{f:03d}_{digit}_{k}.{'jpg' if info['jpeg'] else 'png'}"
                image.save(path, **({"quality": info["quality"]} if info["jpeg"] else {}))
                records.append({"path": str(path), "digit": digit, "family": family, "font": file.name,
                                "group": group_of(family), **info})
    return records


@contextlib.contextmanager
def mnist_reading(mode: str):
    """How mnist reads files: "plain" as before issue 20 (the whole picture resized to 28x28),
    "framed" as now, "forced" as now but framing even pictures already framed like MNIST's."""
    from modgraph_vision import framing, images, mnist

    original, already = mnist.MNIST.read_file, framing.looks_like_mnist
    if mode == "plain":
        mnist.MNIST.read_file = lambda self, path: images.read_grayscale_image(path, size=28)
    elif mode == "forced":
        framing.looks_like_mnist = lambda gray: False
    try:
        yield
    finally:
        mnist.MNIST.read_file, framing.looks_like_mnist = original, already


@contextlib.contextmanager
def patched(owner, name: str, value):
    original = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, original)


def measure(mg: ModGraph, folder: Path, out: Path | None, mode: str, anchor: int | None = None) -> tuple[dict, dict]:
    """{path: read_as} from ``read`` and {path: written_as} from ``translate mnist -> fsdd`` (when ``out``)."""
    with mnist_reading(mode), contextlib.ExitStack() as stack:
        if not WRITE_AUDIO:  # resynthesis is the slow part and does not change what fsdd reads: the decoded MFCCs
            stack.enter_context(patched(translation_module, "write_outputs", lambda modality, outputs, scale=1: []))
        read = read_files(mg, "mnist", [folder])
        translated = (mg.translate_files("mnist", "fsdd", [folder], out, anchor=anchor) if out
                      else {"rows": [], "errors": {}})
    assert not read["errors"] and not translated["errors"], (read["errors"], translated["errors"])
    return ({r["input"]: r["read_as"] for r in read["rows"]},
            {r["input"]: r["written_as"] for r in translated["rows"]})


def score(records: list[dict], read: dict, written: dict, fsdd_names: list[str]) -> dict:
    """Accuracy (%) and n over ``records``: read as the digit, written as the digit."""
    n = len(records)
    if not n:
        return {"n": 0}
    right_read = sum(read[r["path"]] == str(r["digit"]) for r in records)
    right_written = sum(written[r["path"]] == fsdd_names[r["digit"]] for r in records)
    return {"n": n, "read": round(100 * right_read / n, 2), "written": round(100 * right_written / n, 2)}


def real_mnist(mg: ModGraph, folder: Path, count: int) -> dict:
    """Recognizer accuracy on MNIST test digits written as PNG, before and after, and on the tensors."""
    from modgraph_vision.images import write_grayscale_png

    node = mg.node("mnist")
    test = mg.features(node.modality, "test")
    folder.mkdir(parents=True, exist_ok=True)
    labels = {}
    for i in range(count):
        path = folder / f"mnist_{i:05d}.png"
        write_grayscale_png(test.x[i], path)
        labels[str(path)] = str(int(test.y[i]))
    result = {"n": count}
    for name, mode in (("before", "plain"), ("after", "framed"), ("after, framing forced", "forced")):
        read, _ = measure(mg, folder, None, mode)
        result[name] = round(100 * sum(read[p] == y for p, y in labels.items()) / count, 2)
    with torch.no_grad():
        pred = node.recognizer(node.modality.normalize(test.x[:count], node.stats)).argmax(1)
    result["tensors"] = round(100 * float((pred == test.y[:count]).float().mean()), 2)
    return result


def breakdown(records: list[dict], read: dict, written: dict, names: list[str]) -> dict:
    parts = defaultdict(list)
    for r in records:
        parts["drawn" if r["drawn"] else "typed"].append(r)
        parts["jpeg" if r["jpeg"] else "png"].append(r)
        parts["dark on light" if r["light"] else "light on dark"].append(r)
    return {k: score(v, read, written, names) for k, v in sorted(parts.items())}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--registry", type=Path, required=True, help="holds trained mnist and fsdd nodes, linked")
    parser.add_argument("--data-root", type=Path, default=Path(os.environ.get("MODGRAPH_DATA", "../shared/data")))
    parser.add_argument("--out", type=Path, default=Path("docs/results"))
    parser.add_argument("--work", type=Path, default=Path("benchmarks/.work/real_inputs"))
    parser.add_argument("--typed", type=int, default=3, help="typed renderings per font and digit")
    parser.add_argument("--drawn", type=int, default=1, help="drawn (thick pen) renderings per font and digit")
    parser.add_argument("--groups", type=int, nargs="+", default=list(range(GROUPS)),
                        help="font groups to measure (tuning looks at group 0 only)")
    parser.add_argument("--mnist-digits", type=int, default=10000, help="MNIST test digits written as PNG")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write-audio", action="store_true",
                        help="let translate write the wavs (slow: Griffin-Lim per clip); the readings are the same")
    parser.add_argument("--no-write", action="store_true", help="print, do not write docs/results")
    args = parser.parse_args()
    global WRITE_AUDIO
    WRITE_AUDIO = args.write_audio
    start = time.monotonic()
    mg = ModGraph(registry=args.registry, data_root=args.data_root, device="cpu", progress=False)
    fonts = [f for f in installed_fonts() if group_of(f[0]) in args.groups]
    folder = args.work / "images"
    if folder.exists():
        for p in folder.iterdir():
            p.unlink()
    records = write_set(folder, fonts, args.typed, args.drawn, args.seed)
    names = mg.node("fsdd").modality.class_names
    fig = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": platform.platform(),
           "torch": torch.__version__, "modgraph": __version__, "command": " ".join(["python", *sys.argv]),
           "fonts": {g: sorted({f"{fam} ({file.name})" for fam, file in fonts if group_of(fam) == g})
                     for g in args.groups},
           "typed_per_font_digit": args.typed, "drawn_per_font_digit": args.drawn, "wavs_written": args.write_audio}
    # before issue 20: resized whole, translated as it is; framed: as MNIST's digits were made, translated
    # as it is (--anchor 0); after: framed and anchored (translate's defaults today).
    for name, mode, anchor in (("before", "plain", 0), ("framed", "framed", 0), ("after", "framed", None)):
        read, written = measure(mg, folder, args.work / f"out-{name}", mode, anchor)
        by_group = {g: score([r for r in records if r["group"] == g], read, written, names) for g in args.groups}
        held_out = [r for r in records if r["group"] != TUNING_GROUP]
        fig[name] = {"groups": by_group, "held_out": score(held_out, read, written, names),
                     "held_out_parts": breakdown(held_out, read, written, names)}
        if name == "after":
            fig["held_out_misread"] = sorted(
                (f"{Path(r['path']).name} {r['family']} {r['digit']}->{read[r['path']]}"
                 for r in held_out if read[r["path"]] != str(r["digit"])))[:60]
        print(name, json.dumps(fig[name]["groups"]), json.dumps(fig[name]["held_out"]), flush=True)
    if args.mnist_digits:
        fig["mnist_png"] = real_mnist(mg, args.work / "mnist_png", args.mnist_digits)
        print("mnist png", json.dumps(fig["mnist_png"]))
    fig["seconds"] = round(time.monotonic() - start, 1)
    if not args.no_write:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "real_inputs.json").write_text(json.dumps(fig, indent=2))
        write_markdown(fig, args)


def write_markdown(fig: dict, args) -> None:
    before, after = fig["before"], fig["after"]
    groups = sorted(after["groups"], key=int)
    rows = [(f"font group {g}{' (tuning)' if int(g) == TUNING_GROUP else ' (held out)'}: "
             f"{len(fig['fonts'][g])} fonts", after["groups"][g]["n"],
             before["groups"][g], after["groups"][g]) for g in groups]
    rows.append(("**held-out groups together**", after["held_out"]["n"], before["held_out"], after["held_out"]))
    rows += [(f"held out, {k}", v["n"], before["held_out_parts"][k], v) for k, v in after["held_out_parts"].items()]
    framed = fig.get("framed")
    middle = {what: part for what, part in zip(
        [r[0] for r in rows],
        [framed["groups"][g] for g in groups] + [framed["held_out"]] + list(framed["held_out_parts"].values()))} \
        if framed else {}
    table = ("| inputs | n | mnist read right, before -> after | mnist -> fsdd written right, before -> framed, "
             "`--anchor 0` -> after |\n| --- | --- | --- | --- |\n"
             + "\n".join(f"| {what} | {n} | {b['read']:.2f} -> {a['read']:.2f} | {b['written']:.2f} -> "
                         + (f"{middle[what]['written']:.2f} -> " if what in middle else "")
                         + f"{a['written']:.2f} |" for what, n, b, a in rows))
    mnist_png = fig.get("mnist_png")
    mnist_line = (f"MNIST test digits saved as PNG (the first {mnist_png['n']:,}): read right {mnist_png['before']:.2f}% "
                  f"before, {mnist_png['after']:.2f}% after ({mnist_png['tensors']:.2f}% on the dataset's tensors; "
                  f"{mnist_png['after, framing forced']:.2f}% when even digits already framed like MNIST's are "
                  "framed again).\n\n" if mnist_png else "")
    fonts = "\n".join(f"- group {g}: " + ", ".join(fig["fonts"][g]) for g in groups)
    (args.out / "real_inputs.md").write_text(
        "## Issue 20: typed and drawn digits through mnist and mnist -> fsdd\n\n"
        f"`{fig['command']}`\n\n"
        f"{fig['date']} · {fig['machine']} · torch {fig['torch']}, modgraph {fig['modgraph']} · "
        f"{fig['seconds']:.0f} s · raw figures: [real_inputs.json](real_inputs.json)\n\n"
        f"Every installed TrueType/OpenType font that draws ten distinct digits (less "
        f"{', '.join(sorted(NOT_DIGITS))}, whose digit code points draw pictographs), split by family into "
        f"{GROUPS} groups; only group {TUNING_GROUP} was looked at while tuning the framing. Per font and digit: "
        f"{fig['typed_per_font_digit']} typed renderings (canvas 1.15-3x the glyph, either polarity, rotated up "
        f"to 10 degrees, grey levels, noise, a lighting ramp on 30%, tinted RGB on 30%, JPEG quality 50-95 on "
        f"40%) and {fig['drawn_per_font_digit']} drawn one (the glyph thickened by a round pen 5-9% of the font "
        "size). *Read*: `modgraph read --modality mnist` names the digit; *written*: `modgraph translate "
        "--from mnist --to fsdd` gives audio that fsdd's recognizer reads as the digit. *Before*: the picture "
        "resized whole to 28x28 and translated as it is (before issue 20); *framed, `--anchor 0`*: framed as "
        "MNIST's digits were made, the latent translated as it is (the paper's translation); *after*: framed, "
        "and the latent anchored to its 20 nearest MNIST training latents of the digit read (translate's "
        "defaults). "
        "*Written* is what fsdd's recognizer reads in the decoded MFCCs, which is what `translate --json` "
        "reports; " + ("the wavs were written too" if fig["wavs_written"] else "the wavs themselves were not "
        "resynthesised (Griffin-Lim per clip is the slow part and changes nothing read)") + ". "
        "Bars (fonts never seen): read >= 95%, written >= 90%.\n\n"
        + mnist_line + table + "\n\n### Fonts\n\n" + fonts + "\n")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from render_results import write

    print(f"wrote {args.out / 'real_inputs.md'} and {write(args.out, args.out.parent / 'results.md')}")


if __name__ == "__main__":
    main()
