"""Label spreading in a latent space, and links that add its confident rows to their sources."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from modgraph.errors import ConfigError
from modgraph.pseudo_labels import join_confident, knn, spread_labels


def _clusters(centres, per_cluster=30, spread=0.3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    z = torch.cat([torch.tensor(c) + spread * torch.randn(per_cluster, len(c), generator=gen) for c in centres])
    y = torch.arange(len(centres)).repeat_interleave(per_cluster)
    return z, y


def test_knn_finds_the_nearest_other_rows_in_every_chunk():
    z = torch.tensor([[0.0], [1.0], [3.0], [10.0], [10.5]])
    dist, idx = knn(z, 2, chunk=2)
    assert idx.tolist() == [[1, 2], [0, 2], [1, 0], [4, 2], [3, 2]]
    assert dist[3].tolist() == [0.5, 7.0]


def test_one_label_per_cluster_spreads_to_the_whole_cluster():
    z, y = _clusters([[0.0, 0.0], [6.0, 0.0], [0.0, 6.0]])
    known = torch.zeros(len(z), dtype=torch.bool)
    known[[0, 30, 60]] = True
    noise = torch.randint(0, 3, (len(z),))  # unknown rows' labels must not be read
    labels = torch.where(known, y, noise)
    classes, confidence = spread_labels(z, known, labels, 3, neighbours=5)
    assert torch.equal(classes, y)
    assert bool((confidence > 0.9).all())


def test_a_cluster_no_label_reaches_gets_no_confidence():
    z, y = _clusters([[0.0, 0.0], [6.0, 0.0], [60.0, 60.0]])
    known = torch.zeros(len(z), dtype=torch.bool)
    known[[0, 30]] = True
    classes, confidence = spread_labels(z, known, y, 3, neighbours=5)
    assert torch.equal(classes[:60], y[:60])
    assert bool((confidence[60:] == 0).all())


def test_joined_sources_are_the_paired_rows_then_the_confident_unpaired_ones():
    z, y = _clusters([[0.0, 0.0], [6.0, 0.0], [60.0, 60.0]])
    paired = torch.tensor([0, 1, 30, 31])
    rest = torch.tensor([i for i in range(len(z)) if i not in set(paired.tolist())])
    logvar = -torch.ones_like(z)
    right = join_confident(z[paired], logvar[paired], y[paired], z[rest], logvar[rest], y[rest], 3, 0.5)
    wrong = join_confident(z[paired], logvar[paired], y[paired], z[rest], logvar[rest], (y[rest] + 1) % 3, 3, 0.5)
    mu, lv, classes, record = right
    assert torch.equal(mu[:4], z[paired]) and torch.equal(classes[:4], y[paired])
    # The two clusters with paired rows join (56 rows); the far one, which no label reaches, does not.
    assert record["rows"] == 56 == len(mu) - 4 == len(lv) - 4 and record["unpaired_rows"] == 86
    assert bool((classes[4:] < 2).all())
    # The withheld labels only score the guesses: the sources are the same either way.
    assert all(torch.equal(a, b) for a, b in zip(right[:3], wrong[:3]))
    assert record["accuracy"] == 1.0 and wrong[3]["accuracy"] == 0.0


def test_a_link_with_few_pairs_adds_confident_unpaired_sources_and_records_them(trained):
    trained.link("toyimg", "toyaudio", epochs=1, one_way=True, paired_fraction=0.25)
    edge = trained.graph().edges["toyimg", "toyaudio"]
    spread = edge["metrics"]["pseudo_labels"]
    default = trained.node("toyimg").modality.training_defaults.link_pseudo_label_confidence
    assert edge["training"]["pseudo_label_confidence"] == spread["confidence"] == default == 0.5
    assert 0 < spread["rows"] <= spread["unpaired_rows"]
    assert spread["accuracy"] >= 0.8  # the toy classes are far apart in the latent space
    with_spread = load_file(trained.registry.edge_path("toyimg", "toyaudio"))

    trained.link("toyimg", "toyaudio", epochs=1, one_way=True, paired_fraction=0.25, pseudo_label_confidence=1.0)
    edge = trained.graph().edges["toyimg", "toyaudio"]
    assert "pseudo_labels" not in edge["metrics"] and edge["training"]["pseudo_label_confidence"] is None
    paired_only = load_file(trained.registry.edge_path("toyimg", "toyaudio"))
    assert any(not torch.equal(with_spread[k], paired_only[k]) for k in with_spread)


def test_full_pairing_has_nothing_to_spread(trained):
    report = trained.link("toyimg", "toyaudio", epochs=1, one_way=True)
    assert "pseudo_labels" not in report["metrics"]["toyimg->toyaudio"]


def test_a_bad_confidence_is_refused(trained):
    for bad in (0.0, 1.5):
        with pytest.raises(ConfigError, match="pseudo-label-confidence"):
            trained.link("toyimg", "toyaudio", epochs=1, pseudo_label_confidence=bad)
