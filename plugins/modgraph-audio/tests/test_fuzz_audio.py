"""Property tests of the audio readers: any file gives a finite clip of the modality's input shape or a ModgraphError.

Inputs are random bytes, valid wavs with random damage (truncated, bytes overwritten,
a random payload after a real header) and valid files of random rates, channel counts
and sample formats written by soundfile, which must read. In CI each property runs 100
fixed examples (derandomized, about 15 s in all); for a longer, random search::

    MODGRAPH_FUZZ_EXAMPLES=5000 python -m pytest plugins/modgraph-audio/tests/test_fuzz_audio.py
"""

from __future__ import annotations

import io
import os
import re

import numpy as np
import pytest
import soundfile
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modgraph.errors import ModgraphError
from modgraph_audio import features as F
from modgraph_audio.fsdd import FSDD
from modgraph_audio.gsc import GSC

EXAMPLES = int(os.environ.get("MODGRAPH_FUZZ_EXAMPLES", "100"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                derandomize="MODGRAPH_FUZZ_EXAMPLES" not in os.environ,  # CI: the same examples every run
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

MODALITIES = {"fsdd": FSDD(), "gsc": GSC()}  # fsdd trims silence, gsc does not
SUBTYPES = ["PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"]
ZERO_AMOUNT = re.compile(r"(?<![\d.])0\.0+ s")  # "0.00 s", not "50.00 s"
rates = st.one_of(st.sampled_from([8000, 11025, 16000, 22050, 44100, 48000]), st.integers(1, F.MAX_SAMPLE_RATE))


@st.composite
def wav_files(draw) -> bytes:
    """A valid wav: random rate, channels, sample format and samples (loud, silent or clipped)."""
    rate, channels = draw(rates), draw(st.integers(1, 4))
    frames = draw(st.integers(1, min(3000, int(F.MAX_SECONDS * rate))))
    scale = draw(st.sampled_from([0.0, 1e-6, 0.5, 1.0, 4.0]))
    seed = draw(st.integers(0, 2**32 - 1))
    samples = np.random.default_rng(seed).standard_normal((frames, channels)) * scale
    encoded = io.BytesIO()
    soundfile.write(encoded, np.clip(samples, -1, 1), rate, subtype=draw(st.sampled_from(SUBTYPES)), format="WAV")
    return encoded.getvalue()


@st.composite
def damaged_wav_files(draw) -> bytes:
    data = bytearray(draw(wav_files()))
    how = draw(st.sampled_from(["truncate", "overwrite", "payload"]))
    if how == "truncate":
        return bytes(data[: draw(st.integers(0, len(data) - 1))])
    if how == "payload":
        return bytes(data[:44]) + draw(st.binary(max_size=2000))
    for index, value in draw(st.lists(st.tuples(st.integers(0, len(data) - 1), st.integers(0, 255)),
                                      min_size=1, max_size=8)):
        data[index] = value
    return bytes(data)


def _read_or_refuse(tmp_path, data: bytes, modality: str, suffix: str = ".wav"):
    """read_file's clip, checked, or None when it raised a ModgraphError (any other exception fails)."""
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(data)
    try:
        x, notes = MODALITIES[modality].read_file(path)
    except ModgraphError as exc:
        assert str(path) in str(exc) and "\n" not in str(exc)
        return None
    assert x.shape == MODALITIES[modality].input_shape and x.dtype == torch.float32 and torch.isfinite(x).all()
    assert all(isinstance(n, str) and not ZERO_AMOUNT.search(n) for n in notes)
    return x


@pytest.mark.parametrize("modality", MODALITIES)
@FUZZ
@given(data=st.binary(max_size=4096), suffix=st.sampled_from([".wav", ".flac", ".ogg"]))
def test_random_bytes(tmp_path, modality, data, suffix):
    _read_or_refuse(tmp_path, data, modality, suffix)


@pytest.mark.parametrize("modality", MODALITIES)
@FUZZ
@given(data=damaged_wav_files())
def test_damaged_wavs(tmp_path, modality, data):
    _read_or_refuse(tmp_path, data, modality)


@pytest.mark.parametrize("modality", MODALITIES)
@FUZZ
@given(data=wav_files())
def test_valid_wavs_always_read(tmp_path, modality, data):
    assert _read_or_refuse(tmp_path, data, modality) is not None
