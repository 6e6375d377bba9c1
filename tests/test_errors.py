"""Every error class is raised by a real situation, and ``modgraph --help`` stays light."""

from __future__ import annotations

import inspect
import subprocess
import sys
import types
from pathlib import Path

import pytest
from filelock import FileLock

import modgraph.errors as errors
import toyplugin
from modgraph import hookimpl
from modgraph.plugins import PluginHost

QUICK = dict(epochs=1, recognizer_epochs=1)


def _host_with(*modalities):
    plugin = types.ModuleType("extra")
    plugin.register_modalities = hookimpl(lambda register: [register(m) for m in modalities])
    host = PluginHost(load_entry_points=False)
    host.add_plugin(toyplugin, name="toy", distribution="modgraph-toy")
    host.add_plugin(plugin, name="extra", distribution="modgraph-extra")
    return host


def _locked(graph, tmp_path):
    with FileLock(str(graph.registry.root / ".lock")):
        with graph.registry.lock(timeout=0.05):
            pass


def _corrupt(graph, tmp_path):
    graph.registry.node_path("toyimg").write_bytes(b"\x00" * 7)
    graph.graph()


def _bad_input(graph, tmp_path):
    (tmp_path / "photo.png").write_text("text, not pixels")
    graph.translate_files("toyimg", "toyaudio", [tmp_path / "photo.png"], tmp_path / "out")


def _no_route(graph, tmp_path):
    graph.unlink("toyaudio", "toycolor")
    graph.route("toyimg", "toycolor")


def _missing_data(graph, tmp_path):
    graph.data_root = tmp_path / "empty"
    graph.add_modality("toyimg", **QUICK)


def _shard_gone(graph, tmp_path):
    from modgraph.features.cache import load_split

    modality = graph.modality("toyimg")
    load_split(modality, graph.data_root, "test", cache_dir=graph.cache_dir)  # builds the cache
    rows = load_split(modality, graph.data_root, "test", cache_dir=graph.cache_dir, in_memory_bytes=0).x
    for shard in rows.shards:
        Path(shard.path).unlink()
    rows[0]


def _unsafe_archive(graph, tmp_path):
    import tarfile

    from modgraph.storage.archive import import_archive

    with tarfile.open(tmp_path / "evil.tar", "w") as tar:
        info = tarfile.TarInfo("nodes/toyimg.safetensors")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(info)
    import_archive(graph.registry, tmp_path / "evil.tar")


def _out_of_gpu_memory(graph, tmp_path):
    import torch

    import modgraph.learning.intra_modal

    def out_of_memory(*args, **kwargs):  # what a GPU raises; a CPU never does
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has ...")

    real, modgraph.learning.intra_modal.train_vae = modgraph.learning.intra_modal.train_vae, out_of_memory
    try:
        graph.add_modality("toyimg", batch_size=64, **QUICK)
    finally:
        modgraph.learning.intra_modal.train_vae = real


def _other_registry(graph, tmp_path):
    from modgraph.storage.registry_id import check_registry_id

    check_registry_id(graph.registry.root, "0" * 32)  # a job of modgraph train planned for another registry


# Each error class, the situation that raises it, and words its message must contain.
def _folder_as_output(graph, tmp_path):
    from modgraph.storage.card import write_card

    write_card(graph, tmp_path)  # card -o FOLDER


SITUATIONS = {
    errors.ModgraphError: (_locked, "locked by another modgraph process"),
    errors.PluginError: (lambda g, t: _host_with("not a modality").modalities(), "not a modgraph.Modality"),
    errors.DuplicateModalityError: (lambda g, t: _host_with(toyplugin.ToyImage()).modalities(),
                                    "'modgraph-toy' and 'modgraph-extra'"),
    errors.UnknownModalityError: (lambda g, t: g.add_modality("toysmell"), "installed modalities: toyaudio"),
    errors.NotInRegistryError: (lambda g, t: g.remove_modality("toysmell"), "modgraph add-modality toysmell"),
    errors.NoRouteError: (_no_route, "modgraph link toyimg toycolor"),
    errors.RegistryCorruptError: (_corrupt, "toyimg.safetensors is unreadable"),
    errors.DataNotFoundError: (_missing_data, "--download"),
    errors.FeatureCacheError: (_shard_gone, "run the command again to rebuild"),
    errors.InputFileError: (_bad_input, "photo.png: not a readable image"),
    errors.ConfigError: (lambda g, t: g.evaluate("toyimg", "toyaudio", split="everything"), "split: Input should be"),
    errors.PairingError: (lambda g, t: g.link("toycolor", "toyimg"), "--pairing index"),
    errors.TrainingDivergedError: (lambda g, t: g.add_modality("toycolor", lr=1e30, **QUICK), "--lr"),
    errors.ArchiveError: (_unsafe_archive, "'nodes/toyimg.safetensors' is a link (to '/etc/passwd')"),
    errors.DeviceOutOfMemoryError: (_out_of_gpu_memory, "a smaller --batch-size (now 64), --device cpu"),
    errors.RegistryMismatchError: (_other_registry, "mount the shared registry there"),
    errors.OutputPathError: (_folder_as_output, "it is a folder, not a regular file"),
}


def test_every_error_class_has_a_situation():
    defined = {obj for _, obj in inspect.getmembers(errors, inspect.isclass)
               if issubclass(obj, errors.ModgraphError) and obj.__module__ == errors.__name__}
    assert defined == set(SITUATIONS)


@pytest.mark.parametrize("error", list(SITUATIONS), ids=lambda e: e.__name__)
def test_error_is_raised_with_an_actionable_message(trained, tmp_path, error):
    situation, words = SITUATIONS[error]
    with pytest.raises(errors.ModgraphError) as info:
        situation(trained, tmp_path)
    assert type(info.value) is error  # exactly this class, not a relative
    assert words in str(info.value)
    assert "\n" not in str(info.value)  # the CLI prints it as one line


def test_help_does_not_import_torch():
    code = (
        "import sys\n"
        "import modgraph, modgraph.app.cli\n"
        "for args in (['--help'], ['link', '--help'], ['translate', '--help'], ['serve', '--help'], ['--version']):\n"
        "    try:\n"
        "        modgraph.app.cli.main(args)\n"
        "    except SystemExit as exc:\n"
        "        assert exc.code == 0, exc.code\n"
        "heavy = sorted(m for m in ('torch', 'torchvision', 'torchaudio', 'PIL') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Usage: " in result.stdout and "--paired-fraction" in result.stdout
