"""Anchored translation: nodes store training latents by class; translate moves an input's latent onto them."""

from __future__ import annotations

import random

import pytest
import torch
from click.testing import CliRunner

import toyplugin
from modgraph.inference.anchors import ANCHORS_PER_CLASS, anchor_latents, training_anchors
from modgraph.settings import DEFAULT_ANCHOR
from modgraph.app.cli import main
from modgraph.errors import ConfigError, RegistryCorruptError
from modgraph.learning.models import VAE


def test_an_input_becomes_the_mean_of_its_nearest_anchors_of_the_class_read():
    anchors = (torch.tensor([[0.0, 0.0], [1.0, 0.0], [9.0, 0.0], [0.0, 5.0], [0.0, 6.0]]),
               torch.tensor([0, 0, 0, 1, 1]))
    z = torch.tensor([[0.2, 0.0], [0.2, 0.0], [3.0, 3.0]])
    out = anchor_latents(z, torch.tensor([0, 1, 2]), anchors, k=2)
    torch.testing.assert_close(out[0], torch.tensor([0.5, 0.0]))  # class 0's two nearest, not class 1's
    torch.testing.assert_close(out[1], torch.tensor([0.0, 5.5]))  # read as 1: class 1's, though farther
    torch.testing.assert_close(out[2], z[2])  # a class with no anchors keeps the latent
    # More neighbours than a class has: the mean of those it has.
    torch.testing.assert_close(anchor_latents(z[:2], torch.tensor([1, 1]), anchors, k=10),
                               torch.tensor([[0.0, 5.5], [0.0, 5.5]]))


def test_anchors_are_a_seeded_capped_draw_of_the_rows_given(toy_host):
    modality = toy_host.get("toyimg")
    torch.manual_seed(0)
    vae = VAE(modality.vae_config(4)).eval()
    x = torch.randn(30, *modality.input_shape)
    y = torch.tensor([0] * 20 + [1] * 10)
    rows = torch.arange(0, 30, 2)  # say, the originals: 10 of class 0, 5 of class 1
    stored = training_anchors(vae, x, y, rows, seed=3, per_class=6)
    assert stored["anchors.z"].shape == (11, 4) and stored["anchors.y"].tolist() == [0] * 6 + [1] * 5
    again = training_anchors(vae, x, y, rows, seed=3, per_class=6)
    assert torch.equal(stored["anchors.z"], again["anchors.z"])
    with torch.no_grad():  # each is the VAE's mean of one of the rows given
        means = vae.encode(x[rows])[0]
    assert all(any(torch.allclose(a, m) for m in means) for a in stored["anchors.z"])


def test_a_trained_node_stores_anchors_of_its_original_rows(trained):
    node = trained.node("toyimg")
    z, y = node.anchors
    assert z.shape[1] == node.meta["config"]["vae"]["latent_dim"] and len(z) == len(y) > 0
    assert set(y.tolist()) == set(range(len(node.modality.classes)))
    assert max(torch.bincount(y).tolist()) <= ANCHORS_PER_CLASS


def _translate_by_hand(graph, x, anchored: bool):
    src, assoc, dst = graph.node("toyimg"), graph.associator("toyimg", "toyaudio"), graph.node("toyaudio")
    with torch.no_grad():
        xn = src.modality.normalize(x, src.stats)
        z = src.vae.encode(xn)[0]
        if anchored:
            z = anchor_latents(z, src.recognizer(xn).argmax(1), src.anchors, DEFAULT_ANCHOR)
        return dst.vae.decode(assoc(z)[0])


def test_translate_anchors_by_default_and_anchor_0_is_the_papers_translation(trained, tmp_path):
    images = [tmp_path / f"in{i}.png" for i in range(4)]
    for i, path in enumerate(images):
        toyplugin.write_png(toyplugin.image_pattern(i % 3, random.Random(i)), path)
    x, _ = trained.node("toyimg").modality.read_files(images)
    src = trained.node("toyimg")
    xn = src.modality.normalize(x, src.stats)
    with torch.no_grad():
        plain = trained.translate_normalized(["toyimg", "toyaudio"], xn)[:, 0]
        anchored = trained.translate_normalized(["toyimg", "toyaudio"], xn, anchor=DEFAULT_ANCHOR)[:, 0]
    torch.testing.assert_close(plain, _translate_by_hand(trained, x, anchored=False))
    torch.testing.assert_close(anchored, _translate_by_hand(trained, x, anchored=True))
    assert not torch.allclose(plain, anchored)
    # translate_files: anchored unless told otherwise, and says nothing about it.
    report = trained.translate_files("toyimg", "toyaudio", images, tmp_path / "out")
    assert report["output_notes"] == []
    unanchored = trained.translate_files("toyimg", "toyaudio", images, tmp_path / "plain", anchor=0)
    assert [r["written_as"] for r in report["rows"]] != [] and unanchored["output_notes"] == []
    with pytest.raises(ConfigError, match="anchor: Input should be greater than or equal to 0"):
        trained.translate_files("toyimg", "toyaudio", images, tmp_path / "bad", anchor=-1)


def _rewrite_node(graph, name, change):
    path = graph.registry.node_path(name)
    tensors = graph.registry.load_tensors(path)
    change(tensors)
    graph.registry.write(path, tensors, graph.registry.node_metadata(name))


def test_a_node_without_anchors_translates_as_it_is_with_a_note(trained, tmp_path):
    _rewrite_node(trained, "toyimg", lambda t: (t.pop("anchors.z"), t.pop("anchors.y")))
    image = tmp_path / "in.png"
    toyplugin.write_png(toyplugin.image_pattern(1, random.Random(0)), image)
    report = trained.translate_files("toyimg", "toyaudio", [image], tmp_path / "out")
    assert trained.node("toyimg").anchors is None
    assert "stores no anchors" in report["output_notes"][0] and "add-modality toyimg" in report["output_notes"][0]


def test_anchors_that_do_not_fit_the_node_are_a_corrupt_registry(trained):
    _rewrite_node(trained, "toyimg", lambda t: t.update({"anchors.z": torch.zeros(3, 999)}))
    with pytest.raises(RegistryCorruptError, match="anchors"):
        trained.node("toyimg")


@pytest.mark.usefixtures("toy_installed")
def test_cli_anchor_option(trained, tmp_path):
    image = tmp_path / "in.png"
    toyplugin.write_png(toyplugin.image_pattern(2, random.Random(0)), image)
    ok = CliRunner().invoke(main, ["translate", "--from", "toyimg", "--to", "toyaudio", str(image),
                                   "-o", str(tmp_path / "o.wav"), "--anchor", "0"])
    assert ok.exit_code == 0, ok.output
    bad = CliRunner().invoke(main, ["translate", "--from", "toyimg", "--to", "toyaudio", str(image), "--anchor", "-3"])
    assert bad.exit_code == 1 and "anchor: Input should be greater than or equal to 0, got -3" in bad.output


@pytest.mark.usefixtures("toy_installed")
def test_eval_measures_anchored_translations_when_asked(trained):
    plain = trained.evaluate("toyimg", "toyaudio", anchor=0)
    anchored = trained.evaluate("toyimg", "toyaudio")  # eval's default is translate's
    assert plain["anchor"] == 0 and anchored["anchor"] == DEFAULT_ANCHOR and anchored["n"] == plain["n"]
    # Anchored, an output is a translation of the class the source recognizer read: never better than that reading.
    node = trained.node("toyimg")
    test = trained.features(node.modality, "test").originals()
    with torch.no_grad():
        read = node.recognizer(node.modality.normalize(test.x, node.stats)).argmax(1)
    assert anchored["accuracy"] <= (read == test.y).float().mean().item() + 1e-6
    out = CliRunner().invoke(main, ["eval", "--from", "toyimg", "--to", "toyaudio", "--anchor", "5"])
    assert out.exit_code == 0 and "(anchored to 5, as translate writes)" in out.output, out.output
    out = CliRunner().invoke(main, ["eval", "--from", "toyimg", "--to", "toyaudio", "--anchor", "0"])
    assert out.exit_code == 0 and "(the paper's translation, --anchor 0)" in out.output, out.output
    assert "not anchored" not in out.output
