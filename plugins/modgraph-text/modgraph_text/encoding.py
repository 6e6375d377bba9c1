"""Text as model input: a fixed-length one-hot grid over a small alphabet, and back.

``fold`` makes what a user typed comparable (case, accents, spacing); ``encode`` turns
a folded string into a (MAX_LENGTH, ALPHABET_SIZE) grid; ``decode`` reads one back.
"""

from __future__ import annotations

import unicodedata

import torch

MAX_LENGTH = 24
# Index 0 of the one-hot axis is padding; character k of ALPHABET is index k + 1.
ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789 .,!?'-"
PAD = 0
ALPHABET_SIZE = len(ALPHABET) + 1
ALPHABET_DESCRIPTION = "letters a-z, digits 0-9, space and . , ! ? ' -"

_INDEX = {c: i + 1 for i, c in enumerate(ALPHABET)}
# Typographic look-alikes of characters in the alphabet (what word processors and phones type).
_LOOKALIKES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u02bc": "'", "`": "'", "\u2010": "-", "\u2011": "-",
                             "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2026": "..."})


def fold(text: str) -> tuple[str, list[str]]:
    """``text`` lower-cased, accents and typographic marks plain, whitespace collapsed and trimmed.

    Returns the folded string and notes naming what changed (case changes and trimmed
    spaces are not noted: the encoding ignores them by design).
    """
    notes = []
    out = unicodedata.normalize("NFKC", text).translate(_LOOKALIKES)
    decomposed = unicodedata.normalize("NFKD", out)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    if plain != decomposed:
        notes.append("removed accents")
    out = " ".join(plain.casefold().split())
    return out, notes


def unsupported_characters(text: str) -> list[str]:
    """Characters of ``text`` outside the alphabet, each once, in order of appearance."""
    return list(dict.fromkeys(c for c in text if c not in _INDEX))


def encode(text: str) -> torch.Tensor:
    """One-hot float32 (MAX_LENGTH, ALPHABET_SIZE) of a folded string; padding fills the rest.

    Raises ``ValueError`` for characters outside the alphabet or text over MAX_LENGTH;
    fold the text first (``fold``) and check it, as ``Text.read_text`` does.
    """
    bad = unsupported_characters(text)
    if bad:
        raise ValueError(f"characters outside the alphabet: {', '.join(map(repr, bad))}")
    if len(text) > MAX_LENGTH:
        raise ValueError(f"{len(text)} characters, the encoding holds at most {MAX_LENGTH}")
    index = torch.full((MAX_LENGTH,), PAD, dtype=torch.long)
    index[: len(text)] = torch.tensor([_INDEX[c] for c in text], dtype=torch.long)
    return torch.nn.functional.one_hot(index, ALPHABET_SIZE).to(torch.float32)


def decode(x: torch.Tensor) -> str:
    """The string a (MAX_LENGTH, ALPHABET_SIZE) grid spells: argmax per position, up to the first padding.

    Works on one-hot inputs and on a decoder's per-position probabilities alike.
    """
    if x.dim() != 2 or x.shape[1] != ALPHABET_SIZE:
        raise ValueError(f"expected a text grid shaped (length, {ALPHABET_SIZE}), got {tuple(x.shape)}")
    chars = []
    for k in x.detach().float().nan_to_num(0.0).argmax(dim=1).tolist():
        if k == PAD:
            break
        chars.append(ALPHABET[k - 1])
    return "".join(chars).strip()


def random_edits(x: torch.Tensor, rate: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """A copy of a batch of grids (N, MAX_LENGTH, ALPHABET_SIZE) with one random letter edit in ``rate`` of the rows.

    The edit is a substitution by a random letter, a deletion (the rest moves left), or
    a swap of two neighbouring letters. Only letters are edited, never the first
    character, and rows shorter than four characters are left alone, so a digit or a
    word's class-bearing shape is never wiped out.
    """
    n, length, size = x.shape
    if rate <= 0 or n == 0:
        return x
    device = x.device
    # Drawn where the generator lives (the CPU unless given another), then moved to the batch's device.
    draw = generator.device if generator is not None else torch.device("cpu")
    index = x.argmax(dim=2)
    cols = torch.arange(length, device=device).expand(n, length)
    letter = (index >= 1) & (index <= 26) & (cols >= 1)
    nxt = torch.cat([letter[:, 1:], torch.zeros_like(letter[:, :1])], dim=1)
    kind = torch.randint(3, (n,), generator=generator, device=draw).to(device)  # 0 substitution, 1 deletion, 2 swap
    eligible = torch.where((kind == 2)[:, None], letter & nxt, letter)
    chosen = torch.rand(n, generator=generator, device=draw).to(device) < rate
    edited = chosen & ((index != PAD).sum(1) >= 4) & eligible.any(1)
    score = torch.rand(n, length, generator=generator, device=draw).to(device).masked_fill(~eligible, -1.0)
    pos = score.argmax(dim=1)

    source = cols.clone()
    rows = (edited & (kind == 1)).nonzero().flatten()
    source[rows] = torch.where(cols[rows] >= pos[rows, None], cols[rows] + 1, cols[rows])
    rows = (edited & (kind == 2)).nonzero().flatten()
    source[rows, pos[rows]] = pos[rows] + 1
    source[rows, pos[rows] + 1] = pos[rows]
    padded = torch.cat([x, torch.zeros_like(x[:, :1])], dim=1)  # a padding column for deletions to shift in
    padded[:, length, PAD] = 1.0
    out = padded.gather(1, source.unsqueeze(2).expand(-1, -1, size))
    rows = (edited & (kind == 0)).nonzero().flatten()
    letters = 1 + torch.randint(26, (len(rows),), generator=generator, device=draw).to(device)
    out[rows, pos[rows]] = 0.0
    out[rows, pos[rows], letters] = 1.0
    return out
