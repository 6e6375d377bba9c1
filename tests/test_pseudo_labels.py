"""Label spreading in a latent space, and links that add its confident rows to their sources."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from modgraph.errors import ConfigError
from modgraph.learning.pseudo_labels import balance_within, join_confident, knn, spread_labels


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


def test_balancing_gives_each_group_the_prior_class_totals_and_keeps_the_rows_order():
    p = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.6, 0.4], [0.0, 0.0], [0.2, 0.8], [0.1, 0.9]])
    groups = torch.tensor([0, 0, 0, 0, 0, 1, 1])
    q = balance_within(p, groups, torch.tensor([0.5, 0.5]))
    assert torch.allclose(q[:4].sum(0), torch.tensor([2.0, 2.0]), atol=1e-3)
    assert torch.allclose(q[5:].sum(0), torch.tensor([1.0, 1.0]), atol=1e-3)
    assert q[:4].argmax(1).tolist() == [0, 0, 1, 1] and q[5:].argmax(1).tolist() == [0, 1]
    assert torch.allclose(q[[0, 1, 2, 3, 5, 6]].sum(1), torch.ones(6))
    assert q[4].tolist() == [0.0, 0.0]  # a row no label reached stays without mass


def test_balancing_within_a_group_labels_a_cluster_of_a_class_the_group_has_no_label_for():
    # Two speakers saying two words; the second speaker's word 1 sits nearer its word 0 than
    # the first speaker's word 1, and has no label. Every class is in every group equally often.
    z, cluster = _clusters([[0.0, 0.0], [0.0, 3.0], [2.5, 0.0], [3.0, 2.5]], spread=0.7, seed=1)
    y, groups = cluster % 2, (cluster >= 2).long()
    known = torch.zeros(len(z), dtype=torch.bool)
    known[[0, 30, 31, 60]] = True  # both words of speaker 0, word 0 of speaker 1: a 50/50 prior
    plain, _ = spread_labels(z, known, y, 2, neighbours=10)
    balanced, _ = spread_labels(z, known, y, 2, neighbours=10, groups=groups)
    word1 = cluster == 3
    assert float((plain[word1] == 1).float().mean()) < 0.1
    assert float((balanced[word1] == 1).float().mean()) > 0.9
    assert float((balanced == y).float().mean()) > 0.9


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
    assert "pseudo_labels" not in edge["metrics"] and edge["training"]["pseudo_label_confidence"] == 1.0  # as resolved
    paired_only = load_file(trained.registry.edge_path("toyimg", "toyaudio"))
    assert any(not torch.equal(with_spread[k], paired_only[k]) for k in with_spread)


def test_a_modality_can_balance_its_spread_classes_within_a_grouping(trained, monkeypatch):
    audio = type(trained.node("toyaudio").modality)
    trained.link("toyaudio", "toyimg", epochs=1, one_way=True, paired_fraction=0.25)
    spread = trained.graph().edges["toyaudio", "toyimg"]["metrics"]["pseudo_labels"]
    assert spread["balanced_within"] is None and spread["balanced_groups"] is None
    monkeypatch.setattr(audio, "training_defaults",
                        audio.training_defaults.model_copy(update={"link_spread_balance": "speaker"}))
    trained.link("toyaudio", "toyimg", epochs=1, one_way=True, paired_fraction=0.25)
    spread = trained.graph().edges["toyaudio", "toyimg"]["metrics"]["pseudo_labels"]
    assert spread["balanced_within"] == "speaker" and spread["balanced_groups"] == 2
    assert spread["accuracy"] >= 0.8
    # A grouping the data do not have balances nothing, and the record says so.
    monkeypatch.setattr(audio, "training_defaults",
                        audio.training_defaults.model_copy(update={"link_spread_balance": "room"}))
    trained.link("toyaudio", "toyimg", epochs=1, one_way=True, paired_fraction=0.25)
    spread = trained.graph().edges["toyaudio", "toyimg"]["metrics"]["pseudo_labels"]
    assert spread["balanced_within"] is None and spread["balanced_groups"] is None


def test_full_pairing_has_nothing_to_spread(trained):
    report = trained.link("toyimg", "toyaudio", epochs=1, one_way=True)
    assert "pseudo_labels" not in report["metrics"]["toyimg->toyaudio"]


def test_a_bad_confidence_is_refused(trained):
    for bad in (0.0, 1.5):
        with pytest.raises(ConfigError, match="pseudo_label_confidence"):
            trained.link("toyimg", "toyaudio", epochs=1, pseudo_label_confidence=bad)
