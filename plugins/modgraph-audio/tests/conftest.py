"""Fixture writers: tiny real wav files in tmp_path, in the exact FSDD layout.

Tests reach the writers through the ``audio`` fixture, not ``from conftest import``: other
test folders of the repository have their own conftest module.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile
import torch

SPEAKERS = ("alice", "bob")
DIGITS = (0, 1, 2)
TAKES = range(7)  # 0-4 test, 5-6 train


def tone(seconds: float, rate: int, start_hz: float, end_hz: float | None = None, channels: int = 1,
         seed: int = 0) -> np.ndarray:
    """A chirp with a little noise and a fade in and out, shaped (samples,) or (samples, channels)."""
    n = max(1, int(round(seconds * rate)))
    t = np.arange(n) / rate
    end_hz = start_hz if end_hz is None else end_hz
    phase = 2 * np.pi * (start_hz * t + (end_hz - start_hz) * t**2 / (2 * seconds))
    wave = 0.5 * np.sin(phase) + 0.2 * np.sin(2 * phase)
    wave *= np.minimum(1.0, np.minimum(t, t[::-1]) / 0.03)
    wave += 0.01 * np.random.default_rng(seed).standard_normal(n)
    wave = wave.astype(np.float32)
    return np.stack([wave * (0.5 + 0.5 * c) for c in range(channels)], axis=1) if channels > 1 else wave


def write_wav(path: Path, data: np.ndarray, rate: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), data, rate, subtype="PCM_16")
    return path


def write_fsdd(root: Path) -> Path:
    """``root/fsdd/recordings/{digit}_{speaker}_{index}.wav`` at 8 kHz: one chirp shape per digit."""
    folder = root / "fsdd" / "recordings"
    for s, speaker in enumerate(SPEAKERS):
        for digit in DIGITS:
            for take in TAKES:
                seconds = 0.3 + 0.05 * take
                base = 200 + 150 * digit + 40 * s
                write_wav(folder / f"{digit}_{speaker}_{take}.wav",
                          tone(seconds, 8000, base, base * (1.5 + digit), seed=take), 8000)
    (folder / "README.txt").write_text("not a recording")  # ignored: does not match the naming pattern
    return root


@pytest.fixture(autouse=True)
def _one_torch_thread():
    # These tensors are tiny: threads gain nothing and, on a busy machine, spinning ones cost seconds.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def audio() -> SimpleNamespace:
    """The writers and the fixture dataset's layout, for tests that make their own files."""
    return SimpleNamespace(tone=tone, write_wav=write_wav, speakers=SPEAKERS, digits=DIGITS)


@pytest.fixture
def fsdd_root(tmp_path) -> Path:
    return write_fsdd(tmp_path / "data")


@pytest.fixture
def wav_8k(tmp_path) -> Path:
    """A 0.5 s mono 8 kHz wav."""
    return write_wav(tmp_path / "clip.wav", tone(0.5, 8000, 300, 900), 8000)
