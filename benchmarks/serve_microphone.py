"""Spoken digits through the page's microphone: real FSDD test recordings played into headless Chromium's
fake microphone, recorded on the page, translated, and the source's reading compared with the digit.

    python benchmarks/serve_microphone.py --registry REG --data-root DATA [--to mnist] [--screenshot docs/serve.png]

Needs a registry with a trained fsdd node linked to the target, FSDD under the data root, Playwright
for Python and Debian's chromium. Prints one line per recording and how many were read right.
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
import wave
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream"]
README_SIZE = {"width": 1280, "height": 860}


def recordings(data_root: Path, count: int) -> list[tuple[int, Path]]:
    """``count`` FSDD test recordings (take 0-4 of each speaker), digits 0-9 in turn across the speakers."""
    from modgraph.plugins import PluginHost

    fsdd = PluginHost().get("fsdd")
    files = fsdd.example_files(data_root, "test")
    speakers = sorted({path.stem.split("_")[1] for _, path in files})
    chosen = []
    for i in range(count):
        digit, speaker = i % 10, speakers[i % len(speakers)]
        chosen.append(next((d, p) for d, p in files if d == digit and p.stem.split("_")[1] == speaker))
    return chosen


def seconds(path: Path) -> float:
    with wave.open(str(path), "rb") as fh:
        return fh.getnframes() / fh.getframerate()


def padded(clip: Path, folder: Path, silence: float = 3.0) -> Path:
    """``clip`` followed by ``silence`` seconds of digital silence: played once, the fake microphone
    then gives zeros until recording stops (past the end of a file it gives noise, which the reader keeps)."""
    out = folder / clip.name
    with wave.open(str(clip), "rb") as fh:
        params, frames = fh.getparams(), fh.readframes(fh.getnframes())
    with wave.open(str(out), "wb") as fh:
        fh.setparams(params)
        fh.writeframes(frames + bytes(int(silence * params.framerate) * params.sampwidth * params.nchannels))
    return out


def choose(tab, source: str, target: str) -> None:
    for element, value in (("source", source), ("target", target)):
        tab.click(f"#{element} input")
        tab.click(f"ul[role=listbox] li[aria-label='{value}']")
    tab.wait_for_function(f"document.querySelector('#route').innerText.includes('Route: {source}')")


def speak(playwright, url: str, clip: Path, target: str, screenshot: Path | None) -> tuple[str, str, str]:
    """Play ``clip`` once into the page's microphone; the source's and target's top readings and the status."""
    browser = playwright.chromium.launch(executable_path=CHROMIUM,
                                         args=[*ARGS, f"--use-file-for-fake-audio-capture={clip}%noloop"])
    try:
        tab = browser.new_page(viewport=README_SIZE)
        tab.set_default_timeout(120_000)
        tab.goto(url)
        tab.wait_for_selector("#source input")
        choose(tab, "fsdd", target)
        tab.click("#audio-in button.record-button")
        tab.wait_for_timeout(int(1000 * seconds(clip)) + 300)
        tab.click("#audio-in button.stop-button")
        tab.wait_for_selector("#audio-in .play-pause-button")  # the recording is uploaded and playable
        tab.click("#translate")
        tab.wait_for_function("document.querySelector('#status').innerText.startsWith('Route:') || "
                              "document.querySelector('#status').innerText.startsWith('⚠')")
        status = tab.inner_text("#status")
        heard = re.search(r"reads the input as (\S+)", status)
        wrote = re.search(r"reads the output as (\S+)", status)
        if screenshot is not None:
            tab.wait_for_timeout(500)
            tab.screenshot(path=screenshot)
        return (heard.group(1) if heard else "?"), (wrote.group(1) if wrote else "?"), status
    finally:
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registry", type=Path, required=True)
    parser.add_argument("--data-root", type=Path, required=True)
    parser.add_argument("--to", dest="target", default="mnist")
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--screenshot", type=Path, help="save the page after the first recording here")
    args = parser.parse_args()
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from playwright.sync_api import sync_playwright

    from modgraph.api import ModGraph
    from modgraph.app.page_server import make_app, serve_in_thread

    mg = ModGraph(registry=args.registry, data_root=args.data_root, device="cpu", progress=False)
    right = written_right = 0
    clips = recordings(args.data_root, args.count)
    with tempfile.TemporaryDirectory(prefix="modgraph-bench-mic-") as folder, sync_playwright() as playwright:
        url, stop = serve_in_thread(make_app(mg, Path(folder) / "page"))
        try:
            for i, (digit, clip) in enumerate(clips):
                heard, wrote, status = speak(playwright, url, padded(clip, Path(folder)), args.target,
                                             args.screenshot if i == 0 else None)
                right += heard == str(digit)
                written_right += wrote == str(digit)
                print(f"{clip.name}: digit {digit}, read as {heard}, {args.target} output read as {wrote}"
                      + ("" if heard != "?" else f" ({status.strip().splitlines()[-1]})"), flush=True)
        finally:
            stop()
    print(f"spoken through the fake microphone: {right} of {len(clips)} read right by fsdd's recognizer; "
          f"{written_right} of {len(clips)} {args.target} outputs read as the digit")


if __name__ == "__main__":
    main()
