"""The generated dataset: ways people type each concept, drawn from a seed.

Each concept has clean spellings (the word, the digit, short phrases). Rows are clean
spellings or one-edit typos of them, in varied casing and punctuation. A typo is kept
only when it is one edit from exactly one concept and is not itself a clean spelling,
and every typo belongs to one split only, so test typos are never seen in training.
"""

from __future__ import annotations

import random
import zlib
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

from modgraph_text.encoding import MAX_LENGTH

NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
CONCEPTS = NUMBER_WORDS + ["go", "stop", "left", "right", "stop sign", "go straight or right",
                           "go straight or left", "keep right", "keep left", "roundabout"]

# Phrases are chosen so that none could mean another concept: no "go left" (go? left?),
# no bare "straight", nothing shared between "stop" and "stop sign".
_PHRASES = {
    "go": ["go now", "go ahead", "let's go", "you may go"],
    "stop": ["halt", "stop now", "stop here", "please stop"],
    "left": ["turn left", "to the left", "left turn", "hang a left"],
    "right": ["turn right", "to the right", "right turn", "hang a right"],
    "stop sign": ["a stop sign", "the stop sign", "stop-sign", "stop sign ahead"],
    "go straight or right": ["straight or right", "ahead or right", "straight or turn right",
                             "straight ahead or right"],
    "go straight or left": ["straight or left", "ahead or left", "straight or turn left",
                            "straight ahead or left"],
    "keep right": ["keep to the right", "stay right", "keep on the right", "stay on the right"],
    "keep left": ["keep to the left", "stay left", "keep on the left", "stay on the left"],
    "roundabout": ["round about", "round-about", "a roundabout", "the roundabout", "traffic circle"],
}

# Letters next to each other on a QWERTY keyboard: substitutions people actually make.
_KEYBOARD_ROWS = ["qwertyuiop", "asdfghjkl", "zxcvbnm"]


def _keyboard_neighbours() -> dict[str, str]:
    near: dict[str, set[str]] = {}
    for r, row in enumerate(_KEYBOARD_ROWS):
        for i, c in enumerate(row):
            keys = {row[j] for j in (i - 1, i + 1) if 0 <= j < len(row)}
            for other in (r - 1, r + 1):
                if 0 <= other < len(_KEYBOARD_ROWS):
                    keys |= {_KEYBOARD_ROWS[other][j] for j in (i - 1, i, i + 1) if 0 <= j < len(_KEYBOARD_ROWS[other])}
            near[c] = keys
    return {c: "".join(sorted(keys)) for c, keys in near.items()}


_NEIGHBOURS = _keyboard_neighbours()

# How a row is dressed: casing and trailing punctuation, with weights.
_CASINGS = [("lower", 50), ("capitalized", 25), ("upper", 15), ("title", 10)]
_ENDINGS = [("", 70), ("!", 10), (".", 8), ("?", 6), ("!!", 3), ("...", 3)]
_PADDED_FRACTION = 0.1  # rows with spaces around them (the encoding trims them)
CLEAN_VARIANTS = ("word", "digit", "phrase")
TEST_TYPO_SHARE = 5  # one typo in five (by a hash of its text) is reserved for the test split


@dataclass(frozen=True)
class Spelling:
    """One generated row: the text as typed, its class index, and what kind of variant it is."""

    text: str
    label: int
    variant: str  # "word", "digit", "phrase" or "typo"


def clean_spellings(concept: str) -> list[tuple[str, str]]:
    """(spelling, variant) pairs of a concept without typos, lower case, the concept first."""
    if concept in NUMBER_WORDS:
        digit = str(NUMBER_WORDS.index(concept))
        return [(concept, "word"), (digit, "digit"), (f"number {concept}", "phrase"), (f"number {digit}", "phrase"),
                (f"the number {concept}", "phrase"), (f"digit {digit}", "phrase"), (f"the digit {concept}", "phrase")]
    return [(concept, "word")] + [(p, "phrase") for p in _PHRASES[concept]]


def one_edit_typos(text: str) -> set[str]:
    """Deletions, keyboard-neighbour substitutions and swaps of adjacent letters.

    Only letters of words of three or more letters are edited, never a word's first
    letter (people seldom mistype it, and "ight" could be eight or right), and
    deletions only in words of four or more letters; digits, spaces and punctuation
    are never touched.
    """
    out = set()
    for i, c in enumerate(text):
        start, end = text.rfind(" ", 0, i) + 1, text.find(" ", i)
        word = text[start:end if end != -1 else len(text)]
        if not c.isalpha() or len(word) < 3 or i == start:
            continue
        if len(word) >= 4:
            out.add(text[:i] + text[i + 1:])
        out.update(text[:i] + n + text[i + 1:] for n in _NEIGHBOURS.get(c, ""))
        if i + 1 < len(text) and text[i + 1].isalpha() and text[i + 1] != c:
            out.add(text[:i] + text[i + 1] + c + text[i + 2:])
    out.discard(text)
    return out


def unambiguous_typos(clean: dict[str, list[str]]) -> dict[str, list[str]]:
    """concept -> its one-edit typos that are no clean spelling and no typo of another concept."""
    candidates = {c: set().union(*(one_edit_typos(s) for s in spellings)) for c, spellings in clean.items()}
    every_clean = {s for spellings in clean.values() for s in spellings}
    owners = Counter(t for typos in candidates.values() for t in typos)
    return {c: sorted(t for t in typos if owners[t] == 1 and t not in every_clean) for c, typos in candidates.items()}


@lru_cache(maxsize=None)
def typo_table() -> dict[str, tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]]:
    """concept -> (train typos, test typos), each a ``(typo, clean spelling it comes from)`` pair.

    Typos go to train or test by a hash of their text, so the split never changes.
    """
    clean = {c: [s for s, _ in clean_spellings(c)] for c in CONCEPTS}
    kept = unambiguous_typos(clean)
    table = {}
    for concept, typos in kept.items():
        source = {t: s for s in clean[concept] for t in one_edit_typos(s)}
        pairs = [(t, source[t]) for t in typos]
        table[concept] = (tuple(p for p in pairs if zlib.crc32(p[0].encode()) % TEST_TYPO_SHARE != 0),
                          tuple(p for p in pairs if zlib.crc32(p[0].encode()) % TEST_TYPO_SHARE == 0))
    return table


def _weighted(rng: random.Random, choices: list[tuple[str, int]]) -> str:
    return rng.choices([c for c, _ in choices], weights=[w for _, w in choices])[0]


def _dress(text: str, rng: random.Random) -> str:
    casing = _weighted(rng, _CASINGS)
    if casing == "capitalized":
        text = text[:1].upper() + text[1:]
    elif casing == "upper":
        text = text.upper()
    elif casing == "title":
        text = " ".join(w[:1].upper() + w[1:] for w in text.split(" "))
    ending = _weighted(rng, _ENDINGS)
    if len(text) + len(ending) <= MAX_LENGTH:
        text += ending
    if rng.random() < _PADDED_FRACTION:
        text = " " * rng.randint(0, 2) + text + " " * rng.randint(1, 2)
    return text


def generate_spellings(split: str, per_class: int, typo_rate: float, seed: int = 0,
                       variants: tuple[str, ...] = CLEAN_VARIANTS) -> list[Spelling]:
    """``per_class`` rows for each concept, in class order, the same for the same arguments.

    Train and test draw from different seeds, and their typos from disjoint sets. About
    ``typo_rate`` of the rows are typos; the rest are clean spellings, the bare word
    three times as likely as each other spelling. ``variants`` limits the clean
    spellings (and the typos made from them) to some of "word", "digit" and "phrase".
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if "word" not in variants or not set(variants) <= set(CLEAN_VARIANTS):
        raise ValueError(f"variants must include 'word' and be among {CLEAN_VARIANTS}, got {variants!r}")
    rng = random.Random(f"modgraph-text/{split}/{seed}")
    typos = typo_table()
    rows = []
    for label, concept in enumerate(CONCEPTS):
        clean = [(s, v) for s, v in clean_spellings(concept) if v in variants]
        weights = [3 if variant == "word" else 1 for _, variant in clean]
        allowed = {s for s, _ in clean}
        split_typos = [t for t, source in typos[concept][0 if split == "train" else 1] if source in allowed]
        for _ in range(per_class):
            if split_typos and rng.random() < typo_rate:
                text, variant = rng.choice(split_typos), "typo"
            else:
                text, variant = rng.choices(clean, weights=weights)[0]
            rows.append(Spelling(_dress(text, rng), label, variant))
    return rows
