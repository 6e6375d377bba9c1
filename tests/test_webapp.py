"""``modgraph serve``: the page's work (one translation, every stop, checked uploads, examples), the
server's guard and limits, the API through gradio_client, the Space folder, and the page in Chromium.

Skipped without the app extra (gradio); the API tests also need gradio_client and httpx, and the
browser tests Playwright for Python and Debian's chromium (.ci/run installs all of them).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import time
import wave
import zlib
from pathlib import Path

import pytest
import torch

gr = pytest.importorskip("gradio")
pytestmark = pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")  # Gradio's own pandas calls

from modgraph.app import page_server  # noqa: E402
from modgraph.app.page import MAX_PIXELS, MAX_UPLOAD_BYTES, Page  # noqa: E402
from modgraph.errors import InputFileError  # noqa: E402
from modgraph.inference import cascade as cascade_module  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync",
                 # A wav file stands in for a microphone, allowed without asking.
                 "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]


def toy_graph(registry: Path, data_root: Path, cache_dir: Path):
    """A ModGraph over these paths with only the toy plugin (the live server's own, outside the test's env)."""
    import toyplugin
    from modgraph.api import ModGraph
    from modgraph.plugins import PluginHost

    host = PluginHost(load_entry_points=False)
    host.add_plugin(toyplugin, name="toy", distribution=toyplugin.DISTRIBUTION, version=toyplugin.__version__)
    return ModGraph(registry=registry, data_root=data_root, cache_dir=cache_dir, device="cpu", progress=False,
                    plugins=host)


def toy_wav(data: Path, label: int = 1) -> Path:
    return sorted((data / "toyaudio" / "test").glob(f"{label}_*.wav"))[0]


def toy_png(data: Path, label: int = 1) -> Path:
    return sorted((data / "toyimg" / "test" / str(label)).glob("*.png"))[0]


@pytest.fixture
def page(trained, tmp_path):
    return Page(trained, tmp_path / "work")


# -- one translation, read where it is written ---------------------------------------------------------
def test_one_translation_whose_readings_are_of_the_file_written(page, trained, toy_data, monkeypatch):
    calls = []
    real = cascade_module.translate_normalized
    monkeypatch.setattr(cascade_module, "translate_normalized", lambda *a, **k: calls.append(1) or real(*a, **k))
    cascade, notes = page.translate("toyaudio", "toyimg", toy_wav(toy_data), shown_name="one.wav")
    assert len(calls) == 1 and cascade.path == ["toyaudio", "toyimg"] and cascade.between == []
    [written] = cascade.target.files
    assert written.name == "one.png"
    dst = trained.node("toyimg")
    x, _ = dst.modality.read_file(written)
    with torch.no_grad():
        p = torch.softmax(dst.recognizer(dst.modality.normalize(x[None], dst.stats)), 1)[0]
    name, confidence = next(iter(cascade.target.probabilities[0].items()))
    assert name == dst.modality.class_names[int(p.argmax())]
    assert confidence == pytest.approx(float(p.max()), abs=0.02)  # the PNG rounds pixels to 1/255


def test_the_file_is_the_one_translate_writes(page, trained, toy_data, tmp_path, toy_installed):
    """Anchored as ``modgraph translate`` anchors by default: the same bytes."""
    from click.testing import CliRunner

    from modgraph.app.cli import main

    cascade, _ = page.translate("toyimg", "toyaudio", toy_png(toy_data, 2), shown_name="two.png")
    result = CliRunner().invoke(main, ["translate", "--from", "toyimg", "--to", "toyaudio",
                                       str(toy_png(toy_data, 2)), "-o", str(tmp_path / "cli.wav")])
    assert result.exit_code == 0, result.output
    assert cascade.target.files[0].read_bytes() == (tmp_path / "cli.wav").read_bytes()


def test_translations_side_by_side_write_what_one_alone_writes(page, toy_data):
    """The page translates several requests at once on the models it loaded once (only loading is locked)."""
    from concurrent.futures import ThreadPoolExecutor

    inputs = [toy_png(toy_data, label % 3) for label in range(12)]
    alone = [page.translate("toyimg", "toycolor", p)[0].target.files[0].read_bytes() for p in inputs[:3]]
    with ThreadPoolExecutor(6) as pool:
        together = list(pool.map(lambda p: page.translate("toyimg", "toycolor", p)[0], inputs))
    assert [c.target.files[0].read_bytes() for c in together] == alone * 4
    assert len({c.target.files[0].parent for c in together}) == 12  # each in a folder of its own


def test_a_cascade_keeps_the_modality_in_between(page, toy_data):
    cascade, _ = page.translate("toyimg", "toycolor", toy_png(toy_data, 1))
    assert cascade.path == ["toyimg", "toyaudio", "toycolor"]
    [stop] = cascade.between
    assert stop.modality == "toyaudio" and stop.files[0].read_bytes()[:4] == b"RIFF"
    assert set(stop.probabilities[0]) <= {"0", "1", "2"} and abs(sum(stop.probabilities[0].values()) - 1) < 0.01


def _png_header(width: int, height: int) -> bytes:
    """A tiny PNG that claims ``width`` x ``height`` pixels (a decompression bomb's header)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = lambda kind, data: struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def _long_wav(path: Path, seconds: int) -> Path:
    with wave.open(str(path), "wb") as fh:
        fh.setnchannels(1), fh.setsampwidth(2), fh.setframerate(8000)
        fh.writeframes(b"\x00\x00" * 8000 * seconds)
    return path


@pytest.mark.parametrize("name, make, source, message", [
    ("picture.png", lambda p: p.write_bytes(b"\x89PNG not audio"), "toyaudio", "toyaudio reads .wav files, not .png"),
    ("empty.wav", lambda p: p.write_bytes(b""), "toyaudio", "empty.wav: the file is empty"),
    ("corrupt.wav", lambda p: p.write_bytes(b"RIFF\x00\x00garbage" * 10), "toyaudio", "corrupt.wav: not a readable wav"),
    ("huge.wav", lambda p: p.write_bytes(b"RIFF" + bytes(MAX_UPLOAD_BYTES)), "toyaudio", "more than the 10,485,760"),
    ("long.wav", lambda p: _long_wav(p, 40), "toyaudio", "long.wav: 40 s of audio, longer than the 30 s"),
    ("bomb.png", lambda p: p.write_bytes(_png_header(8000, 8000)), "toyimg", "8000x8000 pixels, more than the"),
])
def test_a_bad_upload_is_one_line_naming_no_server_path(page, tmp_path, name, make, source, message):
    folder = tmp_path / "uploads" / "a1b2"
    folder.mkdir(parents=True)
    make(folder / name)
    with pytest.raises(InputFileError) as caught:
        page.translate(source, "toycolor", folder / name, shown_name=name)
    text = str(caught.value)
    assert message in text and str(tmp_path) not in text and "\n" not in text


def test_examples_are_the_datasets_own_files_or_a_line(page, toy_data, trained, tmp_path):
    audio, why = page.examples("toyaudio")
    assert [name for name, _ in audio] == ["0", "1", "2"] and why == ""
    assert all(path.read_bytes() == toy_wav(toy_data, int(name)).read_bytes() for name, path in audio)
    images, _ = page.examples("toyimg")  # no files of its own declared: the test pixels, written
    assert [name for name, _ in images] == ["0", "1", "2"]
    colors, why = page.examples("toycolor")
    assert colors == [] and "MODGRAPH_DATA" in why and "modgraph add-modality toycolor --download" in why
    shutil.rmtree(toy_data / "toyaudio")
    none, why = Page(trained, tmp_path / "other").examples("toyaudio")
    assert none == [] and "not on this server" in why and str(toy_data) not in why


def test_the_graph_is_a_picture(page):
    from PIL import Image

    with Image.open(page.graph_picture()) as picture:
        assert picture.format == "PNG" and picture.size[0] >= 600


def test_serve_prints_its_address_and_needs_the_extra(trained, monkeypatch):
    from click.testing import CliRunner

    from modgraph.app.cli import main

    class Server:
        def run(self, sockets):
            self.port = sockets[0].getsockname()[1]

    monkeypatch.setattr(page_server, "make_server", lambda app: Server())
    monkeypatch.setattr(page_server, "make_app", lambda *a, **k: None)
    monkeypatch.setattr(page_server, "guard_images", lambda: None)  # Pillow's limits stay this process's own
    result = CliRunner().invoke(main, ["serve", "--port", "0"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Serving registry ") and " on http://127.0.0.1:" in result.output
    monkeypatch.setattr(page_server, "missing_packages", lambda: ["gradio"])
    result = CliRunner().invoke(main, ["serve"])
    assert result.exit_code == 1 and "pip install 'modgraph[app]'" in result.output


def test_help_does_not_import_the_app():
    # What keeps --help fast is what it does not import; its time is benchmarks/core_bars.py's to measure.
    code = ("import sys; from click.testing import CliRunner; from modgraph.app.cli import main; "
            "r = CliRunner().invoke(main, ['serve', '--help']); assert r.exit_code == 0 and '--port' in r.output; "
            "assert not {'gradio', 'fastapi', 'uvicorn', 'torch'} & set(sys.modules), sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)


# -- a live server ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def live(trained_registry, toy_dataset, tmp_path_factory):
    """One server for the module over a copy of the trained toy registry: (url, data root)."""
    base = tmp_path_factory.mktemp("serve")
    shutil.copytree(trained_registry, base / "registry")
    shutil.copytree(toy_dataset, base / "data")
    mg = toy_graph(base / "registry", base / "data", base / "cache")
    url, stop = page_server.serve_in_thread(page_server.make_app(mg, base / "work"))
    yield url, base / "data"
    stop()


@pytest.fixture(scope="module")
def client(live):
    client_module = pytest.importorskip("gradio_client")
    client = client_module.Client(live[0], verbose=False)
    yield client
    client.close()


def test_docs_example_runs_against_a_live_server(live, client):
    """docs/serve.md's gradio_client example, pointed at this server and the toy modalities."""
    url, data = live
    code = re.search(r"```python\n(.*?)```", (ROOT / "docs" / "serve.md").read_text(), re.S).group(1)
    code = (code.replace("http://127.0.0.1:8000/", url).replace('"fsdd"', '"toyaudio"')
            .replace('"mnist"', '"toyimg"').replace("seven.wav", str(toy_wav(data, 2))))
    scope = {}
    exec(compile(code, "docs/serve.md", "exec"), scope)
    assert scope["report"]["route"] == ["toyaudio", "toyimg"] and Path(scope["files"][0]).suffix == ".png"


def test_api_shows_the_stop_in_between_and_errors_in_words(live, client):
    from gradio_client import handle_file

    url, data = live
    files, between, report = client.predict("toyimg", "toycolor", handle_file(str(toy_png(data, 0))), "",
                                            api_name="/translate")
    assert report["route"] == ["toyimg", "toyaudio", "toycolor"] and Path(between[0]).suffix == ".wav"
    assert report["between"][0]["modality"] == "toyaudio" and Path(files[0]).suffix == ".csv"
    with pytest.raises(Exception) as caught:
        client.predict("toyaudio", "toyimg", handle_file(str(toy_png(data, 0))), "", api_name="/translate")
    assert "toyaudio reads .wav files, not .png" in str(caught.value) and "/tmp" not in str(caught.value)


def test_docs_http_example_runs_against_a_live_server(live):
    """docs/serve.md's curl example (upload, start the call, read its event stream), made with httpx."""
    httpx = pytest.importorskip("httpx")
    url, data = live
    doc = (ROOT / "docs" / "serve.md").read_text()
    for step in ("/gradio_api/upload", "/gradio_api/call/translate", "/gradio_api/call/translate/$EVENT_ID"):
        assert step in doc
    with httpx.Client(base_url=url, timeout=60) as http, open(toy_wav(data, 2), "rb") as fh:
        [path] = http.post("gradio_api/upload", files={"files": ("two.wav", fh)}).json()
        file = {"path": path, "meta": {"_type": "gradio.FileData"}}
        event = http.post("gradio_api/call/translate", json={"data": ["toyaudio", "toyimg", file, ""]}).json()
        lines = http.get(f"gradio_api/call/translate/{event['event_id']}").text.splitlines()
    assert "event: complete" in lines, lines
    import json

    files, between, report = json.loads(lines[lines.index("event: complete") + 1][len("data:"):])
    assert report["route"] == ["toyaudio", "toyimg"] and files[0]["path"].endswith(".png") and between == []


def _raw_request(url: str, head: str, body_chunks=()) -> bytes:
    host, port = re.match(r"http://([^:/]+):(\d+)/", url).groups()
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        conn.sendall(head.encode())
        try:
            for chunk in body_chunks:
                conn.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            conn.sendall(b"0\r\n\r\n")
        except OSError:  # the server hung up on us: what a capped upload should see
            pass
        answer = b""
        while b"\r\n\r\n" not in answer:  # the status line and headers are all we need
            try:
                data = conn.recv(65536)
            except OSError:
                break
            if not data:
                break
            answer += data
        return answer


def test_the_server_answers_only_to_its_own_host_and_origin(live):
    httpx = pytest.importorskip("httpx")
    url = live[0]
    assert httpx.get(url).status_code == 200
    assert httpx.get(url, headers={"Host": "rebound.example:8000"}).status_code == 403
    assert httpx.get(url + "gradio_api/info", headers={"Origin": "http://rebound.example"}).status_code == 403
    assert httpx.get(url + "gradio_api/info", headers={"Origin": url.rstrip("/")}).status_code == 200


def test_an_upload_without_content_length_is_cut_off_while_it_streams(live):
    url = live[0]
    head = (f"POST /gradio_api/upload HTTP/1.1\r\nHost: {url[7:-1]}\r\nTransfer-Encoding: chunked\r\n"
            "Content-Type: multipart/form-data; boundary=b\r\n\r\n")
    start = b'--b\r\nContent-Disposition: form-data; name="files"; filename="big.wav"\r\n\r\n'
    chunks = (start if i == 0 else bytes(1 << 20) for i in range(40))  # 40 MB, never finished
    answer = _raw_request(url, head, chunks)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert __import__("httpx").get(url).status_code == 200  # and it goes on serving


# -- the Space folder ----------------------------------------------------------------------------------
def test_export_space_runs_from_a_fresh_folder(trained, toy_data, tmp_path, install_distribution):
    """``modgraph export --space`` writes a folder whose app.py serves its own archive."""
    from click.testing import CliRunner

    import toyplugin
    from modgraph.app.cli import main

    client_module = pytest.importorskip("gradio_client")
    result = CliRunner().invoke(main, ["export", "--space", str(tmp_path / "space")])
    assert result.exit_code == 0, result.output
    readme = (tmp_path / "space" / "README.md").read_text()
    assert readme.startswith("---\ntitle: modgraph") and "sdk: gradio" in readme and "app_file: app.py" in readme
    assert f"{toyplugin.DISTRIBUTION}=={toyplugin.__version__}" in (tmp_path / "space" / "requirements.txt").read_text()
    fresh = tmp_path / "fresh"
    shutil.copytree(tmp_path / "space", fresh)
    shutil.rmtree(tmp_path / "space")
    site = install_distribution(toyplugin.DISTRIBUTION, toyplugin.__version__, {"toy": "toyplugin"})
    port = page_server.bind("127.0.0.1", 0)
    number = port.getsockname()[1]
    port.close()
    env = {**os.environ, "GRADIO_SERVER_PORT": str(number), "MODGRAPH_LOAD_PLUGINS": toyplugin.DISTRIBUTION,
           "PYTHONPATH": os.pathsep.join([str(site), str(ROOT / "tests"), str(ROOT)]),
           "MODGRAPH_DATA": str(tmp_path / "no-data"), "GRADIO_ANALYTICS_ENABLED": "False"}
    process = subprocess.Popen([sys.executable, "app.py"], cwd=fresh, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        line = process.stdout.readline()
        assert "Serving graph.tar on http://127.0.0.1:" in line, line + process.stdout.read()
        client = client_module.Client(f"http://127.0.0.1:{number}/", verbose=False)
        files, _, report = client.predict("toyaudio", "toyimg", client_module.handle_file(str(toy_wav(toy_data))),
                                          "", api_name="/translate")
        client.close()
        assert report["route"] == ["toyaudio", "toyimg"] and Path(files[0]).suffix == ".png"
    finally:
        process.terminate()
        process.wait(20)


# -- the page in a real browser ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser(live):
    if not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
        pytest.skip("chromium is not installed (apt-get install chromium)")
    playwright_api = pytest.importorskip("playwright.sync_api")
    microphone = toy_wav(live[1], 1)  # the fake microphone plays this clip over and over
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium"),
                                    args=[*CHROMIUM_ARGS, f"--use-file-for-fake-audio-capture={microphone}"])
        yield browser
        browser.close()


@pytest.fixture
def tab(browser, live):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    tab.set_default_timeout(60_000)
    outside = []
    tab.on("request", lambda r: outside.append(r.url) if not r.url.startswith((live[0], "data:", "blob:")) else None)
    tab.goto(live[0])
    tab.wait_for_selector("#source input")
    yield tab
    context.close()
    assert outside == []  # no font, script or analytics fetched from elsewhere


def choose(tab, source: str, target: str) -> None:
    for element, value in (("source", source), ("target", target)):
        tab.click(f"#{element} input")
        tab.click(f"ul[role=listbox] li[aria-label='{value}']")
    tab.wait_for_function(f"document.querySelector('#route').innerText.includes('Route: {source} →')")


def translate(tab) -> str:
    """Click Translate and wait for the new status line (the old one stays while the request runs)."""
    before = tab.inner_text("#status")
    tab.click("#translate")
    tab.wait_for_function("""before => { const text = document.querySelector('#status').innerText;
        return text !== before && (text.startsWith('Route:') || text.startsWith('⚠')); }""",
                          arg=before)
    return tab.inner_text("#status")


def test_page_speak_into_the_microphone(tab, tmp_path):
    choose(tab, "toyaudio", "toyimg")
    tab.click("#audio-in button.record-button")
    tab.wait_for_timeout(1000)
    tab.click("#audio-in button.stop-button")
    tab.wait_for_selector("#audio-in .play-pause-button")  # the recording is uploaded and playable
    status = translate(tab)
    assert "toyaudio's recognizer reads the input as" in status and "toyimg's recognizer reads the output" in status
    assert "cut or padded" in tab.inner_text("#notes")  # the toy reader's note on a long recording
    tab.wait_for_selector("#output-image img")
    tab.screenshot(path=tmp_path / "spoken.png", full_page=True)


def test_page_draw_then_switch_and_nothing_stale_stays(tab, tmp_path):
    choose(tab, "toyimg", "toyaudio")
    tab.click("#drawing-in button[aria-label='Brush']")
    box = tab.locator("#drawing-in canvas").first.bounding_box()
    x, top = box["x"] + box["width"] / 2, box["y"] + 40
    tab.mouse.move(x, top)
    tab.mouse.down()
    for step in range(1, 5):  # a vertical bar: the toy images' class 1
        tab.mouse.move(x, top + step * (box["height"] - 80) / 4)
    tab.mouse.up()
    status = translate(tab)
    assert "toyimg's recognizer reads the input as" in status
    tab.wait_for_selector("#output-audio audio, #output-audio [data-testid='waveform-Output']", state="attached")
    tab.screenshot(path=tmp_path / "drawn.png", full_page=True)
    choose(tab, "toyaudio", "toyimg")
    tab.wait_for_function("document.querySelector('#status').innerText.trim() === ''")
    assert tab.locator("#output-image img").count() == 0 and not tab.is_visible("#output-audio")
    assert "toyimg's recognizer" not in tab.inner_text("body")
    tab.screenshot(path=tmp_path / "switched.png", full_page=True)


def test_page_upload_a_bad_file_then_a_good_one(tab, live, tmp_path):
    choose(tab, "toyaudio", "toyimg")
    tab.click("#audio-in button[aria-label='Upload file']")
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF not a wav at all")
    tab.set_input_files("#audio-in input[type=file]", str(bad))
    status = translate(tab)
    assert status.startswith("⚠") and "broken.wav" in status and "/tmp" not in status
    tab.click("#audio-in button[aria-label='Clear']")
    tab.click("#audio-in button[aria-label='Upload file']")
    tab.set_input_files("#audio-in input[type=file]", str(toy_wav(live[1], 2)))
    tab.wait_for_selector("#audio-in .play-pause-button")
    status = translate(tab)
    assert "⚠" not in status and "toyimg's recognizer reads the output" in status
    tab.wait_for_selector("#output-image img")


def test_page_a_cascade_shows_its_middle_and_examples_load(tab, tmp_path):
    choose(tab, "toyimg", "toycolor")
    assert "toyimg → toyaudio" in tab.inner_text("#route") and "toyaudio → toycolor" in tab.inner_text("#route")
    tab.locator("#examples button.gallery-item").nth(2).click()
    tab.wait_for_timeout(500)
    status = translate(tab)
    assert "Route: toyimg → toyaudio → toycolor" in status
    tab.wait_for_selector("#stop-1", state="visible")
    assert "Stop 1: toyaudio" in tab.inner_text("#stop-1") and "toyaudio's recognizer reads this as" in \
        tab.inner_text("#stop-1")
    tab.screenshot(path=tmp_path / "cascade.png", full_page=True)


def test_page_graph_tab(tab):
    tab.click("button[role=tab]:has-text('Graph')")
    tab.wait_for_selector("#graph-picture img")
    assert tab.evaluate("document.querySelector('#graph-picture img').naturalWidth") >= 600


def test_page_type_text(tab, monkeypatch):
    """A modality that takes literal text gets a textbox (toycolor, given a reader of typed values here)."""
    import toyplugin

    monkeypatch.setattr(toyplugin.ToyColor, "read_text",
                        lambda self, text: torch.tensor([float(v) for v in text.split(",")]), raising=False)
    choose(tab, "toycolor", "toyaudio")
    assert not tab.is_visible("#audio-in") and not tab.is_visible("#drawing-in")
    tab.fill("#text-in textarea", ",".join(["0.9"] * 4 + ["0.1"] * (toyplugin.COLOR_DIM - 4)))
    status = translate(tab)
    assert "Route: toycolor → toyaudio" in status and "toyaudio's recognizer reads the output" in status

