"""Large speech splits: features in chunks (for the sharded cache) and streamed statistics."""

from __future__ import annotations

import pytest
import torch

import modgraph_audio.speech as speech
from modgraph.features.cache import concatenate_chunks
from modgraph_audio import FSDD


def test_a_small_split_is_computed_in_one_go(fsdd_root):
    assert FSDD().feature_chunks(fsdd_root, "train") is None


def test_chunks_hold_the_rows_of_load_features(fsdd_root, monkeypatch):
    fsdd = FSDD().with_options({"augment_copies": 2})
    whole = fsdd.load_features(fsdd_root, "train")
    monkeypatch.setattr(speech, "SINGLE_CHUNK_RECORDINGS", 4)
    monkeypatch.setattr(speech, "CHUNK_ROWS", 9)  # 3 recordings (and their 6 copies) a chunk
    chunks = fsdd.feature_chunks(fsdd_root, "train")
    assert len(chunks) == 4  # 12 training recordings
    joined = concatenate_chunks(chunks)
    # Originals keep their order, copies too; each copy still points at its own original.
    assert torch.equal(joined.x[~joined.augmented], whole.x[~whole.augmented])
    assert torch.equal(joined.x[joined.augmented], whole.x[whole.augmented])
    assert torch.equal(joined.y[joined.origin], joined.y)
    assert [joined.groups["speaker"][o] for o in joined.origin.tolist()] == joined.groups["speaker"]
    assert len(joined.origin.unique()) == int((~joined.augmented).sum())


def test_streamed_statistics_equal_the_whole_split_ones(fsdd_root):
    fsdd = FSDD()
    x = fsdd.load_features(fsdd_root, "train").x
    whole = fsdd.fit_normalization(x)
    streamed = fsdd.fit_normalization_stream(x[i:i + 7] for i in range(0, len(x), 7))
    for key in ("mean", "std"):
        assert streamed[key] == pytest.approx(whole[key], rel=1e-9, abs=1e-9)
