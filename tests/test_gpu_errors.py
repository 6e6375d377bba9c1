"""What only a GPU machine can get wrong, as one line each, checked on the CPU by standing in for torch.cuda.

Out of memory, a GPU without bfloat16, more ``--nproc`` processes than GPUs, ``--device cuda``
without CUDA or with a GPU index the machine lacks (issue 18).
"""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

import modgraph.api
import modgraph.learning.cross_modal
import modgraph.learning.intra_modal
from modgraph.runtime import launch
from modgraph.app.cli import main
from modgraph.errors import ConfigError, DeviceOutOfMemoryError
from modgraph.learning.training import resolve_device

OOM = "CUDA out of memory. Tried to allocate 20.00 GiB. GPU 0 has a total capacity of 139.81 GiB of which ..."


def _out_of_memory(*args, **kwargs):
    raise torch.cuda.OutOfMemoryError(OOM)


def _one_line(result, *parts: str) -> None:
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert "Traceback" not in result.output and len(errors) == 1, result.output
    for part in parts:
        assert part in result.output, result.output


@pytest.mark.usefixtures("toy_installed")
def test_out_of_memory_in_training_is_one_line_naming_the_batch_size(toy_data, monkeypatch):
    monkeypatch.setattr(modgraph.learning.intra_modal, "train_vae", _out_of_memory)
    result = CliRunner().invoke(main, ["add-modality", "toyimg", "--epochs", "1", "--batch-size", "64"])
    _one_line(result, "add-modality ran out of GPU memory", "Tried to allocate 20.00 GiB", "nothing was saved",
              "a smaller --batch-size (now 64)", "--device cpu")


def test_out_of_memory_in_linking_translating_and_evaluating(trained, monkeypatch, tmp_path):
    monkeypatch.setattr(modgraph.learning.cross_modal, "train_associator", _out_of_memory)
    with pytest.raises(DeviceOutOfMemoryError, match=r"^link ran out .*a smaller --batch-size, --device cpu"):
        trained.link("toyimg", "toyaudio", epochs=1)
    monkeypatch.setattr(modgraph.api.ModGraph, "translate_normalized", _out_of_memory)
    with pytest.raises(DeviceOutOfMemoryError, match=r"^translate ran out .*\)\. Use --device cpu"):
        trained.translate("toyimg", "toyaudio", torch.rand(2, 1, 8, 8))
    with pytest.raises(DeviceOutOfMemoryError, match="^translate ran out"):
        trained.translate_files("toyimg", "toyaudio", texts=[], inputs=[_png(tmp_path)])
    with pytest.raises(DeviceOutOfMemoryError, match=r"^eval ran out .*Use --device cpu"):
        trained.evaluate("toyimg", "toyaudio")


def _png(folder):
    import toyplugin

    path = folder / "one.png"
    toyplugin.write_png([[0.0] * 8] * 8, path)
    return path


def test_bf16_on_a_gpu_without_it_fails_before_the_data_is_read(make_graph, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla V100-SXM2-16GB")
    graph = make_graph()
    graph._device_name, graph.precision = "cuda", "bf16"
    monkeypatch.setattr(graph, "features", lambda *a, **k: pytest.fail("the data was read before the check"))
    with pytest.raises(ConfigError, match="V100-SXM2-16GB has no native bfloat16; use --precision fp32"):
        graph.add_modality("toyimg")


@pytest.mark.usefixtures("toy_installed")
def test_bf16_on_a_gpu_without_it_is_one_line(toy_data, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla T4")
    result = CliRunner().invoke(main, ["add-modality", "toyimg", "--device", "cuda", "--precision", "bf16"])
    _one_line(result, "Tesla T4 has no native bfloat16", "--precision fp32")


@pytest.mark.usefixtures("toy_installed")
def test_more_processes_than_gpus_is_one_line_before_launching(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(launch, "run_torchrun", lambda *a: pytest.fail("torchrun was launched"))
    for device in ("cuda", "auto"):  # auto takes the GPUs when there are some
        result = CliRunner().invoke(main, ["add-modality", "toyimg", "--nproc", "4", "--device", device])
        _one_line(result, "--nproc 4 starts one process per GPU, but this machine has 2 GPU(s)", "--nproc 2",
                  "--device cpu")
    launched = []
    monkeypatch.setattr(launch, "run_torchrun", lambda nproc, args, *machines: launched.append(nproc))
    assert CliRunner().invoke(main, ["link", "a", "b", "--nproc", "2", "--device", "cuda"]).exit_code == 0
    assert CliRunner().invoke(main, ["link", "a", "b", "--nproc", "8", "--device", "cpu"]).exit_code == 0
    assert launched == [2, 8]


@pytest.mark.usefixtures("toy_installed")
def test_cuda_without_a_gpu_is_one_line(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(launch, "run_torchrun", lambda *a: pytest.fail("torchrun was launched"))
    for args in (["add-modality", "toyimg", "--device", "cuda"],
                 ["link", "a", "b", "--nproc", "2", "--device", "cuda"]):
        _one_line(CliRunner().invoke(main, args), "no CUDA GPU is available; use --device cpu or auto")


def test_a_gpu_index_the_machine_lacks_is_an_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("cuda:0") == torch.device("cuda", 0)
    with pytest.raises(ConfigError, match="has 1 GPU"):
        resolve_device("cuda:3")
