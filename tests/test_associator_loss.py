"""The associator's loss: Eq. 7 with one partner, the closest of K candidates, and target exclusions."""

from __future__ import annotations

import pytest
import torch

from modgraph.learning.splits import target_labels as _target_labels
from modgraph.modality import FeatureSet
from modgraph.learning.models import Associator, AssociatorConfig, VAE, VAEConfig, reconstruction_error
from modgraph.learning.training import ClassPairSampler, associator_loss


def test_candidates_are_drawn_from_the_paired_class():
    source_y = torch.tensor([0, 1, 2, 0, 1, 2])
    target_y = torch.tensor([5, 5, 6, 6, 7, 7, 7])
    sampler = ClassPairSampler(source_y, target_y, {0: 5, 1: 6, 2: 7}, seed=0)
    src, one = sampler.draw(limit=12)
    assert one.shape == (12,)
    src, many = sampler.draw(limit=12, candidates=4)
    assert many.shape == (12, 4)
    expected = torch.tensor([5, 6, 7])[source_y[src]]
    assert (target_y[many] == expected[:, None]).all()
    assert len(many.flatten().unique()) > 3  # candidates differ, not one row repeated


def test_the_loss_over_candidates_is_that_of_the_closest():
    torch.manual_seed(0)
    vae = VAE(VAEConfig(input_shape=(6,), latent_dim=3, architecture="mlp", hidden=[8], output="sigmoid")).eval()
    assoc = Associator(AssociatorConfig(source_dim=2, target_dim=3, hidden=[8])).eval()
    z = torch.randn(5, 2)
    x = torch.rand(5, 4, 6)
    with torch.no_grad():
        each = torch.stack([associator_loss(assoc, vae, z, x[:, k], "bce", 0.5, sample=False) for k in range(4)], 1)
        closest = associator_loss(assoc, vae, z, x, "bce", 0.5, sample=False)
    assert torch.allclose(closest, each.min(1).values)
    assert (closest < each.max(1).values).any()


def test_target_exclusions_mark_rows_as_no_class():
    class Words:
        target_exclude = {"variant": ["typo", "phrase"]}

    feats = FeatureSet(x=torch.zeros(5, 2), y=torch.tensor([0, 0, 1, 1, 1]),
                       groups={"variant": ["word", "typo", "word", "phrase", "digit"]})
    assert _target_labels(feats, Words()).tolist() == [0, -1, 1, -1, 1]
    assert feats.y.tolist() == [0, 0, 1, 1, 1]  # the features themselves are untouched
    sampler = ClassPairSampler(torch.tensor([0, 1]), _target_labels(feats, Words()), {0: 0, 1: 1}, seed=0)
    _, tgt = sampler.draw(limit=200)
    assert set(tgt.tolist()) == {0, 2, 4}


def test_link_records_its_candidates_and_rejects_bad_ones(trained):
    from modgraph.errors import ConfigError
    trained.link("toyimg", "toyaudio", epochs=1, candidates=3)
    assert trained.graph().edges["toyimg", "toyaudio"]["training"]["candidates"] == 3
    with pytest.raises(ConfigError, match="candidates"):
        trained.link("toyimg", "toyaudio", epochs=1, candidates=0)
