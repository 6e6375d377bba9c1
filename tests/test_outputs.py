"""Outputs a user names, and what modgraph prints from files, headers and names (issue 29).

Every command that writes a user-named path replaces only a regular file, atomically, and refuses
a device, a FIFO, a socket, a folder or a link to one in one line without opening it; nothing
printed from a file, a header or a name carries a terminal escape. Hostile files are made only
in ``tmp_path`` (a FIFO, a socket, a character device made with mknod), never at a system path.
"""

from __future__ import annotations

import io
import json
import os
import socket
import stat
import tarfile
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from no_hang import deadline

from modgraph.app.cli import main
from modgraph.errors import OutputPathError, printable
from modgraph.storage.outputs import check_output, output_file, write_bytes_atomically

ESCAPE = "\x1b]0;owned\x07\x1b[31m"  # a title-setting OSC sequence, a bell and a colour


def cli(*args):
    return CliRunner().invoke(main, list(args))


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def _device(path: Path) -> Path:
    """A character device like /dev/null (1, 3), made in tmp_path; skipped where mknod is not allowed."""
    try:
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("making a device file needs root")
    return path


def _folder(path: Path) -> Path:
    path.mkdir()
    return path


def _socket(path: Path) -> Path:
    # a socket's path must fit in 108 bytes: bind in a short folder, then move it into place
    short = Path(tempfile.mkdtemp(prefix="mg-")) / "s"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(short))
    server.close()
    os.replace(short, path)
    short.parent.rmdir()
    return path


def _link_to_fifo(path: Path) -> Path:
    path.symlink_to(_fifo(path.with_name("target.fifo")))
    return path


def _link_to_folder(path: Path) -> Path:
    path.symlink_to(_folder(path.with_name("target-folder")))
    return path


SPECIAL = {"fifo": _fifo, "device": _device, "folder": _folder, "socket": _socket,
           "link to a fifo": _link_to_fifo, "link to a folder": _link_to_folder}
WORDS = {"fifo": "a FIFO (named pipe)", "device": "a character device", "folder": "a folder", "socket": "a socket",
         "link to a fifo": "a link to a FIFO (named pipe)", "link to a folder": "a link to a folder"}


def _kind(path: Path) -> int:
    return stat.S_IFMT(os.lstat(path).st_mode)


# -- the output function --------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", SPECIAL)
def test_special_files_are_refused_in_one_line_and_left_as_they_are(tmp_path, kind):
    path = SPECIAL[kind](tmp_path / "out.bin")
    before = _kind(path)
    with deadline(), pytest.raises(OutputPathError) as err:
        write_bytes_atomically(path, b"data")
    assert str(err.value) == (f"will not write {path}: it is {WORDS[kind]}, not a regular file; "
                              "give the name of a new or regular file")
    assert _kind(path) == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_a_link_to_a_regular_file_is_replaced_not_written_through(tmp_path):
    victim = tmp_path / "elsewhere.txt"
    victim.write_text("not yours")
    link = tmp_path / "out.txt"
    link.symlink_to(victim)
    write_bytes_atomically(link, b"ours")
    assert not link.is_symlink() and link.read_bytes() == b"ours" and victim.read_text() == "not yours"
    dangling = tmp_path / "dangling.txt"
    dangling.symlink_to(tmp_path / "nowhere")
    write_bytes_atomically(dangling, b"ours")
    assert dangling.read_bytes() == b"ours" and not (tmp_path / "nowhere").exists()


def test_a_target_that_becomes_a_fifo_while_writing_is_not_replaced(tmp_path):
    path = tmp_path / "out.bin"
    with pytest.raises(OutputPathError, match="a FIFO"):
        with output_file(path) as tmp:
            tmp.write_bytes(b"data")
            os.mkfifo(path)
    assert stat.S_ISFIFO(os.lstat(path).st_mode) and sorted(tmp_path.iterdir()) == [path]


def test_names_the_file_system_cannot_hold_are_refused_before_writing(tmp_path):
    with pytest.raises(OutputPathError, match="the file name is 300 bytes long"):
        check_output(tmp_path / ("x" * 296 + ".png"))
    with pytest.raises(OutputPathError, match="it names a folder"):
        check_output(tmp_path / "..")
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    with pytest.raises(OutputPathError, match="out.png: Not a directory"):
        write_bytes_atomically(blocker / "out.png", b"data")
    assert list(tmp_path.iterdir()) == [blocker]


# -- every command that writes a user-named path ------------------------------------------------------------
def _img(trained):
    return str(next((trained.data_root / "toyimg" / "test").rglob("*.png")))


COMMANDS = {
    "export": lambda trained, out: ["export", str(out)],
    "history -o": lambda trained, out: ["history", "toyimg", "-o", str(out)],
    "card -o": lambda trained, out: ["card", "-o", str(out)],
    "translate -o": lambda trained, out: ["translate", "--from", "toyimg", "--to", "toyaudio", _img(trained),
                                          "-o", str(out)],
    "translate --sheet": lambda trained, out: ["translate", "--from", "toyimg", "--to", "toyaudio", _img(trained),
                                               "-o", str(out.parent / "outputs"), "--sheet", str(out)],
}
SUFFIX = {"export": ".tar", "history -o": ".png", "card -o": ".md", "translate -o": ".wav",
          "translate --sheet": ".png"}


@pytest.mark.usefixtures("toy_installed")
@pytest.mark.parametrize("kind", ["fifo", "device", "socket", "link to a fifo"])
@pytest.mark.parametrize("command", COMMANDS)
def test_commands_refuse_special_outputs_in_one_line(trained, tmp_path, command, kind):
    out = SPECIAL[kind](tmp_path / f"out{SUFFIX[command]}")
    before = _kind(out)
    with deadline():
        result = cli(*COMMANDS[command](trained, out))
    assert result.exit_code == 1, result.output
    assert result.output.startswith(f"Error: will not write {out}: it is {WORDS[kind]}"), result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert _kind(out) == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.usefixtures("toy_installed")
@pytest.mark.parametrize("command", COMMANDS)
def test_commands_still_write_and_replace_regular_files(trained, tmp_path, command):
    out = tmp_path / f"out{SUFFIX[command]}"
    out.write_bytes(b"old")
    result = cli(*COMMANDS[command](trained, out))
    assert result.exit_code == 0, result.output
    assert out.is_file() and out.read_bytes() != b"old"
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]


@pytest.mark.usefixtures("toy_installed")
def test_a_folder_named_as_an_export_or_card_is_refused(trained, tmp_path):
    for args in (["export", str(_folder(tmp_path / "a.tar"))], ["card", "-o", str(_folder(tmp_path / "c.md"))],
                 ["history", "toyimg", "-o", str(_folder(tmp_path / "h.png"))]):
        result = cli(*args)
        assert result.exit_code != 0 and len(result.output.strip().splitlines()) == 1, (args, result.output)
        assert "Traceback" not in result.output and Path(args[-1]).is_dir()


# -- a long input name leaves nothing half-written -----------------------------------------------------------
@pytest.mark.usefixtures("toy_installed")
def test_a_250_character_input_name_translates_under_a_shorter_output_name(trained, tmp_path):
    long = tmp_path / ("d" * 246 + ".png")
    long.write_bytes(Path(_img(trained)).read_bytes())
    result = cli("translate", "--from", "toyimg", "--to", "toyaudio", str(long), "-o", str(tmp_path / "outs"))
    assert result.exit_code == 0, result.output
    written = list((tmp_path / "outs").iterdir())
    assert [p.name for p in written] == ["d" * 200 + ".wav"]
    assert "keep only the first 200 bytes" in result.output


# -- printed text ----------------------------------------------------------------------------------------------
def test_printable_escapes_control_characters_and_undecodable_bytes():
    assert printable("plain name.png") == "plain name.png"
    assert printable("a\x1b[31mb\x07c\nd\te\u202ef") == "a\\x1b[31mb\\x07c\\nd\\te\\u202ef"
    assert printable(os.fsdecode(b"caf\xe9.wav")) == "caf\\xe9.wav"
    assert printable("line one\nline two\x1b", keep="\n") == "line one\nline two\\x1b"


def _rewrite_header(path: Path, **changes) -> None:
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata())
    meta.update(changes)
    save_file(load_file(str(path)), str(path), metadata=meta)


@pytest.mark.usefixtures("toy_installed")
def test_card_shows_hostile_header_strings_escaped(trained, tmp_path):
    _rewrite_header(trained.registry.node_path("toyimg"), plugin_version="1.0" + ESCAPE,
                    modgraph_version="0.1" + ESCAPE)
    printed = cli("card")
    assert printed.exit_code == 0, printed.output
    assert "\x1b" not in printed.output and "\x07" not in printed.output and "\\x1b]0;owned" in printed.output
    result = cli("card", "-o", str(tmp_path / "card.md"))
    assert result.exit_code == 0 and "\x1b" not in (tmp_path / "card.md").read_text()


@pytest.mark.usefixtures("toy_installed")
@pytest.mark.parametrize("command", ["read", "translate"])
def test_file_names_are_printed_escaped(trained, tmp_path, command):
    good = tmp_path / f"digit{ESCAPE}.png"
    good.write_bytes(Path(_img(trained)).read_bytes())
    bad = tmp_path / f"broken{ESCAPE}.png"
    bad.write_bytes(b"not an image")
    args = (["read", "--modality", "toyimg"] if command == "read" else
            ["translate", "--from", "toyimg", "--to", "toyaudio", "-o", str(tmp_path / "outs")])
    result = cli(*args, str(good), str(bad))
    assert result.exit_code == 1  # the broken file is an error line; the good one is read
    assert "\x1b" not in result.output and "\x07" not in result.output, result.output
    assert "digit\\x1b]0;owned\\x07" in result.output and "broken\\x1b]0;owned\\x07" in result.output


@pytest.mark.usefixtures("toy_installed")
def test_a_non_utf8_file_name_is_printed_as_its_bytes(trained, tmp_path):
    name = os.fsdecode(b"caf\xe9.png")
    (tmp_path / name).write_bytes(Path(_img(trained)).read_bytes())
    result = cli("read", "--modality", "toyimg", str(tmp_path / name))
    assert result.exit_code == 0, result.output
    assert "caf\\xe9.png: toyimg read" in result.output


def _tar(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.mark.usefixtures("toy_installed")
def test_import_prints_the_manifests_plugin_field_escaped(trained, tmp_path, monkeypatch):
    exported = tmp_path / "graph.tar"
    assert cli("export", str(exported), "--only", "toyimg,toyaudio").exit_code == 0
    with tarfile.open(exported) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}
    manifest = json.loads(members["manifest.json"])
    for entry in manifest["files"].values():
        if entry.get("kind") == "modality":
            entry["plugin"] = "evil" + ESCAPE
    manifest["plugins"] = {"evil" + ESCAPE: "1.0"}
    members["manifest.json"] = json.dumps(manifest).encode()
    hostile = tmp_path / "hostile.tar"
    hostile.write_bytes(_tar(members))
    monkeypatch.setenv("MODGRAPH_LOAD_PLUGINS", "nothing-installed")  # every node's plugin is missing: notes
    result = cli("import", str(hostile), "--registry", str(tmp_path / "fresh"))
    assert "\x1b" not in result.output and "\x07" not in result.output, result.output
    assert result.exit_code == 0 and "plugin evil\\x1b]0;owned\\x07" in result.output, result.output


def test_error_lines_are_printed_escaped(tmp_path):
    result = cli("history", "toyimg" + ESCAPE, "--registry", str(tmp_path / "registry"))
    assert result.exit_code == 1 and "\x1b" not in result.output and "\x07" not in result.output, result.output
