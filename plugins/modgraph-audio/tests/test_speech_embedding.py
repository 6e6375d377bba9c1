"""The pretrained speech embedding (``speech_embedding``): its features, its statistics, its errors."""

from __future__ import annotations


import numpy as np
import pytest
import soundfile
import torch

from modgraph.errors import ConfigError
from modgraph_audio import FSDD
from modgraph_audio import features as F
from modgraph_audio import speech_embedding as E

RATE = 16000


def _word(seed: int, hz: float = 300.0) -> torch.Tensor:
    """A vowel-like second at 16 kHz: a voiced tone with harmonics in noise, swelling in the middle."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(RATE) / RATE
    voice = sum(torch.sin(2 * torch.pi * hz * k * t) / k for k in range(1, 6))
    envelope = torch.exp(-((t - 0.5) / 0.2) ** 2)
    return 0.3 * envelope * voice + 0.005 * torch.randn(RATE, generator=g)


def test_embedding_is_finite_shaped_and_level_free():
    clips = torch.stack([_word(0), _word(1, hz=180.0)])
    out = E.embed(clips)
    assert out.shape == (2, E.WINDOWS, E.DIM) and out.dtype == torch.float32 and torch.isfinite(out).all()
    # A quiet microphone gives the same embedding: each clip is brought to one peak first.
    torch.testing.assert_close(E.embed(clips * 0.05), out, atol=1e-3, rtol=1e-3)
    # ...and what was said moves it: a different voice pitch is a different embedding.
    assert (out[0] - out[1]).abs().mean() > 0.01
    assert E.embed(torch.zeros(1, RATE)).shape == (1, E.WINDOWS, E.DIM)  # silence: no division by zero


def test_fsdd_features_hold_the_embedding_below_the_mfccs(tmp_path):
    fsdd = FSDD()
    assert fsdd.options.speech_embedding and fsdd.input_shape == (1, F.N_MFCC + E.WINDOWS, F.N_FRAMES)
    plain = FSDD().with_options({"speech_embedding": False})
    assert plain.input_shape == F.FEATURE_SHAPE
    path = tmp_path / "word.wav"
    soundfile.write(path, _word(3).numpy(), RATE)
    (x, _), (x_plain, _) = fsdd.read_file(path), plain.read_file(path)
    torch.testing.assert_close(x[:, :F.N_MFCC], x_plain)  # the MFCC rows are the plain node's
    emb = x[0, F.N_MFCC:]
    assert (emb[:, E.DIM:] == 0).all() and emb[:, :E.DIM].abs().sum() > 0


def test_normalisation_fits_and_undoes_the_embedding_rows():
    fsdd = FSDD()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, *fsdd.input_shape, generator=g)
    x[:, :, F.N_MFCC:, E.DIM:] = 0.0
    x[:, :, F.N_MFCC:, :E.DIM] = x[:, :, F.N_MFCC:, :E.DIM] * 3.0 + 5.0
    stats = fsdd.fit_normalization(x)
    assert len(stats["embedding_mean"]) == E.DIM and len(stats["embedding_std"]) == E.DIM
    # Fitting in chunks gives the same statistics as fitting at once.
    chunked = fsdd.fit_normalization_stream([x[:5], x[5:]])
    for key, values in stats.items():
        np.testing.assert_allclose(chunked[key], values, rtol=1e-9, atol=1e-9)
    z = fsdd.normalize(x, stats)
    assert abs(float(z[:, :, F.N_MFCC:, :E.DIM].mean())) < 0.05
    assert abs(float(z[:, :, F.N_MFCC:, :E.DIM].std()) - 1.0) < 0.05
    torch.testing.assert_close(fsdd.denormalize(z, stats), x, atol=1e-4, rtol=1e-4)
    with pytest.raises(ConfigError, match="embedding_mean"):
        fsdd.normalize(x, {"mean": stats["mean"], "std": stats["std"]})


def test_written_wav_ignores_the_embedding_rows(tmp_path):
    fsdd = FSDD()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(*fsdd.input_shape, generator=g)
    other = x.clone()
    other[:, F.N_MFCC:] = torch.randn(E.WINDOWS, F.N_FRAMES, generator=g) * 10
    a = fsdd.write_file(x, tmp_path / "a.wav")[0]
    b = fsdd.write_file(other, tmp_path / "b.wav")[0]
    wave_a, wave_b = soundfile.read(a)[0], soundfile.read(b)[0]
    assert np.abs(wave_a).max() > 0
    np.testing.assert_array_equal(wave_a, wave_b)


def test_augmentation_never_masks_the_embedding_rows():
    fsdd = FSDD()
    x = torch.randn(64, *fsdd.input_shape) + 3.0
    masked = fsdd.augment_batch(x, torch.Generator().manual_seed(0))
    assert torch.equal(masked[:, :, F.N_MFCC:], x[:, :, F.N_MFCC:])
    assert (masked[:, :, :F.N_MFCC] == 0).any()  # the MFCC rows are still masked


def test_the_shipped_model_files_are_checked_before_they_run(tmp_path):
    mel, emb = E.model_files()
    assert mel.parent == emb.parent == E.MODELS and (E.MODELS / "NOTICE.md").is_file()
    with pytest.raises(ConfigError, match="melspectrogram.onnx is missing; reinstall the plugin"):
        E.model_files(tmp_path)
    (tmp_path / "melspectrogram.onnx").write_bytes(mel.read_bytes()[:-1])
    with pytest.raises(ConfigError, match="sha256 differs"):
        E.model_files(tmp_path)
