"""The first ten minutes: places remembered, registries and names checked, eval measuring what translate
writes, folders that say what they skipped, answers without torch, and messages a user can act on."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import toyplugin
from modgraph.app.cli import main

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str, input: str | bytes | None = None):
    return CliRunner().invoke(main, list(args), input=input)


# -- places remembered ----------------------------------------------------------------------------
def test_config_set_show_unset_and_precedence(isolated_env, tmp_path, monkeypatch):
    from modgraph.features.cache import default_data_root
    from modgraph.storage.registry import default_registry

    monkeypatch.delenv("MODGRAPH_DATA")
    monkeypatch.delenv("MODGRAPH_REGISTRY")
    assert "data-root: not set" in run("config").output
    out = run("config", "set", "data-root", "somewhere")
    assert out.exit_code == 0 and f"Set data-root = {tmp_path / 'somewhere'}" in out.output
    assert run("config", "set", "registry", str(tmp_path / "reg")).exit_code == 0
    assert default_data_root() == tmp_path / "somewhere" and default_registry() == tmp_path / "reg"
    shown = run("config").output
    assert f"data-root: {tmp_path / 'somewhere'}" in shown and f"registry: {tmp_path / 'reg'}" in shown
    monkeypatch.setenv("MODGRAPH_DATA", str(tmp_path / "env"))  # the environment wins over the file
    assert default_data_root() == tmp_path / "env"
    assert "the environment overrides it" in run("config").output
    assert run("config", "unset", "registry").exit_code == 0 and default_registry() == Path("registry")
    typo = run("config", "set", "data-rot", "x")
    assert typo.exit_code == 1 and "did you mean 'data-root'?" in typo.output


@pytest.mark.usefixtures("toy_installed")
def test_eval_finds_the_data_where_the_node_was_trained(trained, isolated_env, tmp_path, monkeypatch):
    moved = tmp_path / "elsewhere"
    shutil.move(str(isolated_env["data"]), moved)
    monkeypatch.delenv("MODGRAPH_DATA")
    # The trained registry's nodes record where their data was; point that hint at the moved copy.
    from modgraph.storage import registry as registry_module

    original = registry_module.Registry.read_metadata

    def moved_hint(self, path):
        meta = original(self, path)
        if meta.get("kind") == "modality":
            meta["data"] = {**meta["data"], "root": str(moved)}
        return meta

    monkeypatch.setattr(registry_module.Registry, "read_metadata", moved_hint)
    out = run("eval", "--from", "toyimg", "--to", "toyaudio")
    assert out.exit_code == 0, out.output
    assert "(anchored to 20, as translate writes)" in out.output


# -- registries and names -------------------------------------------------------------------------
@pytest.mark.parametrize("command", [["graph"], ["route", "a", "b"], ["card"]])
def test_a_read_only_command_on_no_registry_says_so(isolated_env, tmp_path, command):
    out = run(*command, "--registry", str(tmp_path / "no" / "such"))
    assert out.exit_code == 1
    assert out.output.strip() == (f"Error: no registry at {tmp_path / 'no' / 'such'}; create one with modgraph "
                                  f"add-modality NAME --registry {tmp_path / 'no' / 'such'}")
    assert not (tmp_path / "no").exists()


@pytest.mark.usefixtures("toy_installed")
def test_typos_get_did_you_mean(trained):
    out = run("route", "toyimg", "toyaudo")
    assert out.exit_code == 1 and "did you mean 'toyaudio'?" in out.output
    assert "add-modality toyaudo" not in out.output  # never advice to train the typo
    out = run("add-modality", "toyimh")
    assert out.exit_code == 1 and "did you mean 'toyimg'?" in out.output
    out = run("grpah")
    assert out.exit_code == 2 and "Did you mean 'graph'?" in out.output


# -- eval measures what translate writes ----------------------------------------------------------
@pytest.mark.usefixtures("toy_installed")
def test_eval_and_translate_agree_on_the_same_inputs(trained, toy_data, tmp_path):
    from modgraph.learning.evaluation import route_class_map

    result = trained.evaluate("toyimg", "toyaudio", split="test")
    path = trained.route("toyimg", "toyaudio")
    mapping = route_class_map(trained, path)
    src, dst = trained.node("toyimg"), trained.node("toyaudio")
    right = total = 0
    for folder in sorted((toy_data / "toyimg" / "test").iterdir()):
        label = int(folder.name)
        if label not in mapping:
            continue
        report = trained.translate_files("toyimg", "toyaudio", [str(folder)], tmp_path / "out" / folder.name)
        expected = dst.modality.classes[mapping[label]].name
        right += sum(row["written_as"] == expected for row in report["rows"])
        total += len(report["rows"])
    assert src.anchors is not None and result["anchor"] == 20
    assert total == result["n"] and right / total == pytest.approx(result["accuracy"])


# -- sharing by URL -------------------------------------------------------------------------------
@pytest.fixture
def http_folder(tmp_path):
    """A local HTTP server on 127.0.0.1 serving ``tmp_path / "served"``; yields (folder, base URL)."""
    import functools
    import http.server
    import threading

    folder = tmp_path / "served"
    folder.mkdir()
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):  # the test's output is the command's alone
            pass

    handler = functools.partial(Quiet, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.usefixtures("toy_installed")
def test_import_by_url_downloads_checks_and_keeps_nothing_else(trained, isolated_env, tmp_path, http_folder,
                                                               monkeypatch):
    import tempfile

    folder, base = http_folder
    assert run("export", str(folder / "graph.tar")).exit_code == 0
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    copy = tmp_path / "copy"
    out = run("import", f"{base}/graph.tar", "--registry", str(copy))
    assert out.exit_code == 0, out.output
    assert f"Wrote {copy / 'nodes' / 'toyimg.safetensors'}" in out.output
    assert sorted(p.name for p in (copy / "nodes").iterdir() if p.suffix == ".safetensors") == \
        ["toyaudio.safetensors", "toycolor.safetensors", "toyimg.safetensors"]
    assert list(temporary.iterdir()) == []  # the download is gone
    # A damaged archive is refused before anything is written, and its download is removed too.
    import tarfile

    with tarfile.open(folder / "graph.tar") as tar:
        member = tar.getmember("nodes/toyimg.safetensors")
    data = bytearray((folder / "graph.tar").read_bytes())
    data[member.offset_data + member.size - 8] ^= 0xFF  # a weight's byte: the member's hash no longer matches
    (folder / "bad.tar").write_bytes(bytes(data))
    fresh = tmp_path / "fresh"
    out = run("import", f"{base}/bad.tar", "--registry", str(fresh))
    assert out.exit_code == 1 and out.output.startswith("Error: ") and len(out.output.strip().splitlines()) == 1
    assert not (fresh / "nodes").exists() or not any((fresh / "nodes").iterdir())
    assert list(temporary.iterdir()) == []
    missing = run("import", f"{base}/nothing.tar", "--registry", str(fresh))
    assert missing.exit_code == 1 and "the server answered 404" in missing.output
    refused = run("import", "https://127.0.0.1:1/graph.tar").output  # nothing listens on port 1
    assert "could not download https://127.0.0.1:1/graph.tar (" in refused  # the address is not mangled


# -- progress everywhere --------------------------------------------------------------------------
class LineClock:
    """A stream (not a terminal) that records when each line was written."""

    def __init__(self):
        import time

        self.clock, self.partial, self.lines = time.monotonic, "", []

    def write(self, text: str) -> int:
        self.partial += text
        while "\n" in self.partial:
            line, self.partial = self.partial.split("\n", 1)
            self.lines.append((self.clock(), line))
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    def gaps(self, start: float, end: float) -> list[tuple[float, str]]:
        """Each silence with the line that ended it (the command's end for the last)."""
        times = [start, *(t for t, _ in self.lines), end]
        ends = [line for _, line in self.lines] + ["(the end)"]
        return [(b - a, line) for a, b, line in zip(times[:-1], times[1:], ends)]


@pytest.mark.usefixtures("toy_installed")
def test_no_phase_is_silent_in_a_log(toy_data, monkeypatch):
    """add-modality and eval with slow feature reading: a log line comes at least every heartbeat."""
    import time

    heartbeat, slow, limit = 0.3, 2.2, 1.8  # the limit leaves room for a busy machine's scheduling
    monkeypatch.setenv("MODGRAPH_PROGRESS_SECONDS", str(heartbeat))
    original = toyplugin.ToyImage.load_features

    def slow_features(self, *args, **kwargs):
        time.sleep(slow)  # a plugin computing features for a long time, saying nothing
        return original(self, *args, **kwargs)

    monkeypatch.setattr(toyplugin.ToyImage, "load_features", slow_features)
    for args in (["add-modality", "toyimg", "--epochs", "2", "--recognizer-epochs", "2"],
                 ["eval", "--from", "toyimg", "--to", "toyimg"]):
        if args[0] == "eval":
            shutil.rmtree(toy_data.parent / "cache")  # eval computes its features again, as on a new machine
        stream = LineClock()
        monkeypatch.setattr(sys, "stderr", stream)
        monkeypatch.setattr(sys, "stdout", stream)
        start = time.monotonic()
        main.main(args, standalone_mode=False)
        worst = max(stream.gaps(start, time.monotonic()))
        assert worst[0] < limit, (args[0], worst, "\n".join(f"{t - start:.2f} {line}" for t, line in stream.lines))
        assert any("still working" in line for _, line in stream.lines), stream.lines


def test_quiet_silences_progress(trained, monkeypatch, tmp_path):
    monkeypatch.setenv("MODGRAPH_PROGRESS_SECONDS", "0.05")
    out = run("translate", "--from", "toyimg", "--to", "toyaudio", str(tmp_path / "none.png"), "-q")
    assert "still working" not in out.output and "translating" not in out.output


# -- messages a user can act on ---------------------------------------------------------------------
# Python keywords and internal names that no message may show: keyword arguments, reprs, module paths.
INTERNAL = [r"\b\w+=(True|False|None)\b", r"Traceback", r"NoneType", r"\bkwargs\b", r"\bself\b", r"__\w+__",
            r"modgraph\.\w+\.", r"\.py\b", r"<\w+ object at", r"\bdef \w+\(", r"\blambda\b"]


@pytest.mark.usefixtures("toy_installed")
def test_error_messages_show_no_python_and_never_say_retrain_to_evaluate(trained, isolated_env, tmp_path,
                                                                      monkeypatch):
    import re

    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("hello")
    cases = [
        ["translate", "--from", "toyimg", "--to", "toyaudo", str(tmp_path / "notes.txt")],
        ["translate", "--from", "toyimg", "--to", "toyaudio", str(tmp_path / "empty")],
        ["translate", "--from", "toyimg", "--to", "toyaudio", str(tmp_path / "notes.txt")],
        ["read", "--modality", "toyimg", str(tmp_path / "missing.png")],
        ["route", "toyimg", "nothing"],
        ["graph", "--registry", str(tmp_path / "nowhere")],
        ["card", "--registry", str(tmp_path / "nowhere")],
        ["eval", "--from", "toyimg", "--to", "toyaudio", "--registry", str(tmp_path / "nowhere")],
        ["add-modality", "toyimh"],
        ["add-modality", "toyimg", "--option", "nope=1"],
        ["add-modality", "toyimg", "--epochs", "-1"],
        ["link", "toyimg", "toyimg"],
        ["config", "set", "data-rot", "x"],
        ["import", str(tmp_path / "missing.tar")],
        ["import", "http://127.0.0.1:1/graph.tar"],
        ["eval", "--from", "toyimg", "--to", "toyaudio", "--split", "bogus"],
    ]
    outputs = {}
    for args in cases:
        out = run(*args)
        assert out.exit_code != 0, (args, out.output)
        outputs[" ".join(args[:2])] = out.output
    # eval without the data: where to point modgraph, never a retraining or a download
    monkeypatch.setenv("MODGRAPH_DATA", str(tmp_path / "no-data"))
    missing = run("eval", "--from", "toyimg", "--to", "toyaudio")
    assert missing.exit_code == 1, missing.output
    assert "--data-root PATH" in missing.output and "modgraph config set data-root PATH" in missing.output
    assert "add-modality" not in missing.output and "--download" not in missing.output
    outputs["eval without data"] = missing.output
    for what, text in outputs.items():
        for pattern in INTERNAL:
            assert not re.search(pattern, text), (what, pattern, text)
        assert "retrain" not in text or what.startswith(("add-modality", "link")), (what, text)


def test_collapse_warnings_say_chance_causes_flags_and_tune():
    from modgraph.learning.evaluation import link_warning, near_chance, node_warnings

    assert near_chance(0.10, 10) and near_chance(0.14, 10) and not near_chance(0.20, 10)
    assert not near_chance(float("nan"), 10) and not near_chance(None, 10)
    [line] = node_warnings("fsdd", {"recognizer_accuracy": 0.97, "reconstruction_accuracy": 0.10}, 10)
    assert "at chance for 10 classes (10%)" in line and "--kl-weight" in line and "--lr" in line
    assert "mostly noise" in line and line.endswith("modgraph tune fsdd")
    assert node_warnings("fsdd", {"recognizer_accuracy": 0.97, "reconstruction_accuracy": 0.80}, 10) == []
    warning = link_warning("fsdd", "mnist", {"accuracy": 0.11}, 10)
    assert "at chance for mnist's 10 classes" in warning and warning.endswith("modgraph tune fsdd mnist")
    assert link_warning("fsdd", "mnist", {"accuracy": 0.9}, 10) is None


# -- folders and streams --------------------------------------------------------------------------
@pytest.mark.usefixtures("toy_installed")
def test_folders_count_what_they_skip_recurse_and_list_all(trained, tmp_path):
    folder = tmp_path / "in"
    for i in range(23):
        toyplugin.image_file(folder / f"{i:02d}.png", i % 3, seed=i)
    toyplugin.image_file(folder / "deeper" / "x.png", 1)
    (folder / "notes.txt").write_text("not an image")
    (folder / "README").write_text("no suffix")
    out = run("read", "--modality", "toyimg", str(folder))
    assert out.exit_code == 0, out.output
    assert "Note: skipped 3 folder entries: 1 .txt, 1 subfolder, 1 no suffix (toyimg reads .png, .pgm; " \
           "--recursive reads subfolders)" in out.output
    assert "... and 3 more (--all or --json lists every input)" in out.output
    assert "\n23 input(s) read, 0 failed, 3 folder entries skipped.\n" in out.output
    every = run("read", "--modality", "toyimg", str(folder), "--recursive", "--all")
    assert "deeper/x.png: toyimg read" in every.output and "... and" not in every.output
    assert "24 input(s) read, 0 failed, 2 folder entries skipped" in every.output
    written = run("translate", "--from", "toyimg", "--to", "toyaudio", str(folder), "-o", str(tmp_path / "out"))
    assert "Route: toyimg -> toyaudio; 23 file(s) written, 0 failed, 3 folder entries skipped." in written.output


@pytest.mark.usefixtures("toy_installed")
def test_a_dash_reads_one_file_from_standard_input(trained, tmp_path):
    image = toyplugin.image_file(tmp_path / "a.png", 2)
    out = run("read", "--modality", "toyimg", "-", input=image.read_bytes())
    assert out.exit_code == 0 and out.output.startswith("-: toyimg read "), out.output
    out = run("translate", "--from", "toyimg", "--to", "toyaudio", "-", "-o", str(tmp_path / "o"), "--json",
              input=image.read_bytes())
    assert out.exit_code == 0, out.output
    import json

    row = json.loads(out.output.splitlines()[0])
    assert row["input"] == "-" and row["outputs"] == [str(tmp_path / "o" / "stdin.wav")]
    empty = run("read", "--modality", "toyimg", "-", input=b"")
    assert empty.exit_code == 1 and "standard input" in empty.output and "was empty" in empty.output
