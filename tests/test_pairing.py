"""Class pairing between modalities and the class-stratified paired subset."""

from __future__ import annotations

import pytest
import torch
import toyplugin

from modgraph.errors import ConfigError, PairingError
from modgraph.modality import ClassInfo, FeatureSet
from modgraph.learning.pairing import class_map, compose, invert, paired_subset


class Reordered(toyplugin.ToyAudio):
    """Shares two of toyimg's concepts, in another order, plus one of its own."""

    name = "reordered"
    classes = [ClassInfo(name="a", concept="two"), ClassInfo(name="b", concept="seven"),
               ClassInfo(name="c", concept="zero"), ClassInfo(name="d", concept="zero")]


IMG, AUDIO, COLOR = toyplugin.ToyImage(), toyplugin.ToyAudio(), toyplugin.ToyColor()


def test_concept_pairing_matches_concept_names_not_positions():
    assert class_map(IMG, AUDIO, "concept") == {0: 0, 1: 1, 2: 2}
    # toyimg: zero, one, two; reordered: two, seven, zero, zero (the first match wins)
    assert class_map(IMG, Reordered(), "concept") == {0: 2, 2: 0}
    assert class_map(Reordered(), IMG, "concept") == {0: 2, 2: 0, 3: 0}


def test_index_pairing_pairs_class_k_with_class_k():
    assert class_map(IMG, COLOR, "index") == {0: 0, 1: 1, 2: 2}
    assert class_map(Reordered(), IMG, "index") == {0: 0, 1: 1, 2: 2}  # the shorter list bounds it


def test_no_shared_concept_suggests_index_pairing():
    with pytest.raises(PairingError) as info:
        class_map(IMG, COLOR, "concept")
    message = str(info.value)
    assert "toyimg and toycolor share no concept" in message
    assert "zero, one, two" in message and "red, green, blue" in message
    assert "--pairing index" in message


def test_unknown_pairing_is_a_config_error():
    with pytest.raises(ConfigError, match="--pairing must be one of concept, index, not 'foo'"):
        class_map(IMG, AUDIO, "foo")


def test_invert_keeps_the_first_source_class_of_each_target():
    assert invert({0: 2, 2: 0, 3: 0}) == {2: 0, 0: 2}
    assert invert({0: 0, 1: 1}) == {0: 0, 1: 1}


def test_compose_follows_each_hop_and_drops_unpaired_classes():
    assert compose([{0: 1, 1: 2, 2: 0}]) == {0: 1, 1: 2, 2: 0}
    assert compose([{0: 1, 1: 2, 2: 0}, {0: 5, 1: 6}]) == {0: 6, 2: 5}
    assert compose([{0: 0, 1: 1}, {1: 0}, {0: 3}]) == {1: 3}


def _features(per_class: dict[int, int], copies: int = 0) -> FeatureSet:
    """Originals with ``per_class[c]`` rows of class c, then ``copies`` augmented copies of each."""
    y = torch.tensor([c for c, n in per_class.items() for _ in range(n)])
    n = len(y)
    return FeatureSet(x=torch.randn((copies + 1) * n, 2), y=y.repeat(copies + 1),
                      origin=torch.arange(n).repeat(copies + 1),
                      augmented=torch.cat([torch.zeros(n, dtype=torch.bool), torch.ones(copies * n, dtype=torch.bool)]))


def test_paired_subset_is_stratified_per_class():
    features = _features({0: 40, 1: 20, 2: 10})
    mask = paired_subset(features, 0.25, seed=3)
    kept = features.y[mask]
    assert [int((kept == c).sum()) for c in range(3)] == [10, 5, 2]  # round(0.25 * n) of every class


def test_paired_subset_keeps_at_least_one_sample_per_class():
    features = _features({0: 50, 1: 3, 2: 1})
    kept = features.y[paired_subset(features, 0.01, seed=0)]
    assert [int((kept == c).sum()) for c in range(3)] == [1, 1, 1]


def test_paired_subset_keeps_augmented_copies_with_their_original():
    features = _features({0: 10, 1: 10}, copies=2)
    mask = paired_subset(features, 0.2, seed=1)
    kept_origins = set(features.origin[mask].tolist())
    assert len(kept_origins) == 4  # 2 originals per class: the fraction counts originals only
    assert int(mask.sum()) == 4 * 3
    for origin in kept_origins:
        assert bool(mask[features.origin == origin].all())  # the original and both copies


def test_paired_subset_depends_on_the_seed_only():
    features = _features({0: 30, 1: 30})
    assert torch.equal(paired_subset(features, 0.3, seed=7), paired_subset(features, 0.3, seed=7))
    assert not torch.equal(paired_subset(features, 0.3, seed=7), paired_subset(features, 0.3, seed=8))


def test_full_fraction_keeps_everything():
    features = _features({0: 3, 1: 2}, copies=1)
    assert bool(paired_subset(features, 1.0, seed=0).all())


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.01, 2.0])
def test_fraction_out_of_range_is_a_config_error(fraction):
    with pytest.raises(ConfigError, match=r"--paired-fraction must be in \(0, 1\]"):
        paired_subset(_features({0: 3}), fraction, seed=0)


def test_sampler_draws_a_fixed_number_of_class_matched_pairs_even_from_few_rows():
    from modgraph.learning.training import ClassPairSampler

    source_y = torch.tensor([0, 1, 2, 0, 1])
    target_y = torch.tensor([2, 2, 1, 1, 0, 0, 0])
    sampler = ClassPairSampler(source_y, target_y, {0: 0, 1: 1, 2: 2}, seed=0)
    src, tgt = sampler.draw(limit=23)
    assert len(src) == len(tgt) == 23
    assert (target_y[tgt] == source_y[src]).all()
    assert sorted(src[:5].tolist()) == [0, 1, 2, 3, 4]  # each pass covers every row once
    assert len(sampler.draw()[0]) == 5


def test_index_pairing_matches_class_numbers_where_a_modality_numbers_its_classes():
    from types import SimpleNamespace

    from modgraph.modality import Modality

    def modality(name, classes):
        numbers = Modality.class_numbers.fget(SimpleNamespace(classes=classes))
        return SimpleNamespace(name=name, classes=classes, concepts=[c.concept for c in classes],
                               class_numbers=numbers)

    # A node that learnt four of ten digits: "five" is class 5 of the other modality, not its third.
    words = modality("words", [ClassInfo(name=w, concept=w, number=n)
                               for w, n in [("zero", 0), ("one", 1), ("five", 5), ("eight", 8), ("go", 10)]])
    clothes = modality("clothes", [ClassInfo(name=f"c{k}", concept=f"c{k}") for k in range(10)])
    assert class_map(words, clothes, "index") == {0: 0, 1: 1, 2: 5, 3: 8}
    assert class_map(clothes, words, "index") == {0: 0, 1: 1, 5: 2, 8: 3}
