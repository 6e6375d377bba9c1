"""Training end to end on the toy data: add, link, evaluate, cascades, seeds, options and data errors."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import load_file

import toyplugin
from modgraph.errors import (ConfigError, DataNotFoundError, NotInRegistryError, PairingError,
                             UnknownModalityError)

QUICK = dict(epochs=1, recognizer_epochs=1)
EVAL_KEYS = {"source", "target", "path", "split", "n", "accuracy", "per_class", "anchor", "anchors_missing"}


def test_linked_modalities_translate_with_high_accuracy(trained):
    for source, target in (("toyimg", "toyaudio"), ("toyaudio", "toyimg")):
        result = trained.evaluate(source, target)
        assert set(result) == EVAL_KEYS
        assert (result["source"], result["target"], result["split"]) == (source, target, "test")
        assert result["path"] == [source, target]
        assert result["n"] == 18
        assert 0.0 <= result["accuracy"] <= 1.0
        assert result["accuracy"] >= 0.8, result  # the toy data is easy: an untrained model scores ~1/3
        assert set(result["per_class"]) == {"0", "1", "2"}


def test_evaluate_matches_the_accuracy_recorded_when_linking(trained):
    recorded = trained.graph().edges["toyimg", "toyaudio"]["metrics"]
    result = trained.evaluate("toyimg", "toyaudio", anchor=0)  # link scores the paper's translation
    assert result["accuracy"] == pytest.approx(recorded["accuracy"])
    assert result["n"] == recorded["test_samples"]


def test_cascade_through_three_modalities(trained):
    result = trained.evaluate("toyimg", "toycolor")
    assert result["path"] == ["toyimg", "toyaudio", "toycolor"]
    assert set(result["per_class"]) == {"red", "green", "blue"}  # zero -> 0 -> red, by concept then index
    assert result["n"] == 18 and result["accuracy"] >= 0.8, result
    back = trained.evaluate("toycolor", "toyimg")
    assert back["path"] == ["toycolor", "toyaudio", "toyimg"] and back["n"] == 54

    images = trained.features(trained.modality("toyimg"), "test").x[:4]
    out = trained.translate("toyimg", "toycolor", images)
    assert out.shape == (4, 1, toyplugin.COLOR_DIM)
    assert torch.isfinite(out).all() and bool(((out >= 0) & (out <= 1)).all())


def test_evaluate_a_modality_against_itself_is_vae_reconstruction(trained):
    result = trained.evaluate("toyaudio", "toyaudio")
    assert result["path"] == ["toyaudio"]
    meta = trained.graph().nodes["toyaudio"]
    assert result["accuracy"] == pytest.approx(meta["metrics"]["reconstruction_accuracy"])
    assert result["n"] == meta["metrics"]["test_samples"]


def test_evaluate_via_a_round_trip(trained):
    result = trained.evaluate("toyimg", "toyimg", via=["toyaudio"])
    assert result["path"] == ["toyimg", "toyaudio", "toyimg"]
    assert 0.0 <= result["accuracy"] <= 1.0


def test_evaluate_splits_and_groups(trained):
    assert trained.evaluate("toyaudio", "toyimg", split="train")["n"] == 72
    assert trained.evaluate("toyaudio", "toyimg", split="all")["n"] == 72 + 18
    assert trained.evaluate("toyaudio", "toyimg", include={"speaker": ["ann"]})["n"] == 9
    with pytest.raises(ConfigError, match="split: Input should be .test., .train. or .all."):
        trained.evaluate("toyaudio", "toyimg", split="validation")
    with pytest.raises(ConfigError, match="no 'accent' grouping.*speaker"):
        trained.evaluate("toyaudio", "toyimg", include={"accent": ["x"]})
    with pytest.raises(ConfigError, match="no 'speaker' grouping"):
        trained.evaluate("toyimg", "toyaudio", include={"speaker": ["ann"]})


def test_translate_draws_distinct_samples(trained):
    clips = trained.features(trained.modality("toyaudio"), "test").x[:2]
    out = trained.translate("toyaudio", "toyimg", clips, samples=3)
    assert out.shape == (2, 3, 1, 8, 8)
    assert not torch.equal(out[:, 0], out[:, 1])
    single = trained.translate("toyaudio", "toyimg", clips)
    assert torch.equal(single, trained.translate("toyaudio", "toyimg", clips))  # the mean path is deterministic


def test_add_and_link_from_scratch(mg, toy_data):
    report = mg.add_modality("toyimg", latent_dim=4, **QUICK)
    assert set(report["metrics"]) >= {"recognizer_accuracy", "reconstruction_accuracy", "test_samples"}
    mg.add_modality("toyaudio", **QUICK)
    report = mg.link("toyimg", "toyaudio", epochs=1)
    assert set(report["metrics"]) == {"toyimg->toyaudio", "toyaudio->toyimg"}
    assert len(report["paths"]) == 2
    assert mg.node("toyimg").vae.latent_dim == 4
    assert mg.associator("toyimg", "toyaudio").config.source_dim == 4  # latent sizes may differ
    assert mg.associator("toyimg", "toyaudio").config.target_dim == toyplugin.ToyAudio.default_latent_dim
    result = mg.evaluate("toyimg", "toyaudio")
    assert 0.0 <= result["accuracy"] <= 1.0 and result["n"] == 18


def _weights(registry_root, relative):
    return load_file(str(registry_root / relative))


def test_a_seed_makes_training_reproducible(make_graph, toy_data, tmp_path):
    graphs = {name: make_graph(registry=tmp_path / name) for name in ("a", "b", "c")}
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        graphs[name].add_modality("toycolor", seed=seed, **QUICK)
        graphs[name].add_modality("toyaudio", seed=seed, **QUICK)
        graphs[name].link("toyaudio", "toycolor", pairing="index", epochs=1, seed=seed, paired_fraction=0.5)
    for relative in ("nodes/toycolor.safetensors", "edges/toyaudio--toycolor.safetensors"):
        a, b, c = (_weights(tmp_path / name, relative) for name in ("a", "b", "c"))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        assert any(not torch.equal(a[k], c[k]) for k in a)


def test_paired_fraction_limits_the_pairs(trained):
    report = trained.link("toyimg", "toyaudio", paired_fraction=0.25, epochs=1)
    full = trained.link("toyimg", "toyaudio", epochs=1)
    few = report["metrics"]["toyimg->toyaudio"]["paired_source_rows"]
    many = full["metrics"]["toyimg->toyaudio"]["paired_source_rows"]
    assert 3 <= few <= math.ceil(0.25 * many) + 3
    assert trained.graph().edges["toyimg", "toyaudio"]["paired_fraction"] == 1.0


def test_link_validates_before_training(trained):
    with pytest.raises(ConfigError, match="cannot link 'toyimg' to itself"):
        trained.link("toyimg", "toyimg")
    with pytest.raises(ConfigError, match="epochs: Input should be greater than or equal to 1"):
        trained.link("toyimg", "toyaudio", epochs=0)
    with pytest.raises(ConfigError, match="paired_fraction: Input should be less than or equal to 1"):
        trained.link("toyimg", "toyaudio", paired_fraction=2.0)
    with pytest.raises(PairingError, match="--pairing index"):
        trained.link("toyimg", "toycolor")
    trained.remove_modality("toycolor")
    with pytest.raises(NotInRegistryError, match="modgraph add-modality toycolor"):
        trained.link("toyaudio", "toycolor", pairing="index")


@pytest.mark.parametrize("kwargs, message", [
    (dict(epochs=0), "epochs: Input should be greater than or equal to 1"),
    (dict(latent_dim=0), "latent_dim: Input should be greater than or equal to 1"),
    (dict(batch_size=0), "batch_size: Input should be greater than or equal to 1"),
    (dict(lr=-1.0), "lr: Input should be greater than 0"),
    (dict(kl_weight=-0.5), "kl_weight: Input should be greater than or equal to 0"),
    (dict(options={"copies": 9}), "copies"),
    (dict(options={"colour": 1}), "colour"),
])
def test_add_modality_rejects_bad_settings(mg, toy_data, isolated_env, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        mg.add_modality("toyimg", **kwargs)
    assert not isolated_env["registry"].exists() or not list(isolated_env["registry"].rglob("*.safetensors"))


def test_options_and_augmented_copies_are_recorded(mg, toy_data):
    mg.add_modality("toyimg", options={"copies": 2}, **QUICK)
    meta = mg.graph().nodes["toyimg"]
    assert meta["options"] == {"copies": 2}
    data = meta["data"]
    originals = data["train_rows"] - data["augmented_rows"]
    assert data["augmented_rows"] == 2 * originals and originals + data["val_samples"] == 72
    assert mg.node("toyimg").modality.options.copies == 2  # rebuilt with its stored options


def test_exclude_leaves_groups_out(mg, toy_data):
    mg.add_modality("toyaudio", exclude={"speaker": ["ann"]}, **QUICK)
    data = mg.graph().nodes["toyaudio"]["data"]
    assert data["train_rows"] + data["val_samples"] == 36 and data["test_samples"] == 9
    assert data["exclude"] == {"speaker": ["ann"]}
    with pytest.raises(ConfigError, match="too few training samples"):
        mg.add_modality("toyaudio", exclude={"speaker": ["ann", "bob"]}, **QUICK)


def test_missing_data_names_the_folder_and_the_download_flag(mg, isolated_env):
    with pytest.raises(DataNotFoundError) as info:
        mg.add_modality("toyimg", **QUICK)
    assert str(isolated_env["data"] / "toyimg" / "train") in str(info.value)
    assert "--download" in str(info.value)
    mg.add_modality("toyimg", download=True, **QUICK)  # the toy plugin's "download" writes the files
    assert (isolated_env["data"] / "toyimg" / "test" / "2" / "000.png").is_file()


def test_features_are_cached_and_a_damaged_cache_is_rebuilt(mg, toy_data, isolated_env, monkeypatch):
    modality = mg.modality("toyaudio")
    first = mg.features(modality, "train")
    [cached] = isolated_env["cache"].glob("toyaudio-train-*/shard-00000.safetensors")

    def no_reading(*args, **kwargs):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(toyplugin.ToyAudio, "load_features", no_reading)
    again = mg.features(modality, "train")
    assert torch.equal(first.x, again.x) and again.groups == first.groups
    monkeypatch.undo()
    cached.write_bytes(b"damaged")
    rebuilt = mg.features(mg.modality("toyaudio"), "train")
    assert torch.equal(first.x, rebuilt.x)
    assert load_file(str(cached))["x"].shape == first.x.shape
    with pytest.raises(ConfigError, match="split must be train or test"):
        mg.features(modality, "val")


def test_a_node_from_a_plugin_that_is_not_installed(trained, isolated_env):
    from modgraph.api import ModGraph
    from modgraph.plugins import PluginHost

    bare = ModGraph(device="cpu", progress=False, plugins=PluginHost(load_entry_points=False))
    assert sorted(bare.graph().nodes) == ["toyaudio", "toycolor", "toyimg"]  # headers need no plugin
    with pytest.raises(UnknownModalityError, match="made by plugin 'modgraph-toy', which is not installed"):
        bare.node("toyimg")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_an_error_not_a_fallback():
    from modgraph.api import ModGraph
    from modgraph.plugins import PluginHost

    with pytest.raises(ConfigError, match="no CUDA GPU"):
        ModGraph(device="cuda", plugins=PluginHost(load_entry_points=False)).device


@pytest.mark.parametrize("rows", [2, 9, 17, 25, 33, 41])
def test_every_loop_trains_for_any_number_of_batches(rows):
    """1 to 6 batches of one epoch: learning-rate schedules must not trip on short runs."""
    from modgraph.learning.models import VAE, Recognizer
    from modgraph.learning.training import TrainSettings, train_recognizer, train_vae

    modality = toyplugin.ToyColor()
    x, y = torch.rand(rows, toyplugin.COLOR_DIM), torch.arange(rows) % 3
    settings = TrainSettings(epochs=1, batch_size=8, lr=1e-3, kl_weight=1.0, progress=False)
    assert len(train_recognizer(Recognizer(modality.recognizer_config()), x, y, x, y, settings)["history"]) == 1
    assert len(train_vae(VAE(modality.vae_config(2)), x, x, "bce", settings)["history"]) == 1


def test_link_excludes_groups_on_the_side_that_has_them(trained):
    report = trained.link("toyimg", "toyaudio", exclude={"speaker": ["ann"]})
    assert set(report["metrics"]) == {"toyimg->toyaudio", "toyaudio->toyimg"}
    edge = trained.graph().edges["toyaudio", "toyimg"]
    assert edge["training"]["exclude"] == {"speaker": ["ann"]}
    with pytest.raises(ConfigError, match="grouping to exclude"):
        trained.link("toyimg", "toyaudio", exclude={"colour": ["red"]})


def test_one_way_link_trains_only_the_asked_direction(trained):
    trained.unlink("toyimg", "toyaudio")
    report = trained.link("toyimg", "toyaudio", one_way=True)
    assert list(report["metrics"]) == ["toyimg->toyaudio"]
    g = trained.graph()
    assert g.has_edge("toyimg", "toyaudio") and not g.has_edge("toyaudio", "toyimg")


def test_a_cascade_reencodes_at_the_modality_in_between(trained):
    path = trained.route("toyimg", "toycolor")
    assert path == ["toyimg", "toyaudio", "toycolor"]
    x = trained.node("toyimg").modality.normalize(trained.features(trained.node("toyimg").modality, "test").x[:4],
                                                  trained.node("toyimg").stats)
    with torch.no_grad():
        z, _ = trained.node("toyimg").vae.encode(x)
        z, _ = trained.associator("toyimg", "toyaudio")(z)
        mid = trained.node("toyaudio").vae
        z, _ = mid.encode(mid.decode(z))
        z, _ = trained.associator("toyaudio", "toycolor")(z)
        expected = trained.node("toycolor").vae.decode(z)
    assert torch.allclose(trained.translate_normalized(path, x)[:, 0], expected, atol=1e-6)
