"""The speech front end shared by the audio modalities: audio files to 1-second 16 kHz clips to
40x101 MFCCs, and back (MFCC -> mel -> linear spectrogram -> Griffin-Lim), with wav and PNG writers.

Every MFCC function takes a whole batch of waveforms; only reading and length fixing loop over files.
"""

from __future__ import annotations

import functools
import io
import math
import os
import struct
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import soundfile
import torch
import torchaudio.functional as AF
import torchaudio.transforms as AT

from modgraph import InputFileError, write_bytes_atomically

SAMPLE_RATE = 16_000
CLIP_SAMPLES = SAMPLE_RATE  # one second, as Speech Commands
N_MFCC = 40
N_MELS = 64
N_FFT = 512
WIN_LENGTH = 400  # 25 ms
HOP_LENGTH = 160  # 10 ms, so a centred STFT of one second has 16000 / 160 + 1 = 101 frames
N_FRAMES = CLIP_SAMPLES // HOP_LENGTH + 1
F_MIN = 20.0
F_MAX = SAMPLE_RATE / 2
TOP_DB = 80.0  # dynamic range kept below each clip's loudest mel bin
VAR_NORM_EPS = 1e-3  # added to a coefficient's spread before dividing by it (a silent clip's is zero)
FEATURE_SHAPE = (1, N_MFCC, N_FRAMES)
GRIFFIN_LIM_ITERATIONS = 64
VTLP_BOUNDARY_HZ = 4800.0  # Jaitly and Hinton's: formants below it move, the top of the band is squeezed
_CHUNK = 256  # clips per STFT call: bounds memory, not speed

EXPECTED = "expected an audio file (wav, flac or ogg) holding at least one sample"


# -- reading -------------------------------------------------------------------------------


MAX_SAMPLE_RATE = 384_000
MIN_SPEECH_RATE = 4_000  # below it a file cannot hold speech's band up to 2 kHz
MAX_SECONDS = 60.0  # the modalities read 1 s; a longer file is refused before it is decoded
_BLOCK_SAMPLES = 1 << 20  # samples decoded at a time (4 MB): many channels are mixed down block by block


def read_audio(path: Path) -> tuple[np.ndarray, int, list[str]]:
    """A file's samples mixed to mono (float32), its sample rate, and notes on conversions made.

    Raises :class:`InputFileError` for a missing, empty, truncated or non-audio file, or one
    not a regular file (a FIFO is never opened), a rate above :data:`MAX_SAMPLE_RATE` or
    audio longer than :data:`MAX_SECONDS`. Float samples beyond [-1, 1] are scaled into it.
    """
    path = Path(path)
    if not path.exists():
        raise InputFileError(f"{path}: no such file; {EXPECTED}")
    if not path.is_file():
        raise InputFileError(f"{path}: not a regular file; {EXPECTED}")
    if path.stat().st_size == 0:
        raise InputFileError(f"{path}: the file is empty; {EXPECTED}")
    try:
        _check_wav_complete(path)
        data, rate, channels = _decode_mono(path)
    except (soundfile.SoundFileError, RuntimeError, ValueError, TypeError, OSError, struct.error) as exc:
        reason = getattr(exc, "error_string", None) or getattr(exc, "strerror", None) or str(exc).split(": ", 1)[-1]
        raise InputFileError(f"{path}: not readable as audio ({str(reason).rstrip('.')}); {EXPECTED}") from None
    if data.shape[0] == 0:
        raise InputFileError(f"{path}: holds no audio samples; {EXPECTED}")
    notes = []
    if channels > 1:
        notes.append(f"mixed {channels} channels to mono")
    if rate < MIN_SPEECH_RATE:
        notes.append(f"{rate} Hz is too low a sample rate for speech (it holds nothing above {rate / 2:g} Hz)")
    peak = float(np.abs(data).max())
    if peak > 1.0:
        data /= peak
        notes.append(f"scaled samples peaking at {peak:.3g} into [-1, 1]")
    if not peak:
        notes.append("the audio is silent")
    held = int(np.count_nonzero((np.abs(data[1:]) >= 0.99) & (data[1:] == data[:-1])))
    if held >= max(3, len(data) // 1000):
        notes.append(f"the audio looks clipped ({held} samples held at full scale)")
    return data, rate, notes


def _decode_mono(path: Path) -> tuple[np.ndarray, int, int]:
    """Samples mixed to mono, the rate and the channel count; InputFileError for what cannot be used."""
    with soundfile.SoundFile(os.fsencode(path)) as f:  # bytes: a name that is not UTF-8 opens too
        rate, channels, frames = int(f.samplerate), int(f.channels), int(f.frames)
        if not 0 < rate <= MAX_SAMPLE_RATE:
            raise InputFileError(f"{path}: sample rate {rate} Hz is outside 1-{MAX_SAMPLE_RATE} Hz; {EXPECTED}")
        limit = int(MAX_SECONDS * rate)
        if frames > limit:
            raise InputFileError(f"{path}: {frames / rate:.1f} s of audio is too long (at most {MAX_SECONDS:g} s; "
                                 f"the speech modalities read a 1 s clip): cut out the word first")
        parts, total = [], 0
        for block in f.blocks(blocksize=max(1, _BLOCK_SAMPLES // channels), dtype="float32", always_2d=True):
            total += len(block)
            if total > limit:  # the header understated the length
                raise InputFileError(f"{path}: more than {MAX_SECONDS:g} s of audio is too long; "
                                     "cut out the word first")
            if not np.isfinite(block).all():
                raise InputFileError(f"{path}: holds NaN or infinite samples; {EXPECTED}")
            parts.append(block.mean(axis=1, dtype=np.float32) if channels > 1 else block[:, 0].copy())
    wave = np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
    return np.ascontiguousarray(wave, dtype=np.float32), rate, channels


def _check_wav_complete(path: Path) -> None:
    # libsndfile reads a wav cut short without complaint (it returns fewer samples), so
    # compare the data chunk's declared size with what the file holds.
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
            return
        endian = "<" if head[:4] == b"RIFF" else ">"
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            chunk, length = struct.unpack(endian + "4sI", f.read(8))
            if chunk == b"data":
                available = size - pos - 8
                if length not in (0, 0xFFFFFFFF) and length > available:  # 0 / -1: written as a stream
                    raise InputFileError(
                        f"{path}: truncated wav (the header declares {length} bytes of audio, the file holds "
                        f"{available}); {EXPECTED}")
                return
            pos += 8 + length + (length & 1)


# -- fixed-length clips ----------------------------------------------------------------------


def fit_length(wave: torch.Tensor, length: int, offset: int = 0) -> torch.Tensor:
    """``wave`` centred in ``length`` samples (zero-padded or centre-cropped), moved ``offset`` samples later."""
    n = wave.shape[-1]
    start = (length - n) // 2 + offset  # where the clip's first sample lands; negative crops its head
    out = wave.new_zeros(length)
    src0, src1 = max(0, -start), min(n, length - start)
    if src1 > src0:
        out[start + src0: start + src1] = wave[src0:src1]
    return out


def trim_silence(wave: torch.Tensor, rate: int, threshold_db: float) -> torch.Tensor:
    """``wave`` without its leading and trailing silence: 10 ms frames more than ``threshold_db`` below its loudest.

    Recordings start and stop at different times around the word; cut to the word and
    then centred in the second (:func:`fit_length`), the same word lines up whoever recorded it.
    A silent wave, or one shorter than two frames, is returned as it is.
    """
    frame = max(1, rate // 100)
    n = wave.shape[-1] // frame
    if n < 2:
        return wave
    energy = wave[: n * frame].reshape(n, frame).pow(2).mean(dim=1)
    peak = energy.max()
    if peak <= 0:
        return wave
    loud = torch.nonzero(energy > peak * 10.0 ** (-threshold_db / 10.0)).flatten()
    return wave[loud[0].item() * frame: (loud[-1].item() + 1) * frame]


def length_note(num_samples: int, rate: int) -> str | None:
    """What :func:`fit_length` to one second does to a clip, in words (None when nothing)."""
    if num_samples == rate:
        return None
    seconds = _seconds(num_samples / rate)
    if num_samples < rate:
        return f"padded {seconds} to 1.00 s (centred)"
    return f"trimmed {seconds} to its central 1.00 s"


def trim_note(num_cut: int, rate: int) -> str | None:
    """What :func:`trim_silence` did, in words; None when it cut less than one of its 10 ms frames.

    A cut that short is the unframed tail it always drops, not silence it found.
    """
    if num_cut < max(1, rate // 100):
        return None
    return f"cut {_seconds(num_cut / rate)} of silence around the speech"


def _seconds(value: float) -> str:
    """``value`` seconds to two decimals, or to as many more as keep it from reading 0.00 or 1.00 s."""
    for places in range(2, 7):
        text = f"{value:.{places}f}"
        if float(text) not in (0.0, 1.0):
            return f"{text} s"
    return f"{value:.6g} s"


@functools.lru_cache(maxsize=64)
def _resampler(orig_freq: int, new_freq: int) -> AT.Resample:
    return AT.Resample(orig_freq, new_freq)  # keeps its filter kernel, unlike the functional form


# torchaudio's polyphase kernel holds (new / gcd) x (orig / gcd + 2 * width) weights: 16001 Hz ->
# 16 kHz would be 16000 x 16015 (1 GB, minutes of work). Every common rate's reduced terms
# multiply to at most this (11025 Hz, the largest, is 441 x 640 = 282,240), and so do the speed
# perturbation's quantised factors; any other ratio goes to soxr, which takes any ratio in
# bounded time and memory.
_MAX_RATIO_TERMS = 1 << 20


def resample(waves: torch.Tensor, orig_freq: int, new_freq: int = SAMPLE_RATE) -> torch.Tensor:
    """Resample a batch ``(..., time)``: torchaudio's polyphase filter (kernel cached) for ratios with
    small terms, soxr's for the rest (16001 -> 16000 Hz). The output has ``ceil(length * new / orig)``
    samples either way."""
    orig_freq, new_freq = int(orig_freq), int(new_freq)
    if orig_freq <= 0 or new_freq <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_freq} and {new_freq}")
    if orig_freq == new_freq:
        return waves
    ratio = Fraction(new_freq, orig_freq)
    if ratio.numerator * ratio.denominator <= _MAX_RATIO_TERMS:
        with torch.no_grad():
            return _resampler(orig_freq, new_freq)(waves)
    import soxr

    length = waves.shape[-1]
    flat = waves.detach().reshape(-1, length).to("cpu", torch.float64).numpy()
    out = np.stack([soxr.resample(row, orig_freq, new_freq, quality="HQ") for row in flat]) if len(flat) \
        else np.zeros((0, 0))
    target = -(-length * new_freq // orig_freq)  # ceil, as torchaudio's
    out = out[:, :target] if out.shape[-1] >= target else np.pad(out, ((0, 0), (0, target - out.shape[-1])))
    return torch.from_numpy(out).to(waves.dtype).reshape(*waves.shape[:-1], target)


def band_limit(wave: torch.Tensor, rate: int, band_rate: int) -> torch.Tensor:
    """``wave`` at ``band_rate``, as if recorded at it: nothing above half of it is left, not even a filter's leak.

    The spectrum above ``band_rate / 2`` is zeroed before resampling: a resampling filter alone
    lets through tens of dB that, on the log-mel scale, would fill bands an ``band_rate``
    recording has empty.
    """
    spectrum = torch.fft.rfft(wave.to(torch.float64))
    spectrum[..., torch.fft.rfftfreq(wave.shape[-1], 1.0 / rate) > band_rate / 2] = 0
    return resample(torch.fft.irfft(spectrum, n=wave.shape[-1]).to(wave.dtype), rate, band_rate)


def to_clips(waves: list[torch.Tensor], rates: list[int], offsets: list[int] | None = None) -> torch.Tensor:
    """One-second 16 kHz clips ``(B, 16000)`` from waveforms at any rates.

    Each wave is fitted to one second at its own rate (``offsets`` in its own samples move it
    from the centre), then every group sharing a rate is resampled in one batch.
    """
    out = torch.zeros(len(waves), CLIP_SAMPLES)
    offsets = offsets if offsets is not None else [0] * len(waves)
    by_rate: dict[int, list[int]] = {}
    for i, rate in enumerate(rates):
        by_rate.setdefault(int(rate), []).append(i)
    for rate, rows in by_rate.items():
        batch = torch.stack([fit_length(torch.as_tensor(waves[i], dtype=torch.float32), rate, offsets[i]) for i in rows])
        out[rows] = resample(batch, rate)[:, :CLIP_SAMPLES]
    return out


# -- MFCC and its inverse ------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def _mel_filterbank(warp: float = 1.0) -> torch.Tensor:  # (n_freqs, n_mels)
    """The mel filterbank; with ``warp`` != 1, evaluated at :func:`vtlp_frequencies` (a longer or shorter vocal tract)."""
    if warp == 1.0:
        return AF.melscale_fbanks(N_FFT // 2 + 1, F_MIN, F_MAX, N_MELS, SAMPLE_RATE, norm=None, mel_scale="htk")
    freqs = vtlp_frequencies(torch.linspace(0, SAMPLE_RATE // 2, N_FFT // 2 + 1), warp)
    mels = torch.linspace(_hz_to_mel(F_MIN), _hz_to_mel(F_MAX), N_MELS + 2)
    edges = 700.0 * (10.0 ** (mels / 2595.0) - 1.0)  # htk mel back to Hz
    width = edges[1:] - edges[:-1]
    offset = edges[None, :] - freqs[:, None]  # (n_freqs, n_mels + 2)
    rising, falling = -offset[:, :-2] / width[:-1], offset[:, 2:] / width[1:]
    return torch.clamp(torch.minimum(rising, falling), min=0.0)


def _hz_to_mel(hz: float) -> float:
    return 2595.0 * math.log10(1.0 + hz / 700.0)


def vtlp_frequencies(freqs: torch.Tensor, warp: float) -> torch.Tensor:
    """Vocal tract length perturbation (Jaitly and Hinton 2013): where each frequency lands.

    Frequencies scale by ``warp`` up to a boundary (VTLP_BOUNDARY_HZ, moved down for warp > 1 so
    nothing passes the Nyquist frequency); above it a straight line joins the boundary to Nyquist.
    """
    nyquist = SAMPLE_RATE / 2
    boundary = VTLP_BOUNDARY_HZ * min(warp, 1.0) / warp
    upper = nyquist - (nyquist - VTLP_BOUNDARY_HZ * min(warp, 1.0)) / (nyquist - boundary) * (nyquist - freqs)
    return torch.where(freqs <= boundary, freqs * warp, upper)


@functools.lru_cache(maxsize=1)
def _mel_pseudo_inverse() -> torch.Tensor:  # (n_freqs, n_mels)
    return torch.linalg.pinv(_mel_filterbank().T)


@functools.lru_cache(maxsize=1)
def _dct() -> torch.Tensor:  # (n_mels, n_mfcc), orthonormal columns, so its transpose is the pseudo-inverse
    return AF.create_dct(N_MFCC, N_MELS, norm="ortho")


@functools.lru_cache(maxsize=1)
def _window() -> torch.Tensor:
    return torch.hann_window(WIN_LENGTH)


def mel_db(waves: torch.Tensor, warp: float = 1.0) -> torch.Tensor:
    """Log-mel power ``(B, 64, 101)`` in dB below each clip's loudest bin, floored at -80 dB.

    Relative to the clip's own maximum, so the features do not depend on recording level.
    ``warp``: the frequency axis is warped as by another vocal tract (:func:`vtlp_frequencies`).
    """
    waves = torch.as_tensor(waves, dtype=torch.float32).reshape(-1, CLIP_SAMPLES)
    fb = _mel_filterbank(float(warp))
    parts = []
    with torch.no_grad():
        for chunk in waves.split(_CHUNK):
            spec = torch.stft(chunk, N_FFT, HOP_LENGTH, WIN_LENGTH, _window(), center=True,
                              pad_mode="reflect", return_complex=True).abs().pow(2)
            mel = torch.matmul(fb.T, spec)
            peak = mel.amax(dim=(1, 2), keepdim=True).clamp_min(1e-30)
            parts.append(10.0 * torch.log10((mel / peak).clamp_min(10.0 ** (-TOP_DB / 10.0))))
    return torch.cat(parts) if parts else torch.zeros(0, N_MELS, N_FRAMES)


def mfcc(waves: torch.Tensor, mean_norm: bool = False, var_norm: bool = False, warp: float = 1.0) -> torch.Tensor:
    """MFCCs ``(B, 1, 40, 101)`` of one-second 16 kHz clips ``(B, 16000)``: an orthonormal DCT of :func:`mel_db`.

    ``mean_norm`` applies :func:`cepstral_mean_norm`, then ``var_norm`` :func:`cepstral_variance_norm`;
    ``warp`` goes to :func:`mel_db`.
    """
    features = torch.matmul(_dct().T, mel_db(waves, warp))
    if mean_norm:
        features = cepstral_mean_norm(features)
    if var_norm:
        features = cepstral_variance_norm(features)
    return features.unsqueeze(1)


def cepstral_mean_norm(features: torch.Tensor) -> torch.Tensor:
    """Subtract each clip's mean of coefficients 1-39 over its sounding frames (per-utterance CMN).

    A microphone or a vocal tract tilts every frame's spectrum alike; that shows as a
    constant offset of each coefficient, which this removes. Coefficient 0 (loudness
    relative to the clip's peak) is kept, and so are the silent frames (all at the floor,
    coefficients 1-39 already zero), so the padding still reads as silence.
    """
    x = features.clone()
    floor_c0 = -TOP_DB * N_MELS ** 0.5  # coefficient 0 of a frame at the floor in every band
    sounding = (x[..., 0:1, :] > floor_c0 + 1e-3 * abs(floor_c0)).to(x.dtype)  # (..., 1, frames)
    count = sounding.sum(dim=-1, keepdim=True).clamp_min(1.0)
    mean = (x[..., 1:, :] * sounding).sum(dim=-1, keepdim=True) / count
    x[..., 1:, :] -= mean * sounding
    return x


def cepstral_variance_norm(features: torch.Tensor) -> torch.Tensor:
    """Divide each of coefficients 1-39 by its root mean square over the clip's frames (per-utterance CVN).

    After :func:`cepstral_mean_norm` that is the coefficient's spread over the second, so
    every clip's spectral detail has the same size whoever speaks and however loudly.
    Silent frames stay zero and coefficient 0 (the level) is kept.
    """
    x = features.clone()
    rms = x[..., 1:, :].pow(2).mean(dim=-1, keepdim=True).sqrt()
    x[..., 1:, :] = x[..., 1:, :] / (rms + VAR_NORM_EPS)
    return x


def undo_variance_norm(features: torch.Tensor, spread: torch.Tensor) -> torch.Tensor:
    """Give :func:`cepstral_variance_norm`'s output ``(B, 40, frames)`` a speech spread again.

    Coefficients 1-39 are scaled so that their spread over the :func:`speech_frames` is
    ``spread`` (39 values: a real clip's, e.g. a :class:`SpeechProfile`'s).
    """
    x = torch.as_tensor(features, dtype=torch.float32).reshape(-1, N_MFCC, N_FRAMES).clone()
    fraction = speech_frames(x).to(x.dtype).mean(dim=1).clamp_min(1.0 / N_FRAMES)[:, None, None]
    x[:, 1:, :] = x[:, 1:, :] * spread.to(x.dtype)[None, :, None] * fraction.sqrt()
    return x


def mfcc_to_mel_db(features: torch.Tensor) -> torch.Tensor:
    """Pseudo-inverse of the DCT: MFCCs ``(..., 40, 101)`` to a smoothed log-mel ``(B, 64, 101)`` in dB.

    As in :func:`mel_db`, nothing lies above 0 dB (a clip whose peak does is moved down
    rather than clipped: features are relative to the peak) or below the -80 dB floor.
    """
    x = torch.as_tensor(features, dtype=torch.float32).reshape(-1, N_MFCC, N_FRAMES)
    mel = torch.matmul(_dct(), x)
    return (mel - mel.amax(dim=(1, 2), keepdim=True).clamp_min(0.0)).clamp_min(-TOP_DB)


def mfcc_to_waveform(features: torch.Tensor, n_iter: int = GRIFFIN_LIM_ITERATIONS, seed: int = 0,
                     profile: SpeechProfile | None = None, mean_norm: bool = True) -> torch.Tensor:
    """Resynthesise 16 kHz clips ``(B, 16000)`` from MFCCs: mel dB -> power -> linear spectrum -> Griffin-Lim.

    With a ``profile`` the MFCCs first go through :func:`restore_speech` (``mean_norm``: they
    are cepstral-mean normalised, so the profile's envelope is added back), and the samples
    of the frames it silenced are zero (as in a real recording's padding).
    The phase search starts from a seeded random phase, so the result is reproducible;
    each clip is scaled to a peak of 0.9 (MFCCs carry no absolute level).
    """
    speech = None
    if profile is not None:
        features, speech = restore_speech(features, profile, mean_norm)
    mel_power = 10.0 ** (mfcc_to_mel_db(features) / 10.0)
    power = torch.relu(torch.matmul(_mel_pseudo_inverse(), mel_power))
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        waves = AF.griffinlim(power, _window(), N_FFT, HOP_LENGTH, WIN_LENGTH, power=2.0, n_iter=n_iter,
                              momentum=0.99, length=CLIP_SAMPLES, rand_init=True)
    if speech is not None:
        waves = waves * speech_gate(speech)
    peak = waves.abs().amax(dim=1, keepdim=True)
    return torch.where(peak > 0, 0.9 * waves / peak.clamp_min(1e-12), waves)


# -- making model outputs sound like speech -------------------------------------------------
#
# A model's MFCC output is a blend of the utterances it could stand for: words start at
# different times and speakers differ, so the output rises slowly out of a silence that is
# never silent, and its spectral detail is a fraction of real speech's (per-clip spread of
# coefficients 1-39 about a fifth of real clips' for MNIST -> FSDD). Resynthesised as it is,
# that is a quiet hum in noise that FSDD's recogniser cannot name. Statistical speech synthesis met the same over-smoothing
# and restores each utterance's variance to that of natural speech ("global variance", Toda
# and Tokuda 2007); :func:`restore_speech` does that, after deciding which frames are speech,
# and puts back the long-term spectrum that cepstral mean normalisation took away.

# Chosen on MNIST -> FSDD translations of MNIST *training* digits, judged on re-read wavs (docs/tuning.md).
SPEECH_LEVEL_FRACTION = 0.3  # speech: coefficient 0 above 30% of the way from the clip's quietest frame to its loudest
MAX_SPREAD_GAIN = 5.0  # a coefficient's spread over the speech frames is raised at most this many times
_GATE_FADE = WIN_LENGTH  # raised-cosine window smoothing the gate; it opens and closes over half of it (12.5 ms)


@dataclass(frozen=True)
class SpeechProfile:
    """What a dataset's speech looks like as MFCCs, for turning model outputs back into audio.

    ``envelope`` (39 values): the mean over clips of each clip's mean of coefficients 1-39
    over its sounding frames, i.e. what cepstral mean normalisation subtracts: the
    long-term spectrum of the recordings (the speech's tilt and the channel's band).
    ``spread`` (40 values): the mean over clips of each coefficient's standard deviation
    over the clip's sounding frames. Computed by :func:`speech_profile`; ``source`` says from what.
    """

    envelope: tuple[float, ...]
    spread: tuple[float, ...]
    source: str = ""

    def __post_init__(self):
        if len(self.envelope) != N_MFCC - 1 or len(self.spread) != N_MFCC:
            raise ValueError(f"a speech profile holds {N_MFCC - 1} envelope and {N_MFCC} spread values")


def _sounding(features: torch.Tensor) -> torch.Tensor:
    """Frames ``(B, frames)`` of raw MFCCs ``(B, 40, frames)`` above the floor (as :func:`cepstral_mean_norm`)."""
    floor_c0 = -TOP_DB * N_MELS ** 0.5
    return features[:, 0, :] > floor_c0 + 1e-3 * abs(floor_c0)


def speech_profile(features: torch.Tensor, source: str = "") -> SpeechProfile:
    """The :class:`SpeechProfile` of MFCCs computed without mean normalisation (``mfcc(..., mean_norm=False)``)."""
    x = torch.as_tensor(features, dtype=torch.float64).reshape(-1, N_MFCC, N_FRAMES)
    sounding = _sounding(x).to(x.dtype)[:, None, :]
    keep = sounding.sum(dim=(1, 2)) > 1  # clips with at least two sounding frames
    x, sounding = x[keep], sounding[keep]
    if len(x) == 0:
        raise ValueError("no clip with sound to profile")
    count = sounding.sum(dim=-1, keepdim=True)
    mean = (x * sounding).sum(dim=-1, keepdim=True) / count
    spread = ((((x - mean) ** 2) * sounding).sum(dim=-1, keepdim=True) / count).sqrt()
    return SpeechProfile(envelope=tuple(round(v, 2) for v in mean[:, 1:, 0].mean(0).tolist()),
                         spread=tuple(round(v, 2) for v in spread[:, :, 0].mean(0).tolist()), source=source)


def speech_frames(features: torch.Tensor) -> torch.Tensor:
    """Which frames ``(B, frames)`` of MFCCs ``(B, 40, frames)`` are speech.

    Those whose coefficient 0 (the frame's level) lies above :data:`SPEECH_LEVEL_FRACTION`
    of the way from the clip's quietest frame to its loudest: a blended output never
    falls to the floor, so "above the floor" would call every frame speech.
    """
    c0 = torch.as_tensor(features).reshape(-1, N_MFCC, N_FRAMES)[:, 0, :]
    low, high = c0.amin(dim=1, keepdim=True), c0.amax(dim=1, keepdim=True)
    return (c0 > low + SPEECH_LEVEL_FRACTION * (high - low)) & (high > low)


def restore_speech(features: torch.Tensor, profile: SpeechProfile,
                   mean_norm: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """MFCCs ``(..., 40, 101)`` made to look like one clip of the profile's speech, and their speech frames.

    1. Frames that are not :func:`speech_frames` become the floor (digital silence).
    2. Over the speech frames, each coefficient's spread about the clip's mean is raised to
       the profile's ``spread`` (by at most :data:`MAX_SPREAD_GAIN` times; never lowered).
    3. With ``mean_norm`` (the features had their cepstral mean removed) the profile's
       ``envelope`` is added to coefficients 1-39 of the speech frames.

    Real clips pass nearly unchanged: their silence is already the floor and their spread
    already about the profile's. Returns ``(B, 40, 101)`` features and ``(B, 101)`` speech frames.
    """
    x = torch.as_tensor(features, dtype=torch.float32).reshape(-1, N_MFCC, N_FRAMES).clone()
    speech = speech_frames(x)
    mask = speech[:, None, :].to(x.dtype)
    x = x * mask  # silent frames: all zero, then coefficient 0 at the floor
    x[:, 0, :] += (1 - mask[:, 0, :]) * (-TOP_DB * N_MELS ** 0.5)
    count = mask.sum(dim=-1, keepdim=True).clamp_min(1.0)
    mean = (x * mask).sum(dim=-1, keepdim=True) / count
    spread = ((((x - mean) ** 2) * mask).sum(dim=-1, keepdim=True) / count).sqrt()
    target = torch.tensor(profile.spread, dtype=x.dtype)[None, :, None]
    gain = (target / spread.clamp_min(1e-6)).clamp(1.0, MAX_SPREAD_GAIN)
    x = torch.where(mask.bool(), mean + (x - mean) * gain, x)
    if mean_norm:
        envelope = torch.tensor((0.0, *profile.envelope), dtype=x.dtype)[None, :, None]
        x = x + envelope * mask
    return x, speech


def speech_gate(speech: torch.Tensor) -> torch.Tensor:
    """Sample weights ``(B, 16000)`` from speech frames ``(B, 101)``: 0 outside speech, fading in and out inside it.

    The fades (half of a 25 ms raised cosine) lie inside the speech, so silence stays exactly zero.
    """
    frames = speech.to(torch.float32)
    # Frame t is centred on sample t * HOP_LENGTH; a sample belongs to its nearest frame.
    nearest = ((torch.arange(CLIP_SAMPLES) + HOP_LENGTH // 2) // HOP_LENGTH).clamp_max(N_FRAMES - 1)
    hard = frames[:, nearest]
    fade = torch.hann_window(_GATE_FADE + 2, periodic=False)[1:-1]
    fade = (fade / fade.sum()).view(1, 1, -1)
    smooth = torch.nn.functional.conv1d(hard[:, None], fade, padding=_GATE_FADE // 2)[:, 0, :CLIP_SAMPLES]
    return (2.0 * smooth - 1.0).clamp(0.0, 1.0)  # 0 at a speech span's edges, 1 from half a window inside


# -- writing --------------------------------------------------------------------------------


def write_wav(path: Path, wave: torch.Tensor, rate: int = SAMPLE_RATE) -> Path:
    """Write a mono waveform as 16-bit PCM wav; the file appears complete or not at all."""
    samples = torch.as_tensor(wave, dtype=torch.float32).reshape(-1).clamp(-1.0, 1.0).numpy()
    encoded = io.BytesIO()
    soundfile.write(encoded, samples, rate, subtype="PCM_16", format="WAV")
    return _write_atomically(Path(path), encoded.getvalue())


def _write_atomically(path: Path, data: bytes) -> Path:
    """The core's one atomic write (``modgraph.write_bytes_atomically``)."""
    return write_bytes_atomically(path, data)


def mfcc_image(features: torch.Tensor, scale: int = 4):
    """A colour-mapped picture (PIL image) of one MFCC, coefficient 0 at the bottom.

    Each coefficient's row is scaled by its own largest magnitude (0 is the middle colour),
    because coefficient 0 is hundreds of times larger than the others.
    """
    from PIL import Image

    x = torch.as_tensor(features, dtype=torch.float64).reshape(N_MFCC, N_FRAMES).numpy()
    x = x / np.maximum(np.abs(x).max(axis=1, keepdims=True), 1e-12)
    image = Image.fromarray(_colour_map(np.clip((x[::-1] + 1.0) / 2.0, 0.0, 1.0)))
    return image.resize((N_FRAMES * scale, N_MFCC * scale), Image.NEAREST)


def mel_image(mel: torch.Tensor, scale: int = 2):
    """A colour-mapped picture (PIL image) of one log-mel ``(64, frames)`` in dB, low bands at the bottom.

    0 dB (the clip's loudest bin) is the brightest colour, the -80 dB floor the darkest.
    """
    from PIL import Image

    level = np.clip(1.0 + torch.as_tensor(mel, dtype=torch.float64).numpy()[::-1] / TOP_DB, 0.0, 1.0)
    rgb = _colour_map(level)
    return Image.fromarray(rgb).resize((rgb.shape[1] * scale, rgb.shape[0] * scale), Image.NEAREST)


def _colour_map(level: np.ndarray) -> np.ndarray:
    """Values in [0, 1] as matplotlib's viridis colours, ``uint8`` (H, W, 3)."""
    from matplotlib import colormaps

    return np.ascontiguousarray(colormaps["viridis"](level, bytes=True)[..., :3])


def labelled(image, label: str):
    """``image`` under a white band with ``label`` in black (PIL's built-in font)."""
    from PIL import Image, ImageDraw

    band = 14
    out = Image.new("RGB", (image.width, image.height + band), "white")
    out.paste(image, (0, band))
    ImageDraw.Draw(out).text((3, 1), label, fill="black")
    return out


def write_mfcc_png(path: Path, features: torch.Tensor, label: str | None = None) -> Path:
    """Write :func:`mfcc_image` of one MFCC as a PNG, under ``label`` when one is given."""
    encoded = io.BytesIO()
    image = mfcc_image(features)
    (labelled(image, label) if label else image).save(encoded, format="PNG")
    return _write_atomically(Path(path), encoded.getvalue())
