"""A pretrained speech embedding: what was said, much less who said it (``speech_embedding``).

Google's speech embedding (Lin et al. 2020, "Training keyword spotters with limited and
synthesized speech data"; trained on a large corpus of many speakers) in the two ONNX files
that openwakeword 0.5.1 made of it (a log-mel front end and the embedding network). They ship
with this plugin (``speech_models/``, with their licence notice) and run offline on the CPU
through onnxruntime, a dependency of the plugin.

Each 1-second clip, padded by a quarter second of silence on each side, gives
:data:`WINDOWS` embeddings of :data:`DIM` values (a window of 0.76 s every 80 ms).
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import numpy as np
import torch

from modgraph import ConfigError

MODELS = Path(__file__).resolve().parent / "speech_models"
# The files as copied from openwakeword 0.5.1 (speech_models/NOTICE.md): checked before they are run.
SHA256 = {"melspectrogram.onnx": "ba2b0e0f8b7b875369a2c89cb13360ff53bac436f2895cced9f479fa65eb176f",
          "embedding_model.onnx": "70d164290c1d095d1d4ee149bc5e00543250a7316b59f31d056cff7bd3075c1f"}
INSTALL = "pip install --force-reinstall modgraph-audio"
# For model cards (speech_models/NOTICE.md says more).
LICENCE = ("speech embedding (option speech_embedding): Google's speech_embedding, Apache-2.0, in openwakeword "
           "0.5.1's ONNX files (Apache-2.0 code; its README puts its pre-trained wake-word models under "
           "CC BY-NC-SA 4.0)")
RATE = 16000
PAD_S = 0.25  # silence each side of the 1-s clip: the first and last windows then hold the word's edges
WINDOW_FRAMES = 76  # mel frames (10 ms) per embedding window
STEP_FRAMES = 8
DIM = 96
WINDOWS = 9  # of a 1.5-s padded clip (148 mel frames)
PEAK = 0.5  # each clip is brought to this peak first
INT16_SCALE = 32767.0  # the front end expects 16-bit sample values


def model_files(folder: Path = MODELS) -> tuple[Path, Path]:
    """The front end's and the embedding network's ONNX files, each checked against its sha256."""
    paths = []
    for name, digest in SHA256.items():
        path = folder / name
        try:
            found = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError:
            found = None
        if found != digest:
            state = "missing" if found is None else "not the file this plugin shipped (its sha256 differs)"
            raise ConfigError(f"the speech embedding's model file {path} is {state}; reinstall the plugin "
                              f"({INSTALL}) or use --option speech_embedding=false")
        paths.append(path)
    return paths[0], paths[1]


@functools.lru_cache(maxsize=1)
def _sessions():
    try:
        import onnxruntime as ort
    except ImportError:
        raise ConfigError("the speech embedding needs onnxruntime; run: pip install onnxruntime "
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
