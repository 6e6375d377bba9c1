"""What every speech modality shares: 1-second 40x101 MFCCs, their statistics, augmentation and files.

``SpeechModality`` is the base of ``fsdd`` and ``gsc``: a subclass lists its recordings in
:meth:`SpeechModality.recordings`; features are computed in one go or, for many
recordings, in chunks that the feature cache writes as shards.
"""

from __future__ import annotations

import abc
import functools
import zlib
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import torch

from modgraph import Field, ConfigError, FeatureSet, Modality, ModalityOptions, RecognizerConfig, VAEConfig
from modgraph_audio import features as F
from modgraph_audio import speech_embedding as E
from modgraph_audio.speech_profiles import GSC_PROFILE

# Waveform augmentation of the training split (chosen with a leave-one-speaker-out experiment).
SPEED_RANGE = (0.85, 1.15)  # resampling factor: tempo and pitch move together, like another voice
SPEED_STEP = 0.01  # factors are quantised so a few cached resampling filters serve every clip
MAX_SHIFT_S = 0.15  # the clip moves at most this far from the centre (less when it would leave the second)
NOISE_PROBABILITY = 0.8
SNR_RANGE_DB = (15.0, 45.0)  # white noise at the recording's own rate, over the recording, not the padding

VTLP_STEP = 0.01  # warp factors are quantised like the speed factors

# Splits of up to this many recordings are computed in one go; larger ones in chunks of
# about CHUNK_ROWS rows (recordings and their augmented copies, ~66 MB of MFCCs).
SINGLE_CHUNK_RECORDINGS = 5000
CHUNK_ROWS = 4096

# On-the-fly masking of normalised batches (SpecAugment without frequency warping).
MAX_TIME_MASK = 12  # frames (120 ms)
MAX_COEFFICIENT_MASK = 4


class SpeechOptions(ModalityOptions):
    """Options every speech modality takes (``--option augment_copies=N``)."""

    augment_copies: int = Field(
        4, ge=0, le=50,
        description="augmented copies of each training clip (speed, shift, noise); 0 turns augmentation off")
    augment_seed: int = Field(0, ge=0, description="seed of the augmented copies (they are cached)")
    vtlp: float = Field(
        0.0, ge=0.0, le=0.3,
        description="vocal tract length perturbation of the augmented copies: each copy's frequency axis is "
                    "warped by a factor within 1 +- this (0: off)")
    mean_norm: bool = Field(True, description="per-utterance cepstral mean normalisation (removes channel tilt)")
    var_norm: bool = Field(False, description="per-utterance cepstral variance normalisation (after the mean's)")
    trim_db: float = Field(0.0, ge=0.0, le=80.0,
                           description="cut leading and trailing frames this many dB below the loudest before "
                                       "centring the word in the second (0: keep the recording as it is)")
    band_rate: int = Field(
        0, ge=0, le=F.SAMPLE_RATE,
        description="inputs recorded above this sample rate are brought down to it first, so nothing above half "
                    "of it reaches the features: a 16 kHz microphone then sounds like the node's data (0: off)")
    speech_embedding: bool = Field(
        False,
        description="add a pretrained speech embedding (Google's, shipped with this plugin, run offline by "
                    "onnxruntime) below the MFCCs: 9 rows of 96 values the encoder reads; what was said, much less "
                    "who said it")


class SpeechModality(Modality):
    """Base class: 1 s of speech at 16 kHz as a (1, 40, 101) MFCC (more rows with ``speech_embedding``); wav in,
    wav (+ MFCC png) out."""

    default_latent_dim = 64
    reconstruction_loss = "mse"
    input_suffixes = (".wav", ".flac", ".ogg")
    output_suffix = ".wav"
    options_model = SpeechOptions
    options: SpeechOptions
    # What the dataset's speech looks like, for write_file (features.restore_speech); None: plain inversion.
    speech_profile: ClassVar[F.SpeechProfile | None] = None

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(1, 40, 101) MFCCs; with ``speech_embedding``, 9 more rows hold the embedding (96 values, then zeros)."""
        extra = E.WINDOWS if self.options.speech_embedding else 0
        return (1, F.N_MFCC + extra, F.N_FRAMES)

    def vae_config(self, latent_dim: int) -> VAEConfig:
        # [16, 32, 64] rather than [32, 64, 64]: a third of the compute, and in equal CPU time
        # it reconstructed FSDD's test split better (MSE 0.62 against 0.73 per standardised value).
        return VAEConfig(input_shape=self.input_shape, latent_dim=latent_dim, architecture="conv",
                         channels=[16, 32, 64], hidden=[256], output="linear")

    def recognizer_config(self) -> RecognizerConfig:
        return RecognizerConfig(input_shape=self.input_shape, num_classes=len(self.classes),
                                architecture="conv", channels=[16, 32], hidden=128, dropout=0.3)

    # -- data ------------------------------------------------------------------------------
    @abc.abstractmethod
    def recordings(self, root: Path, split: Literal["train", "test"],
                   download: bool = False) -> tuple[list[Path], list[int], list[str]]:
        """The split's recordings, their class indices and speakers, in a stable order."""

    def example_files(self, root: Path, split: Literal["train", "test"]) -> list[tuple[int, Path]]:
        """The split's recordings themselves (``modgraph serve``'s examples)."""
        paths, labels, _ = self.recordings(root, split)
        return list(zip(labels, paths))

    def load_features(self, root: Path, split: Literal["train", "test"], download: bool = False) -> FeatureSet:
        paths, labels, speakers = self.recordings(root, split, download)
        return self.features_from_recordings(paths, labels, speakers, augment=split == "train")

    def feature_chunks(self, root: Path, split: Literal["train", "test"], download: bool = False):
        """Chunks of recordings for a large split (None for a small one: computed in one go)."""
        paths, labels, speakers = self.recordings(root, split, download)
        if len(paths) <= SINGLE_CHUNK_RECORDINGS:
            return None
        augment = split == "train"
        per_chunk = max(1, CHUNK_ROWS // (1 + (self.options.augment_copies if augment else 0)))
        return [functools.partial(self.features_from_recordings, paths[i:i + per_chunk], labels[i:i + per_chunk],
                                  speakers[i:i + per_chunk], augment)
                for i in range(0, len(paths), per_chunk)]

    def features_from_recordings(self, paths: list[Path], labels: list[int], speakers: list[str],
                                 augment: bool) -> FeatureSet:
        """MFCCs of the recordings, plus seeded augmented copies when ``augment`` (training)."""
        waves, rates = [], []
        for path in paths:
            wave, rate, _notes = F.read_audio(path)
            wave, rate = self._prepared(torch.from_numpy(wave), rate)
            waves.append(wave)
            rates.append(rate)
        x = self._mfcc(F.to_clips(waves, rates))
        y = torch.tensor(labels, dtype=torch.long)
        copies = self.options.augment_copies if augment else 0
        if copies == 0:
            return FeatureSet(x=x, y=y, groups={"speaker": list(speakers)})
        aug_waves, aug_rates, origin, warps = [], [], [], []
        for row, (path, wave, rate) in enumerate(zip(paths, waves, rates)):
            rng = np.random.default_rng([self.options.augment_seed, zlib.crc32(Path(path).name.encode())])
            for _ in range(copies):
                aug_waves.append(augment_waveform(wave, rate, rng))  # already one second long
                aug_rates.append(rate)
                origin.append(row)
                warps.append(vtlp_factor(rng, self.options.vtlp))
        x_aug = self._mfcc(F.to_clips(aug_waves, aug_rates), torch.tensor(warps))
        n = len(paths)
        origin_t = torch.cat([torch.arange(n), torch.tensor(origin, dtype=torch.long)])
        return FeatureSet(
            x=torch.cat([x, x_aug]), y=y[origin_t], origin=origin_t,
            augmented=torch.cat([torch.zeros(n, dtype=torch.bool), torch.ones(len(origin), dtype=torch.bool)]),
            groups={"speaker": [speakers[i] for i in origin_t.tolist()]})

    def _prepared(self, wave: torch.Tensor, rate: int, notes: list[str] | None = None) -> tuple[torch.Tensor, int]:
        """The wave brought down to ``band_rate`` (when above it) and trimmed to the word (with ``trim_db``)."""
        band = self.options.band_rate
        if band and rate > band:
            wave, rate = F.band_limit(wave, rate, band), band
        if not self.options.trim_db:
            return wave, rate
        trimmed = F.trim_silence(wave, rate, self.options.trim_db)
        note = F.trim_note(len(wave) - len(trimmed), rate)
        if notes is not None and note:
            notes.append(note)
        return trimmed, rate

    def _mfcc(self, clips: torch.Tensor, warps: torch.Tensor | None = None) -> torch.Tensor:
        """MFCCs of ``clips``; with ``warps``, each with its own VTLP factor (clips sharing one in one batch).

        With ``speech_embedding`` the clips' embeddings follow as more rows (of the unwarped clip).
        """
        if warps is None:
            out = F.mfcc(clips, self.options.mean_norm, self.options.var_norm)
        else:
            out = torch.empty(len(clips), *F.FEATURE_SHAPE)
            for warp in warps.unique().tolist():
                rows = (warps == warp).nonzero().flatten()
                out[rows] = F.mfcc(clips[rows], self.options.mean_norm, self.options.var_norm, warp)
        if not self.options.speech_embedding:
            return out
        emb = torch.zeros(len(clips), 1, E.WINDOWS, F.N_FRAMES, device=out.device)
        if len(clips):
            emb[:, 0, :, :E.DIM] = E.embed(clips).to(out.device)  # onnxruntime runs on the CPU
        return torch.cat([out, emb], dim=2)

    def fit_normalization(self, x: torch.Tensor) -> dict[str, list[float]]:
        """Mean and standard deviation of each MFCC coefficient over clips and frames.

        With ``speech_embedding``, also of each embedding value over clips and windows.
        """
        return self.fit_normalization_stream([x])

    def fit_normalization_stream(self, chunks) -> dict[str, list[float]]:
        """The statistics of :meth:`fit_normalization`, merged chunk by chunk (Chan et al.'s update)."""
        mfcc, emb = _RunningStats(F.N_MFCC), _RunningStats(E.DIM)
        for x in chunks:
            x = x.cpu().reshape(len(x), -1, F.N_FRAMES)
            mfcc.add(x[:, :F.N_MFCC].transpose(0, 1).reshape(F.N_MFCC, -1))
            if self.options.speech_embedding:
                emb.add(x[:, F.N_MFCC:, :E.DIM].permute(2, 0, 1).reshape(E.DIM, -1))
        stats = mfcc.result()
        if self.options.speech_embedding:
            stats.update({f"embedding_{key}": values for key, values in emb.result().items()})
        return stats

    def normalize(self, x: torch.Tensor, stats: dict[str, list[float]]) -> torch.Tensor:
        mean, std = self._stats(stats, x)
        return (x - mean) / std

    def denormalize(self, x: torch.Tensor, stats: dict[str, list[float]]) -> torch.Tensor:
        mean, std = self._stats(stats, x)
        return x * std + mean

    def _stats(self, stats: dict[str, list[float]], x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and spread shaped like one clip's features (rows x frames)."""
        mean, std = _stats(stats, x)
        if not self.options.speech_embedding:
            return mean[:, None], std[:, None]
        try:
            emb_mean = torch.tensor(stats["embedding_mean"], dtype=x.dtype, device=x.device)
            emb_std = torch.tensor(stats["embedding_std"], dtype=x.dtype, device=x.device)
        except KeyError:
            raise ConfigError("speech normalisation statistics of a node with speech_embedding need "
                              "'embedding_mean' and 'embedding_std' (from fit_normalization)") from None
        rows, frames = F.N_MFCC + E.WINDOWS, F.N_FRAMES
        full_mean = torch.zeros(rows, frames, dtype=x.dtype, device=x.device)
        full_std = torch.ones(rows, frames, dtype=x.dtype, device=x.device)
        full_mean[:F.N_MFCC] = mean[:, None]
        full_std[:F.N_MFCC] = std[:, None]
        full_mean[F.N_MFCC:, :E.DIM] = emb_mean
        full_std[F.N_MFCC:, :E.DIM] = emb_std
        return full_mean, full_std

    def augment_batch(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Zero (the mean, after normalisation) one random span of frames and one band of coefficients per clip."""
        b = len(x)
        # The spans are drawn where the generator lives (the CPU unless given another), so a run
        # draws the same masks on any device; the mask is then built on the batch's device.
        draw = generator.device if generator is not None else torch.device("cpu")
        t_len = torch.randint(0, MAX_TIME_MASK + 1, (b, 1), generator=generator, device=draw)
        t_start = (torch.rand(b, 1, generator=generator, device=draw) * (x.shape[-1] - t_len)).long()
        c_len = torch.randint(0, MAX_COEFFICIENT_MASK + 1, (b, 1), generator=generator, device=draw)
        # Coefficient 0 (overall level) is never masked: without it the rest cannot be placed.
        # Only the MFCC rows are masked; the embedding's rows (speech_embedding) stay whole.
        c_start = 1 + (torch.rand(b, 1, generator=generator, device=draw) * (F.N_MFCC - 1 - c_len)).long()
        t_len, t_start, c_len, c_start = (t.to(x.device) for t in (t_len, t_start, c_len, c_start))
        frames = torch.arange(x.shape[-1], device=x.device)
        coeffs = torch.arange(x.shape[-2], device=x.device)
        time_mask = (frames >= t_start) & (frames < t_start + t_len)  # (b, frames)
        coeff_mask = (coeffs >= c_start) & (coeffs < c_start + c_len)  # (b, coeffs)
        mask = (time_mask[:, None, :] | coeff_mask[:, :, None]) & (coeffs < F.N_MFCC)[None, :, None]
        return x.masked_fill(mask.view(b, *([1] * (x.dim() - 3)), *mask.shape[1:]), 0.0)

    # -- files ----------------------------------------------------------------------------
    def read_file(self, path: Path) -> tuple[torch.Tensor, list[str]]:
        x, notes = self.read_files([path])
        return x[0], notes[0]

    def read_files(self, paths: list[Path]) -> tuple[torch.Tensor, list[list[str]]]:
        if not paths:
            return torch.zeros(0, *self.input_shape), []
        waves, rates, all_notes = [], [], []
        for path in paths:
            wave, rate, notes = F.read_audio(Path(path))
            if rate != F.SAMPLE_RATE:
                notes.append(f"resampled {rate} Hz to {F.SAMPLE_RATE} Hz")
            wave, rate = self._prepared(torch.from_numpy(wave), rate, notes)
            length = F.length_note(len(wave), rate)
            if length:
                notes.append(length)
            waves.append(wave)
            rates.append(rate)
            all_notes.append(notes)
        return self._mfcc(F.to_clips(waves, rates)), all_notes

    def write_file(self, x: torch.Tensor, path: Path, *, scale: int = 1) -> list[Path]:
        """Write the clip resynthesised from raw MFCCs ``x`` to ``path`` (16 kHz wav) and its picture.

        The picture, ``<stem>.mfcc.png``, is labelled as the wav's MFCC. ``scale`` (``translate
        --scale``) is for image outputs; a wav and its picture ignore it.

        The wav is made from ``x`` restored to the modality's :attr:`speech_profile` (speech
        frames, spectral spread and envelope; see ``features.restore_speech``); the picture
        shows ``x`` as given (with ``var_norm``, after coefficients 1-39 got the profile's spread back:
        see ``features.undo_variance_norm``).
        """
        path = Path(path)
        x = self._spread_back(x)
        wave = F.mfcc_to_waveform(x, profile=self.speech_profile, mean_norm=self.options.mean_norm)
        wav = F.write_wav(path, wave[0])
        try:  # named and labelled as the wav's picture, so it is never taken for an image output
            png = F.write_mfcc_png(path.with_name(f"{path.stem}.mfcc.png"), x,
                                   label=f"MFCC of {path.name[:60]} (audio; time ->, coefficient 0 at the bottom)")
        except Exception:
            wav.unlink(missing_ok=True)  # all or none: no wav is left without its picture (a name too long...)
            raise
        return [wav, png]

    def picture(self, x: torch.Tensor):
        """The clip's mel spectrogram, labelled as such (the contact sheet of ``translate --sheet``).

        Drawn from ``x`` as ``write_file`` resynthesises it (restored to the :attr:`speech_profile`
        when there is one), so it shows what the wav holds: time to the right, low pitch at the bottom.
        """
        x = self._spread_back(x)
        if self.speech_profile is not None:
            x, _ = F.restore_speech(x, self.speech_profile, self.options.mean_norm)
        return F.labelled(F.mel_image(F.mfcc_to_mel_db(x)[0]), "mel spectrogram (audio; time ->)")

    def _spread_back(self, x: torch.Tensor) -> torch.Tensor:
        """The raw MFCC rows on the CPU, (1, 40, 101); with ``var_norm``, coefficients 1-39 get a speech spread."""
        # Resynthesis and pictures run on the CPU, wherever the decoder put x.
        x = torch.as_tensor(x).detach().to("cpu", torch.float32).reshape(self.input_shape)
        x = x[:, :F.N_MFCC].contiguous()  # the embedding's rows (speech_embedding) are not heard
        if self.options.var_norm:
            spread = (self.speech_profile or GSC_PROFILE).spread[1:]  # GSC's: speech recorded at 16 kHz
            x = F.undo_variance_norm(x, torch.tensor(spread)).reshape(F.FEATURE_SHAPE)
        return x


def augment_waveform(wave: torch.Tensor, rate: int, rng: np.random.Generator) -> torch.Tensor:
    """One augmented copy of a clip, one second long at its own rate.

    Speed perturbation by resampling, white noise at a random signal-to-noise ratio (a
    different recording noise floor), and a random shift inside the second.
    """
    factor = round(rng.uniform(*SPEED_RANGE) / SPEED_STEP) * SPEED_STEP
    stretched = F.resample(wave, int(round(rate * factor)), rate)  # played at `rate`: faster and higher
    n = stretched.shape[-1]
    if n and rng.random() < NOISE_PROBABILITY:
        # Only where the recording is: the padding stays digital silence, as in every real clip.
        snr_db = rng.uniform(*SNR_RANGE_DB)
        scale = float(np.sqrt(float(stretched.pow(2).mean()) / 10 ** (snr_db / 10)))
        stretched = stretched + scale * torch.from_numpy(rng.standard_normal(n).astype(np.float32))
    room = max(0.0, (rate - n) / 2 / rate)
    max_shift = min(MAX_SHIFT_S, max(room, 0.02))
    offset = int(round(rng.uniform(-max_shift, max_shift) * rate))
    clip = F.fit_length(stretched, rate, offset)
    return clip


def vtlp_factor(rng: np.random.Generator, spread: float) -> float:
    """A VTLP warp factor within 1 +- ``spread``, quantised (one filterbank serves many copies); 1 draws nothing."""
    if not spread:
        return 1.0  # no draw: copies made without VTLP stay as they were
    return round(rng.uniform(1.0 - spread, 1.0 + spread) / VTLP_STEP) * VTLP_STEP


def _stats(stats: dict[str, list[float]], x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        mean = torch.tensor(stats["mean"], dtype=x.dtype, device=x.device)
        std = torch.tensor(stats["std"], dtype=x.dtype, device=x.device)
    except KeyError:
        raise ConfigError("speech normalisation statistics need 'mean' and 'std' (from fit_normalization)") from None
    if mean.shape != (F.N_MFCC,) or std.shape != (F.N_MFCC,):
        raise ConfigError(f"speech normalisation statistics must hold {F.N_MFCC} values each")
    return mean, std


class _RunningStats:
    """Mean and standard deviation of each of ``size`` values, merged batch by batch (Chan et al.)."""

    def __init__(self, size: int):
        self.count = 0
        self.mean = torch.zeros(size, dtype=torch.float64)
        self.m2 = torch.zeros(size, dtype=torch.float64)

    def add(self, values: torch.Tensor) -> None:
        """Add the columns of ``values`` (size x n)."""
        values = values.double()
        n = values.shape[1]
        if n == 0:
            return
        batch_mean = values.mean(dim=1)
        batch_m2 = (values - batch_mean[:, None]).pow(2).sum(dim=1)
        delta, total = batch_mean - self.mean, self.count + n
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + batch_m2 + delta.pow(2) * (self.count * n / total)
        self.count = total

    def result(self) -> dict[str, list[float]]:
        std = (self.m2 / max(1, self.count - 1)).sqrt()
        return {"mean": self.mean.tolist(), "std": std.clamp_min(1e-3).tolist()}


