"""Which associator epoch a link keeps: lowest validation loss, or best validation translation accuracy."""

from __future__ import annotations

import copy

import pytest
import torch

import toyplugin
from modgraph.errors import ConfigError
from modgraph.learning.models import VAE, Associator
from modgraph.learning.training import ClassPairSampler, TrainSettings, kept_epoch, train_associator


def _train(select: str, ratings: list[float]):
    """Three epochs on random data; the judge hands out ``ratings`` and snapshots the weights it rated."""
    torch.manual_seed(0)
    modality = toyplugin.ToyColor()
    target = VAE(modality.vae_config(2))
    assoc = Associator(modality.associator_config(3, 2))
    y = torch.arange(40) % 2
    pairs, val_pairs = ClassPairSampler(y, y, {0: 0, 1: 1}, 0), ClassPairSampler(y[:10], y[:10], {0: 0, 1: 1}, 1)
    snapshots = []

    def judge(a):
        snapshots.append(copy.deepcopy(a.state_dict()))
        return ratings[len(snapshots) - 1]

    settings = TrainSettings(epochs=3, batch_size=8, lr=1e-2, kl_weight=1.0, progress=False)
    log = train_associator(assoc, torch.randn(40, 3), torch.zeros(40, 3), pairs, val_pairs, torch.randn(10, 3),
                           target, torch.rand(40, toyplugin.COLOR_DIM), torch.rand(10, toyplugin.COLOR_DIM), "bce",
                           settings, judge=judge, select=select)
    return assoc, log, snapshots


def _same(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def test_selecting_by_accuracy_keeps_the_epoch_the_judge_rates_best():
    assoc, log, snapshots = _train("accuracy", [0.2, 0.9, 0.4])
    assert [h["val_accuracy"] for h in log["history"]] == [0.2, 0.9, 0.4]
    assert log["epoch_kept"] == 2 and log["val_accuracy"] == 0.9 and log["select"] == "accuracy"
    assert _same(assoc.state_dict(), snapshots[1]) and not _same(snapshots[0], snapshots[1])


def test_selecting_by_loss_keeps_the_lowest_validation_loss_and_still_records_accuracy():
    assoc, log, snapshots = _train("loss", [0.2, 0.9, 0.4])
    losses = [h["val_loss"] for h in log["history"]]
    best = losses.index(min(losses))
    assert log["epoch_kept"] == best + 1 and log["best_val_loss"] == min(losses)
    assert _same(assoc.state_dict(), snapshots[best])


def test_equal_ratings_fall_back_to_the_lower_loss():
    _, log, _ = _train("accuracy", [0.5, 0.5, 0.5])
    losses = [h["val_loss"] for h in log["history"]]
    assert log["epoch_kept"] == losses.index(min(losses)) + 1


def test_a_link_records_its_validation_accuracy_and_what_it_kept(trained):
    report = trained.link("toyimg", "toyaudio", epochs=3, select="accuracy")
    edge = trained.graph().edges["toyimg", "toyaudio"]
    ratings = [h["val_accuracy"] for h in edge["training"]["history"]]
    metrics = report["metrics"]["toyimg->toyaudio"]
    assert edge["training"]["select"] == "accuracy" and 0 < metrics["val_judged"] <= metrics["val_samples"]
    kept = kept_epoch(edge["training"]["history"], "accuracy", metrics["val_judged"])
    assert edge["training"]["epoch_kept"] == kept + 1 and metrics["val_accuracy"] == ratings[kept]
    assert 0.5 < metrics["val_accuracy"] <= 1.0
    with pytest.raises(ConfigError, match="select: Input should be 'loss' or 'accuracy'"):
        trained.link("toyimg", "toyaudio", select="best")


def test_with_few_pairs_validation_uses_the_same_share_of_held_out_rows(trained):
    few = trained.link("toyimg", "toyaudio", epochs=1, paired_fraction=0.25, one_way=True)
    full = trained.link("toyimg", "toyaudio", epochs=1, one_way=True)
    n_few = few["metrics"]["toyimg->toyaudio"]["val_samples"]
    n_full = full["metrics"]["toyimg->toyaudio"]["val_samples"]
    assert 1 <= n_few < n_full


def test_accuracies_within_one_standard_error_of_the_best_count_as_equal():
    history = [{"val_loss": loss, "val_accuracy": acc} for loss, acc in
               [(5.0, 0.82), (9.0, 0.990), (6.0, 0.985), (7.0, 0.995)]]
    # 1,000 judged sources: the best (0.995) is good to 0.0022, so 0.990 and 0.985 are worse...
    assert kept_epoch(history, "accuracy", 1000) == 3
    # ...while on 100 the margin is 1/100 and 0.985, of lower loss, ties with the best.
    assert kept_epoch(history, "accuracy", 100) == 2
    assert kept_epoch(history, "loss") == 0
    assert kept_epoch(history, "accuracy") == 3  # no count known: the best rating itself
    # One source fewer than a perfect score is within the margin of one source: the lower loss wins.
    assert kept_epoch([{"val_loss": 2.0, "val_accuracy": 1.0}, {"val_loss": 1.0, "val_accuracy": 179 / 180}],
                      "accuracy", 180) == 1
