"""``modgraph export`` / ``modgraph import``: one file holds a graph; import checks all of it and writes all or nothing."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
import time
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


def shared(root: Path) -> dict:
    """:func:`snapshot` as an archive carries it: node headers without the local data-root hint."""
    from modgraph.storage.headers import shareable_bytes

    return {k: shareable_bytes(root / k) if k.parts[0] == "nodes" else v for k, v in snapshot(root).items()}


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
    # byte for byte but the data root a node was trained from (a local path), and no README copied in
    assert snapshot(copy) == shared(source)
    from modgraph.storage.headers import file_metadata

    assert [json.loads(file_metadata(r / "nodes" / "toyimg.safetensors")["data"]).get("root") is None
            for r in (source, copy)] == [False, True]
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
    data = shared(isolated_env["registry"])[Path("nodes/toyimg.safetensors")]
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
    assert snapshot(target) == shared(isolated_env["registry"])


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


# -- issue 29: archives bounded while streaming, imports all or none ----------------------------------------------
class _Zeros(io.RawIOBase):
    def __init__(self, size):
        self.left = size

    def readable(self):
        return True

    def readinto(self, buffer):
        n = min(len(buffer), self.left)
        buffer[:n] = bytes(n)
        self.left -= n
        return n


def _bomb(path: Path, size: int) -> Path:
    """A gzipped archive whose node member is ``size`` zero bytes (listed in its manifest)."""
    manifest = {"format": "modgraph-archive", "format_version": "1",
                "files": {"nodes/toyimg.safetensors": {"sha256": "0" * 64, "size": size}}}
    with tarfile.open(path, "w:gz", compresslevel=1, format=tarfile.PAX_FORMAT) as tar:
        data = json.dumps(manifest).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        info = tarfile.TarInfo("nodes/toyimg.safetensors")
        info.size = size
        tar.addfile(info, io.BufferedReader(_Zeros(size), 1 << 20))
    return path


def _raw_header(path: Path, kind: bytes, size: int) -> Path:
    """A gzipped tar of one header of type ``kind`` that claims ``size`` bytes it does not have."""
    info = tarfile.TarInfo("././@PaxHeader" if kind == tarfile.XHDTYPE else "././@LongLink")
    info.type, info.size = kind, size
    import gzip

    path.write_bytes(gzip.compress(info.tobuf(format=tarfile.USTAR_FORMAT) + bytes(1 << 16)))
    return path


HOSTILE = {
    "gzip bomb": (lambda p: _bomb(p / "bomb.tar.gz", 200 << 20), "compression bomb"),
    "1.5 GB PAX header": (lambda p: _raw_header(p / "pax.tar.gz", tarfile.XHDTYPE, 1_500_000_000), "extended"),
    "1.5 GB GNU long name": (lambda p: _raw_header(p / "gnu.tar.gz", tarfile.GNUTYPE_LONGNAME, 1_500_000_000),
                             "extended"),
    "nested manifest": (lambda p: rewrite_to(p, lambda m: replace(m, "manifest.json",
                                                                  lambda d: b"[" * 5000 + b"]" * 5000)),
                        "deeper than 64"),
    "not a tar": (lambda p: (p / "junk.tar").write_bytes(b"\x00junk" * 100) and p / "junk.tar", "not a readable tar"),
}


def rewrite_to(folder: Path, change) -> Path:
    return rewrite(folder / "graph.tar", folder / "bad.tar", change)


@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_hostile_archive_is_refused_before_anything_is_written(trained, exported, tmp_path, case):
    make, words = HOSTILE[case]
    bad = make(tmp_path)
    target = tmp_path / "new" / "registry"
    start = time.monotonic()
    result = run("import", str(bad), "--registry", str(target), ok=False)
    assert result.exit_code == 1 and words in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "new").exists()  # not even the folder or its lock
    assert time.monotonic() - start < 30


def test_the_unpacked_total_is_capped(trained, exported, tmp_path, monkeypatch):
    from modgraph.storage import tar_stream

    monkeypatch.setattr(tar_stream, "MAX_UNPACKED", 100_000)
    result = run("import", str(exported), "--registry", str(tmp_path / "copy"), ok=False)
    assert "unpacks to more than 100,000 bytes" in result.output and not (tmp_path / "copy").exists()


def test_a_failed_import_into_a_new_registry_leaves_nothing(trained, exported, tmp_path):
    def nan_weights(data):  # valid sha256 and header, but the weights are NaN: found when loaded, under the lock
        from safetensors.torch import load, save

        tensors = {k: v.fill_(float("nan")) if v.is_floating_point() else v for k, v in load(data).items()}
        header = json.loads(data[8:8 + int.from_bytes(data[:8], "little")])["__metadata__"]
        return save(tensors, metadata=header)

    def change(members):
        members = replace(members, "nodes/toycolor.safetensors", nan_weights)
        data = dict((i.name, d) for i, d in members)["nodes/toycolor.safetensors"]
        return with_manifest(members, lambda m: m["files"]["nodes/toycolor.safetensors"].update(
            sha256=hashlib.sha256(data).hexdigest(), size=len(data)))

    bad = rewrite(exported, tmp_path / "bad.tar", change)
    target = tmp_path / "deep" / "new"
    result = run("import", str(bad), "--registry", str(target), ok=False)
    assert result.exit_code == 1, result.output
    assert "archive member nodes/toycolor.safetensors holds non-finite weights" in result.output, result.output
    assert ".import-" not in result.output and not (tmp_path / "deep").exists()


def test_a_folder_in_place_of_an_edge_is_refused_before_anything_is_replaced(trained, exported, isolated_env,
                                                                            tmp_path):
    target = tmp_path / "target"
    shutil.copytree(isolated_env["registry"], target)
    (target / "nodes" / "toyimg.safetensors").write_bytes(b"an older toyimg")
    edge = target / "edges" / "toyaudio--toycolor.safetensors"
    edge.unlink()
    edge.mkdir()
    before = snapshot(target)
    result = run("import", str(exported), "--registry", str(target), "--force", ok=False)
    assert result.exit_code == 1 and "not a regular file" in result.output and "nothing was imported" not in result.output
    assert snapshot(target) == before and edge.is_dir()


def test_endpoints_are_checked_under_the_lock(trained, exported, tmp_path, monkeypatch):
    """A remove-modality between the first pass and the lock must not let edges of a removed node in (defect 6)."""
    def drop_node(members):
        members = [(i, d) for i, d in members if i.name != "nodes/toycolor.safetensors"]
        return with_manifest(members, lambda m: m["files"].pop("nodes/toycolor.safetensors"))

    part = rewrite(exported, tmp_path / "part.tar", drop_node)
    target = tmp_path / "target"
    run("import", str(exported), "--registry", str(target))
    from modgraph.storage.registry import Registry

    for edge in ("toyaudio--toycolor", "toycolor--toyaudio"):
        (target / "edges" / f"{edge}.safetensors").unlink()
    read_archive = archive._read_archive

    def remove_between(path, staging=None, expected=None):
        manifest = read_archive(path, staging, expected)
        if staging is None:  # the first pass is done, the lock not yet taken: another process removes toycolor
            Registry(target).remove_node("toycolor")
        return manifest

    monkeypatch.setattr(archive, "_read_archive", remove_between)
    result = run("import", str(part), "--registry", str(target), "--force", ok=False)
    assert "needs modality 'toycolor'" in result.output
    assert not list((target / "edges").glob("*toycolor*"))


def test_a_rename_that_fails_midway_is_completed_by_the_next_writer(trained, exported, isolated_env, tmp_path,
                                                                    monkeypatch):
    from modgraph.storage import journal
    from modgraph.storage.registry import Registry

    calls, real = [], journal.os.replace

    def fail_third(src, dst):
        calls.append(dst)
        if len(calls) == 3:  # the journal and one file landed
            raise OSError(5, "Input/output error")
        real(src, dst)

    monkeypatch.setattr(journal.os, "replace", fail_third)
    target = tmp_path / "target"
    with pytest.raises(archive.ModgraphError, match="interrupted .* the next modgraph command that writes"):
        archive.import_archive(Registry(target), exported)
    monkeypatch.setattr(journal.os, "replace", real)
    with Registry(target).lock():
        pass
    assert snapshot(target) == shared(isolated_env["registry"])
    assert not [p for p in target.iterdir() if p.name.startswith(".import-")]
