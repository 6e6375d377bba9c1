"""Faithful targets: each class keeps the rows its VAE reconstructs most recognisably."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from modgraph.errors import ConfigError
from modgraph.learning.targets import cached_confidence, faithful_targets, reconstruction_confidence


class Identity(nn.Module):
    """A 'VAE' whose reconstruction is its input, so the recognizer judges the rows themselves."""

    def encode(self, x):
        return x, torch.zeros_like(x)

    def decode(self, z):
        return z

    def parameters(self, recurse=True):
        return iter([torch.zeros(1)])


class Logits(nn.Module):
    """A 'recognizer' whose logits are the row itself."""

    def forward(self, x):
        return x


def test_rows_under_the_confidence_are_dropped_and_each_class_keeps_a_floor():
    # Rows 0-3 are class 0, rows 4-7 class 1; the logits say how class-0-like each row looks.
    x = torch.tensor([[4.0, 0], [1, 0], [0, 3], [2, 0], [0, 1], [0, 5], [3, 0], [0, 2]])
    y = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    conf = reconstruction_confidence(Identity(), Logits(), x, y, batch_size=3)
    assert conf.argsort(descending=True)[:2].tolist() == [5, 0]
    kept = faithful_targets(conf, y, min_confidence=0.85)
    # p = sigmoid(margin): rows 0 (0.98), 3 (0.88), 5 (0.99), 7 (0.88) pass; the rest do not
    assert kept.tolist() == [0, -1, -1, 0, -1, 1, -1, 1]
    assert y.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]  # the labels passed in are untouched
    # Nothing passes 0.999: each class keeps its single most confident row (10% of 4, rounded up to 1)
    assert faithful_targets(conf, y, min_confidence=0.999).tolist() == [0, -1, -1, -1, -1, 1, -1, -1]


def test_no_class_rows_stay_out_and_zero_keeps_everything():
    y = torch.tensor([0, -1, 1])
    conf = torch.tensor([0.5, 0.99, 0.5])
    assert faithful_targets(conf, y, min_confidence=0.99).tolist() == [0, -1, 1]
    assert faithful_targets(conf, y, min_confidence=0.0) is y
    with pytest.raises(ValueError):
        faithful_targets(conf, y, min_confidence=1.0)


def test_confidences_are_cached_by_their_key_and_damaged_files_recomputed(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return torch.tensor([0.25, 0.5])

    first = cached_confidence(tmp_path, ["mnist", b"rows"], 2, compute)
    again = cached_confidence(tmp_path, ["mnist", b"rows"], 2, compute)
    assert torch.equal(first, again) and len(calls) == 1
    cached_confidence(tmp_path, ["mnist", b"other rows"], 2, compute)
    assert len(calls) == 2
    # The file under that key holds 2 values: asked for 3, it is not trusted but scored again.
    assert torch.equal(cached_confidence(tmp_path, ["mnist", b"rows"], 3, lambda: torch.zeros(3)), torch.zeros(3))
    assert len(calls) == 2
    for path in (tmp_path / "confidence").iterdir():
        path.write_bytes(b"not safetensors")
    assert torch.equal(cached_confidence(tmp_path, ["mnist", b"rows"], 2, compute), first) and len(calls) == 3


def test_link_aims_at_the_confident_targets_and_records_it(trained):
    report = trained.link("toyimg", "toyaudio", epochs=1, target_confidence=0.6)
    edge = trained.graph().edges["toyimg", "toyaudio"]
    assert edge["training"]["target_confidence"] == 0.6
    all_rows = trained.link("toyimg", "toyaudio", epochs=1, target_confidence=0.0)
    all_rows = all_rows["metrics"]["toyimg->toyaudio"]["target_rows"]
    kept = report["metrics"]["toyimg->toyaudio"]["target_rows"]
    assert 0 < kept < all_rows
    assert list((trained.cache_dir / "confidence").iterdir())  # scored once, kept for the next link
    with pytest.raises(ConfigError, match="target_confidence"):
        trained.link("toyimg", "toyaudio", epochs=1, target_confidence=1.5)
