"""The character grid: folding, one-hot encoding, decoding, and the on-the-fly edits."""

from __future__ import annotations

import pytest
import torch

from modgraph_text import ALPHABET, ALPHABET_SIZE, MAX_LENGTH, decode, encode, fold
from modgraph_text.encoding import random_edits


@pytest.mark.parametrize("text", ["seven", "7", "go straight or right", "stop-sign!", "let's go...",
                                  "a" * MAX_LENGTH, ALPHABET[:MAX_LENGTH], ALPHABET[-MAX_LENGTH:].strip()])
def test_encode_decode_round_trip(text):
    x = encode(text)
    assert x.shape == (MAX_LENGTH, ALPHABET_SIZE)
    assert x.dtype == torch.float32
    assert torch.equal(x.sum(dim=1), torch.ones(MAX_LENGTH))  # exactly one symbol per position
    assert decode(x) == text


def test_padding_fills_the_positions_after_the_text():
    x = encode("go")
    assert x[2:, 0].eq(1).all()  # index 0 is padding
    assert not x[:2, 0].any()


def test_decode_reads_probabilities_and_stops_at_the_first_padding():
    probs = torch.rand(MAX_LENGTH, ALPHABET_SIZE) * 0.1
    for i, c in enumerate("stop"):
        probs[i, ALPHABET.index(c) + 1] = 0.9
    probs[4, 0] = 0.9
    probs[5, ALPHABET.index("x") + 1] = 0.9  # after the padding: ignored
    assert decode(probs) == "stop"


def test_decode_rejects_other_shapes():
    with pytest.raises(ValueError, match="shaped"):
        decode(torch.zeros(1, MAX_LENGTH, ALPHABET_SIZE))


@pytest.mark.parametrize("raw,folded,notes", [
    ("  SEVEN  ", "seven", []),
    ("Keep\tLeft", "keep left", []),
    ("caf\u00e9", "cafe", ["removed accents"]),
    ("let\u2019s go", "let's go", []),
    ("stop \u2013 sign", "stop - sign", []),
])
def test_fold(raw, folded, notes):
    assert fold(raw) == (folded, notes)


def test_encode_refuses_what_it_cannot_hold():
    with pytest.raises(ValueError, match="outside the alphabet"):
        encode("seven@")
    with pytest.raises(ValueError, match="at most"):
        encode("a" * (MAX_LENGTH + 1))


def test_random_edits_change_one_letter_and_keep_short_rows():
    texts = ["seven", "number 7", "7", "go", "go straight or right"] * 40
    x = torch.stack([encode(t) for t in texts])
    out = random_edits(x, 1.0, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    assert torch.equal(out.sum(dim=2), torch.ones(len(texts), MAX_LENGTH))
    edited = [decode(row) for row in out]
    changed = 0
    for before, after in zip(texts, edited):
        if len(before) < 4:
            assert after == before
            continue
        assert after[0] == before[0]  # the first character is never edited
        assert [c for c in after if not c.isalpha()] == [c for c in before if not c.isalpha()]  # digits, spaces kept
        assert abs(len(after) - len(before)) <= 1
        changed += after != before
    assert changed > 0.9 * sum(len(t) >= 4 for t in texts)  # a substitution may draw the same letter
    assert random_edits(x, 0.0) is x
