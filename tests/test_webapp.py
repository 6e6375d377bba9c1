"""``modgraph serve``: the page's API through Starlette's test client, and the page itself in headless Chromium.

Skipped without the app extra (starlette, uvicorn, python-multipart) and httpx; the browser
test also needs Playwright for Python and Debian's chromium (.ci/run installs all of them).
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest
import torch
from PIL import Image

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
pytest.importorskip("python_multipart")

from modgraph.app import webapp  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync",
                 # A generated tone stands in for a microphone, allowed without asking.
                 "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]


@pytest.fixture
def client(trained, tmp_path):
    pytest.importorskip("httpx")
    with warnings.catch_warnings():  # newer starlette prefers httpx2 for its test client; httpx works
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient

    with TestClient(webapp.make_app(trained, tmp_path / "work")) as c:
        yield c


def wav_bytes(toy_data: Path, label: int = 1) -> bytes:
    return sorted((toy_data / "toyaudio" / "test").glob(f"{label}_*.wav"))[0].read_bytes()


def translate(client, source, target, name, data, **extra):
    return client.post("/api/translate", data={"source": source, "target": target, **extra},
                       files={"file": (name, data)} if data is not None else None)


def test_modalities_and_routes(client):
    body = client.get("/api/modalities").json()
    kinds = {m["name"]: (m["input"], m["output"]) for m in body["modalities"]}
    assert kinds == {"toyimg": ("image", "image"), "toyaudio": ("audio", "audio"), "toycolor": ("file", "file")}
    route = client.get("/api/route", params={"source": "toyimg", "target": "toycolor"}).json()
    assert route["path"] == ["toyimg", "toyaudio", "toycolor"] and len(route["accuracies"]) == 2
    missing = client.get("/api/route", params={"source": "toyimg", "target": "nothing"})
    assert missing.status_code == 400 and "'nothing' is not in the registry" in missing.json()["error"]


def test_translate_reads_input_and_output_with_the_recognizers(client, trained, toy_data):
    response = translate(client, "toyaudio", "toyimg", "one.wav", wav_bytes(toy_data, 1))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["path"] == ["toyaudio", "toyimg"] and body["output"]["kind"] == "image"
    assert body["output"]["name"] == "one.png"  # named after the upload
    png = client.get(body["output"]["url"])
    assert png.status_code == 200 and Image.open(io.BytesIO(png.content)).size == (8, 8)
    # The readings are the recognizers' softmax on the input and on the translation.
    src, dst = trained.node("toyaudio"), trained.node("toyimg")
    x, _ = src.modality.read_file(sorted((toy_data / "toyaudio" / "test").glob("1_*.wav"))[0])
    with torch.no_grad():
        p_in = torch.softmax(src.recognizer(src.modality.normalize(x[None], src.stats)), 1)[0]
        out = trained.translate("toyaudio", "toyimg", x[None])[:, 0]
        p_out = torch.softmax(dst.recognizer(dst.modality.normalize(out, dst.stats)), 1)[0]
    assert body["input_reading"]["class"] == src.modality.class_names[int(p_in.argmax())]
    assert body["input_reading"]["confidence"] == pytest.approx(float(p_in.max()), abs=1e-6)
    assert body["output_reading"]["class"] == dst.modality.class_names[int(p_out.argmax())]
    assert body["output_reading"]["confidence"] == pytest.approx(float(p_out.max()), abs=1e-6)


def test_audio_output_comes_with_a_spectrogram(client, toy_data):
    image = sorted((toy_data / "toyimg" / "test" / "2").glob("*.png"))[0].read_bytes()
    body = translate(client, "toyimg", "toyaudio", "two.png", image).json()
    assert body["output"]["kind"] == "audio"
    assert client.get(body["output"]["url"]).content[:4] == b"RIFF"
    picture = client.get(body["output"]["spectrogram"])
    assert picture.status_code == 200 and Image.open(io.BytesIO(picture.content)).format == "PNG"


@pytest.mark.parametrize("name, data, message", [
    ("picture.png", b"\x89PNG not audio", "toyaudio reads .wav files, not .png"),
    ("empty.wav", b"", "empty.wav: the file is empty"),
    ("corrupt.wav", b"RIFF\x00\x00garbage" * 10, "corrupt.wav: not a readable wav file"),
    ("huge.wav", b"RIFF" + bytes(webapp.MAX_UPLOAD_BYTES - 3), "bytes, more than the 10,485,760 this page takes"),
    ("huger.wav", bytes(webapp.MAX_UPLOAD_BYTES + 100_000), "bytes, more than the 10,485,760 this page takes"),
    ("no-file", None, "give toyaudio an input"),
])
def test_a_bad_upload_gets_a_message_and_the_server_goes_on(client, toy_data, name, data, message):
    response = translate(client, "toyaudio", "toyimg", name, data)
    assert response.status_code in (400, 413)
    assert message in response.json()["error"]
    assert "modgraph-serve" not in response.json()["error"]  # the user's file name, not our temporary copy
    assert translate(client, "toyaudio", "toyimg", "one.wav", wav_bytes(toy_data)).status_code == 200


def test_files_outside_the_session_are_not_served(client):
    for path in ("/files/../../etc/passwd", "/files/%2e%2e/%2e%2e/etc/passwd", "/files/results/nothing.png"):
        assert client.get(path).status_code == 404


def test_gallery_shows_a_test_sample_per_class(client):
    body = client.get("/api/gallery/toyimg").json()
    assert [s["class"] for s in body["samples"]] == ["0", "1", "2"]
    assert all(client.get(s["url"]).status_code == 200 for s in body["samples"])
    audio = client.get("/api/gallery/toyaudio").json()["samples"]
    assert all(client.get(s["spectrogram"]).status_code == 200 for s in audio)


def test_serve_prints_its_address_and_needs_the_extra(trained, monkeypatch):
    from click.testing import CliRunner

    from modgraph.app.cli import main

    class Server:
        def run(self, sockets):
            self.port = sockets[0].getsockname()[1]

    monkeypatch.setattr(webapp, "make_server", lambda mg, workdir: Server())
    result = CliRunner().invoke(main, ["serve", "--port", "0"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Serving registry ") and " on http://127.0.0.1:" in result.output
    monkeypatch.setattr(webapp, "missing_packages", lambda: ["starlette"])
    result = CliRunner().invoke(main, ["serve"])
    assert result.exit_code == 1 and "pip install 'modgraph[app]'" in result.output


def test_help_does_not_import_the_app():
    # What keeps --help fast is what it does not import; its time is benchmarks/core_bars.py's to measure.
    code = ("import sys; from click.testing import CliRunner; from modgraph.app.cli import main; "
            "r = CliRunner().invoke(main, ['serve', '--help']); assert r.exit_code == 0 and '--port' in r.output; "
            "assert not {'starlette', 'uvicorn', 'torch'} & set(sys.modules), sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)


# -- the page in a real browser ------------------------------------------------------------------------
@pytest.fixture
def server_url(trained, tmp_path):
    """The app served by uvicorn on a free port, in a thread, for the duration of a test."""
    sock = webapp.bind("127.0.0.1", 0)
    server = webapp.make_server(trained, tmp_path / "work")
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    yield webapp.address(sock)
    server.should_exit = True
    thread.join(10)
    sock.close()


@pytest.fixture
def page(server_url):
    if not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
        pytest.skip("chromium is not installed (apt-get install chromium)")
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium"),
                                    args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.set_default_timeout(30_000)
        page.goto(server_url)
        page.wait_for_selector("#source option[value=toyaudio]", state="attached")
        yield page
        browser.close()


def choose(page, source, target):
    page.select_option("#source", source)
    page.select_option("#target", target)
    page.wait_for_function(f"document.getElementById('route').textContent.includes('{source} → {target}')")


def test_page_upload_a_wav_and_see_the_image_and_its_reading(page, toy_data):
    choose(page, "toyaudio", "toyimg")
    page.set_input_files("#file", str(sorted((toy_data / "toyaudio" / "test").glob("1_*.wav"))[0]))
    page.click("#translate")
    image = page.wait_for_selector("#result img.upscaled")
    page.wait_for_function("document.querySelector('#result img.upscaled').naturalWidth === 8")
    assert image.bounding_box()["width"] >= 200  # shown upscaled
    assert "toyimg's recognizer reads the translation as" in page.inner_text("#output-reading")
    assert page.inner_text("#output-reading .class") in {"0", "1", "2"}
    assert "toyaudio's recognizer reads the input as" in page.inner_text("#input-reading")
    assert page.is_hidden("#error")


def test_page_draw_a_digit_and_hear_it(page):
    choose(page, "toyimg", "toyaudio")
    box = page.locator("#canvas").bounding_box()
    x = box["x"] + box["width"] / 2
    page.mouse.move(x, box["y"] + 20)
    page.mouse.down()
    for step in range(1, 11):  # a vertical bar: the toy images' class 1
        page.mouse.move(x, box["y"] + 20 + step * (box["height"] - 40) / 10)
    page.mouse.up()
    page.click("#translate")
    page.wait_for_selector("#result audio")
    src = page.get_attribute("#result audio", "src")
    assert page.evaluate(f"fetch('{src}').then(r => r.arrayBuffer()).then(b => b.byteLength)") > 44
    page.wait_for_function("document.querySelector('#result img.spectrogram').naturalWidth > 0")
    assert "toyaudio's recognizer reads the translation as" in page.inner_text("#output-reading")


def test_page_a_bad_upload_shows_a_message_and_the_next_one_works(page, toy_data, tmp_path):
    choose(page, "toyaudio", "toyimg")
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"not a wav at all")
    page.set_input_files("#file", str(bad))
    page.click("#translate")
    page.wait_for_selector("#error", state="visible")
    assert "broken.wav: not a readable wav file" in page.inner_text("#error")
    page.set_input_files("#file", str(sorted((toy_data / "toyaudio" / "test").glob("2_*.wav"))[0]))
    page.click("#translate")
    page.wait_for_selector("#result img.upscaled")
    assert page.is_hidden("#error")


def test_page_gallery_sample_translates_on_click(page):
    choose(page, "toyimg", "toyaudio")
    page.wait_for_selector("#gallery figure")
    assert page.locator("#gallery figcaption").all_inner_texts() == ["0", "1", "2"]
    page.locator("#gallery figure").nth(2).click()
    page.wait_for_selector("#result audio")
    assert "toyimg's recognizer reads the input as" in page.inner_text("#input-reading")


def test_page_record_from_the_microphone_as_wav(page):
    choose(page, "toyaudio", "toyimg")
    page.click("#record")
    page.wait_for_function("document.getElementById('record').textContent === 'Stop'")
    page.wait_for_timeout(800)
    page.click("#record")
    page.wait_for_function("document.getElementById('chosen').textContent === 'Input: recording.wav'")
    header = page.evaluate("""fetch(document.getElementById('recorded').src).then(r => r.arrayBuffer())
        .then(b => { const v = new DataView(b); return [String.fromCharCode(...new Uint8Array(b, 0, 4)),
                     v.getUint16(22, true), v.getUint32(24, true), v.getUint16(34, true), b.byteLength]; })""")
    assert header[:4] == ["RIFF", 1, 16000, 16] and header[4] > 44 + 2 * 16000 * 0.5  # mono 16-bit 16 kHz, > 0.5 s
    page.click("#translate")
    page.wait_for_selector("#result img.upscaled")
    assert "toyimg's recognizer reads the translation as" in page.inner_text("#output-reading")
    assert "cut or padded" in page.inner_text("#notes")  # the toy reader's note on a long clip


def test_a_bug_while_translating_is_a_message_too(client, toy_data, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    with monkeypatch.context() as patch:
        patch.setattr(webapp.WebSession, "translate", broken)
        response = translate(client, "toyaudio", "toyimg", "one.wav", wav_bytes(toy_data))
    assert response.status_code == 500 and "internal error (RuntimeError: boom)" in response.json()["error"]
    assert translate(client, "toyaudio", "toyimg", "one.wav", wav_bytes(toy_data)).status_code == 200
