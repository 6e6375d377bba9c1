"""Tensor code on a device other than the CPU, checked on a CPU-only machine (issue 18).

The simulated device (``modgraph.runtime.simulated_device``) holds CPU data but says it is ``meta``; an op
that mixes it with a CPU tensor raises as it would on a GPU. The conformance kit runs a
modality's hooks on it, and here the library's own paths (add-modality, link, translate,
evaluate) run on it end to end.
"""

from __future__ import annotations

import warnings

import pytest
import torch

import toyplugin
from modgraph.runtime import simulated_device
from modgraph.runtime.simulated_device import DeviceMismatchError, simulated, to_device
from modgraph.testing import check_device_hooks, check_modality


def test_an_op_mixing_the_device_and_the_cpu_raises_as_on_a_gpu():
    x = to_device(torch.rand(2, 5))
    with simulated():
        assert x.device.type == "meta" and simulated_device.is_on_device(x + 1)
        with pytest.raises(DeviceMismatchError, match="same device"):
            x.masked_fill(torch.rand(2, 5) > 0.5, 0.0)
        with pytest.raises(DeviceMismatchError, match="same device"):
            torch.where(torch.rand(2, 5) > 0.5, x, 0.0)
        # What a GPU accepts too: CPU scalars, CPU index tensors, copies across devices.
        assert simulated_device.is_on_device(x * torch.tensor(2.0))
        assert x[torch.tensor([1])].shape == (1, 5)
        x[0] = torch.zeros(5)
        assert x.cpu()[0].eq(0).all()


def test_factories_given_the_device_make_tensors_there_with_real_data():
    x = to_device(torch.arange(6.0))
    with simulated():
        for made in (torch.zeros(3, device=x.device), torch.tensor([1.0, 2.0], device=x.device),
                     torch.arange(3, device=x.device), torch.ones(2).to(x.device), x.new_zeros(2),
                     torch.zeros_like(x)):
            assert simulated_device.is_on_device(made)
        mask = torch.arange(6, device=x.device) > 2
        assert x[mask].cpu().tolist() == [3.0, 4.0, 5.0]
        assert x.nonzero().shape == (5, 1) and x.sum().item() == 15.0 and x.tolist()[1] == 1.0
        with pytest.raises(DeviceMismatchError, match="generator"):
            torch.rand(3, generator=torch.Generator(), device=x.device)


def test_leaving_the_device_is_explicit():
    x = to_device(torch.rand(3))
    with simulated():
        assert type(x.cpu()) is torch.Tensor and type(x.to("cpu")) is torch.Tensor
        with pytest.raises(TypeError):
            x.numpy()  # a GPU tensor has no NumPy view either


@pytest.mark.parametrize("name", ["toyimg", "toyaudio", "toycolor"])
def test_toy_modalities_pass_the_kit_on_meta(toy_host, toy_data, tmp_path, name):
    check_modality(toy_host.get(name), tmp_path / name, data_root=toy_data, device="meta")


class _CpuStatsAudio(toyplugin.ToyAudio):
    """The toy's normalisation as first written: statistics made on the CPU, whatever the input's device."""

    def normalize(self, x, stats):
        return (x - torch.tensor(stats["mean"])) / torch.tensor(stats["std"])


class _NumpyWriter(toyplugin.ToyAudio):
    """write_file that reads the tensor through NumPy without moving it to the CPU first."""

    def write_file(self, x, path, *, scale: int = 1):
        toyplugin.write_wav(x.flatten().numpy().tolist(), path)
        return [path]


@pytest.mark.parametrize("modality,hook", [(_CpuStatsAudio(), "normalize"), (_NumpyWriter(), "write_file")])
def test_the_kit_fails_a_hook_that_leaves_the_device_unasked(tmp_path, modality, hook):
    check_device_hooks(modality, tmp_path / "cpu", device="cpu")
    with pytest.raises(AssertionError, match=f"toyaudio: {hook} on device meta"):
        check_device_hooks(modality, tmp_path / "meta", device="meta")


def test_the_kit_asks_for_plain_numbers_as_statistics(tmp_path):
    class TensorStats(toyplugin.ToyAudio):
        def fit_normalization(self, x):
            return {"mean": x.mean(0), "std": x.std(0)}

    with pytest.raises(AssertionError, match="plain numbers"):
        check_device_hooks(TensorStats(), tmp_path, device="cpu")


def test_add_modality_link_translate_and_evaluate_on_a_device(make_graph, toy_data, tmp_path, monkeypatch):
    """Every tensor the library makes in training, linking, translating and evaluating is on the device."""
    import sys

    # The trainers' fused Adam accepts only real devices; the maths is the CPU's here anyway.
    monkeypatch.setattr(sys.modules["torch.optim.adam"], "_device_dtype_check_for_fused", lambda *a, **k: None)
    graph = make_graph()
    graph._device_name = torch.device("meta")
    with simulated(), warnings.catch_warnings():
        # load_state_dict warns that copying into a meta parameter does nothing; here it copies.
        warnings.filterwarnings("ignore", message=".*copying from a non-meta parameter.*")
        for name in ("toyimg", "toyaudio"):
            node = graph.add_modality(name, epochs=1, recognizer_epochs=1)
            assert node["metrics"]["test_samples"] > 0
        assert graph.registry.node_metadata("toyaudio")["training"]["device"] == "meta"
        linked = graph.link("toyimg", "toyaudio", epochs=1)
        assert set(linked["metrics"]) == {"toyimg->toyaudio", "toyaudio->toyimg"}
        # Faithful targets (the recognizer judges reconstructions) and spread labels (half the rows paired).
        graph.link("toyaudio", "toyimg", epochs=1, target_confidence=0.3, paired_fraction=0.5, candidates=2,
                   pseudo_label_confidence=0.3, source_noise=0.5, select="accuracy")
        images = sorted((toy_data / "toyimg" / "test" / "0").glob("*.png"))[:2]
        result = graph.translate_files("toyimg", "toyaudio", images, output=tmp_path / "out", samples=2)
        assert len(result["written"]) == 4
        out = graph.translate("toyaudio", "toyimg", torch.rand(3, toyplugin.AUDIO_LENGTH))
        assert type(out) is torch.Tensor and out.shape == (3, 1, 1, 8, 8)
        assert 0.0 <= graph.evaluate("toyaudio", "toyimg")["accuracy"] <= 1.0
