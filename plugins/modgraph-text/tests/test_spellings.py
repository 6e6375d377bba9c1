"""The generated dataset: deterministic, balanced, unambiguous, and a test split with unseen typos."""

from __future__ import annotations

from collections import Counter

import pytest

from modgraph_text import CONCEPTS, MAX_LENGTH, fold, generate_spellings
from modgraph_text.spellings import clean_spellings, one_edit_typos, typo_table, unambiguous_typos


def test_concepts_are_the_twenty_in_order():
    assert CONCEPTS == ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "go", "stop",
                        "left", "right", "stop sign", "go straight or right", "go straight or left", "keep right",
                        "keep left", "roundabout"]


def test_generation_is_deterministic_and_seeded():
    first = generate_spellings("train", 50, 0.2, seed=0)
    assert first == generate_spellings("train", 50, 0.2, seed=0)
    assert first != generate_spellings("train", 50, 0.2, seed=1)
    assert generate_spellings("test", 50, 0.2, seed=0) != first  # the splits draw from different seeds


@pytest.mark.parametrize("split,per_class", [("train", 120), ("test", 30)])
def test_every_concept_gets_per_class_rows(split, per_class):
    rows = generate_spellings(split, per_class, 0.2)
    assert Counter(r.label for r in rows) == {label: per_class for label in range(len(CONCEPTS))}


def test_typo_rate_is_respected():
    rows = generate_spellings("train", 400, 0.25)
    share = sum(r.variant == "typo" for r in rows) / len(rows)
    assert 0.22 < share < 0.28
    assert not any(r.variant == "typo" for r in generate_spellings("train", 100, 0.0))


def test_rows_vary_in_casing_punctuation_and_spacing_but_fit():
    texts = [r.text for r in generate_spellings("train", 200, 0.2)]
    assert any(t.isupper() for t in texts) and any(t[:1].isupper() and not t.isupper() for t in texts)
    assert any(t.rstrip().endswith("!") for t in texts) and any(t != t.strip() for t in texts)
    assert all(0 < len(fold(t)[0]) <= MAX_LENGTH for t in texts)


def test_numbers_are_spelled_as_words_digits_and_phrases():
    seven = {fold(r.text)[0].rstrip(".!?") for r in generate_spellings("train", 300, 0.0) if r.label == 7}
    assert {"seven", "7", "number 7", "the number seven"} <= seven


def test_clean_spellings_belong_to_one_concept():
    owners = Counter(s for concept in CONCEPTS for s, _ in clean_spellings(concept))
    assert all(n == 1 for n in owners.values()), [s for s, n in owners.items() if n > 1]


def test_typos_are_one_edit_from_exactly_one_concept():
    clean = {s for concept in CONCEPTS for s, _ in clean_spellings(concept)}
    seen: dict[str, str] = {}
    for concept, (train, test) in typo_table().items():
        assert train and test, concept
        sources = {s for s, _ in clean_spellings(concept)}
        for typo, source in train + test:
            assert typo not in clean
            assert source in sources and typo in one_edit_typos(source)
            assert seen.setdefault(typo, concept) == concept


def test_a_typo_two_concepts_could_make_is_dropped():
    # "beaf" is "bead" or "bear" mistyped (d and r are both next to f); "bear" is "bead" mistyped.
    assert {"beaf", "bear"} <= one_edit_typos("bead") and "beaf" in one_edit_typos("bear")
    kept = unambiguous_typos({"a": ["bead"], "b": ["bear"]})
    assert "beaf" not in kept["a"] + kept["b"] and "bear" not in kept["a"]
    assert "beqd" in kept["a"] and "beqr" in kept["b"]


def test_test_typos_are_never_training_spellings():
    train = {fold(r.text)[0].rstrip(".!?") for r in generate_spellings("train", 1000, 0.2)}
    test_rows = generate_spellings("test", 100, 0.2)
    typos = {fold(r.text)[0].rstrip(".!?") for r in test_rows if r.variant == "typo"}
    assert len(typos) > 100
    assert not typos & train
    clean = {fold(r.text)[0].rstrip(".!?") for r in test_rows if r.variant != "typo"}
    assert clean <= train  # clean spellings are shared: they are what every user types


def test_variants_limit_the_spellings_and_their_typos():
    rows = generate_spellings("train", 200, 0.2, variants=("word",))
    assert {r.variant for r in rows} == {"word", "typo"}
    seven = {fold(r.text)[0].rstrip(".!?") for r in rows if r.label == 7}
    assert "seven" in seven and all(len(t) in (4, 5, 6) for t in seven)  # no digit, no phrase, no phrase typo
    assert [r.text for r in generate_spellings("train", 50, 0.2)] == \
        [r.text for r in generate_spellings("train", 50, 0.2, variants=("phrase", "digit", "word"))]
    with pytest.raises(ValueError, match="'word'"):
        generate_spellings("train", 10, 0.2, variants=("phrase",))


def test_unknown_split_is_refused():
    with pytest.raises(ValueError, match="'validation'"):
        generate_spellings("validation", 10, 0.2)
