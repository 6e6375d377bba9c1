"""``modgraph export`` / ``modgraph import``: one file holds a graph; import checks all of it and writes all or nothing."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from modgraph.storage import archive
from modgraph.app.cli import main

pytestmark = pytest.mark.usefixtures("toy_installed")
EVALS = [("toyimg", "toyaudio"), ("toyaudio", "toycolor"), ("toyimg", "toycolor"), ("toycolor", "toyimg"),
         ("toyaudio", "toyaudio")]


def run(*args: str, ok: bool = True):
    result = CliRunner().invoke(main, list(args))
    if ok:
        assert result.exit_code == 0, result.output
    return result


def snapshot(root: Path) -> dict:
    """The registry's trained files and their bytes (the lock file is the registry's machinery)."""
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file() and p.name != ".lock"}


def evals(registry: Path) -> dict:
    return {pair: json.loads(run("eval", "--from", pair[0], "--to", pair[1], "--json", "--registry",
                                 str(registry)).output) for pair in EVALS}


@pytest.fixture
def exported(trained, isolated_env, tmp_path) -> Path:
    path = tmp_path / "graph.tar"
    run("export", str(path))
    return path


def test_round_trip_gives_identical_figures(trained, isolated_env, exported, tmp_path):
    source = isolated_env["registry"]
    before = evals(source)
    copy = tmp_path / "copy"
    result = run("import", str(exported), "--registry", str(copy))
    assert f"Wrote {copy / 'nodes' / 'toyimg.safetensors'}" in result.output
    assert snapshot(copy) == snapshot(source)  # byte for byte, and no README copied into the registry
    assert evals(copy) == before


def test_archive_holds_a_manifest_and_the_card(trained, exported, isolated_env):
    with tarfile.open(exported) as tar:
        names = tar.getnames()
        manifest = json.loads(tar.extractfile("manifest.json").read())
        card = tar.extractfile("README.md").read().decode()
    assert names[:2] == ["manifest.json", "README.md"]
    assert manifest["format"] == "modgraph-archive" and manifest["modgraph_version"] == "0.1.0"
    assert manifest["plugins"] == {"modgraph-toy": "0.0.1"}
    node = manifest["files"]["nodes/toyimg.safetensors"]
    data = (isolated_env["registry"] / "nodes" / "toyimg.safetensors").read_bytes()
    assert node["sha256"] == hashlib.sha256(data).hexdigest() and node["size"] == len(data)
    assert (node["kind"], node["plugin"], node["plugin_version"], node["modgraph_version"]) == (
        "modality", "modgraph-toy", "0.0.1", "0.1.0")
    assert manifest["files"]["edges/toyimg--toyaudio.safetensors"]["kind"] == "associator"
    assert "# modgraph registry: 3 modalities, 4 associators" in card


def test_only_exports_the_subgraph(trained, tmp_path):
    path = tmp_path / "part.tar.gz"
    assert "2 modalities (toyaudio, toyimg), 2 associators" in run("export", str(path), "--only", "toyimg,toyaudio").output
    with tarfile.open(path) as tar:
        assert sorted(tar.getnames()) == ["README.md", "edges/toyaudio--toyimg.safetensors",
                                          "edges/toyimg--toyaudio.safetensors", "manifest.json",
                                          "nodes/toyaudio.safetensors", "nodes/toyimg.safetensors"]
        assert "# modgraph registry: 2 modalities, 2 associators" in tar.extractfile("README.md").read().decode()
    run("import", str(path), "--registry", str(tmp_path / "part"))
    assert run("route", "toyimg", "toyaudio", "--registry", str(tmp_path / "part")).output.strip() == "toyimg -> toyaudio"
    result = run("export", str(tmp_path / "x.tar"), "--only", "toyimg,nothing", ok=False)
    assert result.exit_code == 1 and "--only names 'nothing', not in registry" in result.output


def rewrite(exported: Path, out: Path, change) -> Path:
    """A copy of ``exported`` whose members (name, TarInfo, bytes) went through ``change`` (a list in, a list out)."""
    with tarfile.open(exported) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in change(members):
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return out


def with_manifest(members, edit):
    out = []
    for info, data in members:
        if info.name == "manifest.json":
            manifest = json.loads(data)
            edit(manifest)
            data = json.dumps(manifest).encode()
            info.size = len(data)
        out.append((info, data))
    return out


def add(members, name, data=b"x", kind=tarfile.REGTYPE, linkname="", listed=True):
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, linkname, len(data) if kind == tarfile.REGTYPE else 0

    def edit(manifest):
        if listed:
            manifest["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}

    return with_manifest(members, edit) + [(info, data)]


def replace(members, name, transform):
    out = []
    for info, data in members:
        if info.name == name:
            data = transform(data)
            info.size = len(data)
        out.append((info, data))
    return out


def flip_byte(data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 0xFF])


def huge(manifest):
    manifest["files"]["nodes/toyimg.safetensors"]["size"] = 10 ** 13


REFUSALS = {
    "leaves via ..": (lambda m: add(m, "nodes/../../evil.safetensors"), "leaves the registry"),
    "absolute path": (lambda m: add(m, "/tmp/nodes/evil.safetensors"), "has an absolute path"),
    "symlink": (lambda m: add(m, "nodes/evil.safetensors", b"", tarfile.SYMTYPE, "/etc/passwd"), "is a link"),
    "hard link": (lambda m: add(m, "nodes/evil.safetensors", b"", tarfile.LNKTYPE, "nodes/toyimg.safetensors"),
                  "is a link"),
    "device": (lambda m: add(m, "nodes/evil.safetensors", b"", tarfile.CHRTYPE), "is not a regular file"),
    "wrong hash": (lambda m: replace(m, "nodes/toyimg.safetensors", flip_byte), "does not match its sha256"),
    "truncated member": (lambda m: replace(m, "edges/toyimg--toyaudio.safetensors", lambda d: d[:-100]),
                         "truncated or altered"),
    "file not in the manifest": (lambda m: add(m, "nodes/extra.safetensors", listed=False), "is not in manifest.json"),
    "unexpected kind of file": (lambda m: add(m, "notes.txt"), "is not a registry file"),
    "bad modality name": (lambda m: add(m, "nodes/Evil-Name.safetensors"), "is not a modality name"),
    "huge declared size": (lambda m: with_manifest(m, huge), "more than allowed"),
    "no manifest": (lambda m: [(i, d) for i, d in m if i.name != "manifest.json"], "has no manifest.json"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_import_refuses_and_writes_nothing(trained, exported, isolated_env, tmp_path, case):
    change, message = REFUSALS[case]
    bad = rewrite(exported, tmp_path / "bad.tar", change)
    target = tmp_path / "target"
    (target / "nodes").mkdir(parents=True)  # a registry with a node that --force would replace
    shutil.copy(isolated_env["registry"] / "nodes" / "toycolor.safetensors", target / "nodes")
    (target / "nodes" / "toycolor.safetensors").write_bytes(b"an older toycolor")
    before = snapshot(target)
    result = run("import", str(bad), "--registry", str(target), "--force", ok=False)
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], result.output
    assert snapshot(target) == before
    assert not (tmp_path / "evil.safetensors").exists() and not Path("/tmp/nodes/evil.safetensors").exists()


def test_a_truncated_archive_is_refused(trained, exported, tmp_path):
    data = exported.read_bytes()
    cut = tmp_path / "cut.tar"
    cut.write_bytes(data[: len(data) // 2])
    result = run("import", str(cut), "--registry", str(tmp_path / "target"), ok=False)
    assert result.exit_code == 1 and ("truncated" in result.output or "lacks" in result.output)
    assert not (tmp_path / "target" / "nodes").exists()


def test_an_existing_node_is_kept_without_force(trained, exported, isolated_env, tmp_path):
    target = tmp_path / "target"
    run("add-modality", "toyimg", "--epochs", "1", "--recognizer-epochs", "1", "--registry", str(target))
    before = snapshot(target)
    result = run("import", str(exported), "--registry", str(target), ok=False)
    assert result.exit_code == 1 and "already holds nodes/toyimg.safetensors; import with --force" in result.output
    assert snapshot(target) == before
    result = run("import", str(exported), "--registry", str(target), "--force")
    assert f"Wrote {target / 'nodes' / 'toyimg.safetensors'} (replaced)" in result.output
    assert snapshot(target) == snapshot(isolated_env["registry"])


def test_an_edge_without_its_nodes_is_refused(trained, exported, tmp_path):
    def drop_node(members):
        members = [(i, d) for i, d in members if i.name != "nodes/toycolor.safetensors"]
        return with_manifest(members, lambda m: m["files"].pop("nodes/toycolor.safetensors"))

    bad = rewrite(exported, tmp_path / "bad.tar", drop_node)
    result = run("import", str(bad), "--registry", str(tmp_path / "target"), ok=False)
    assert "needs modality 'toycolor', which neither the archive nor registry" in result.output


def test_member_names():
    assert archive.member_kind("nodes/mnist.safetensors") == ("node", ("mnist",))
    assert archive.member_kind("edges/fsdd--mnist.safetensors") == ("edge", ("fsdd", "mnist"))
    for bad in ("nodes/./mnist.safetensors", "nodes//mnist.safetensors", "C:/nodes/x.safetensors",
                "nodes\\x.safetensors", "edges/a--b--c.safetensors", "nodes/mnist.safetensors/x"):
        with pytest.raises(archive.ArchiveError):
            archive.member_kind(bad)
