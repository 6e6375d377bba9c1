"""Odd and broken audio files: a correct clip with a note, or one InputFileError line naming the file.

Also the odd sample rates that once built gigabyte resampling kernels, and the writers'
all-or-nothing behaviour.
"""

from __future__ import annotations

import errno
import os
import stat
import struct
import threading

import numpy as np
import pytest
import soundfile
import torch

from modgraph.errors import InputFileError, ModgraphError
from modgraph_audio import features as F
from modgraph_audio.fsdd import FSDD

ODD_RATES = (1, 127, 3999, 7999, 16001, 44101, 96001, 383999)
COMMON_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 88200, 96000, 192000, 384000)


@pytest.fixture
def fsdd():
    return FSDD()


def _one_line_naming(err, path) -> str:
    message = str(err.value)
    assert str(path) in message and "\n" not in message
    return message


# -- resampling -------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", COMMON_RATES)
def test_common_rates_go_through_torchaudios_filter(rate):
    import torchaudio.transforms as AT

    waves = torch.randn(2, max(2, rate // 8), generator=torch.Generator().manual_seed(0))
    assert torch.equal(F.resample(waves, rate), AT.Resample(rate, F.SAMPLE_RATE)(waves))


@pytest.mark.parametrize("rate", ODD_RATES)
def test_any_rate_resamples_to_the_exact_length(rate):
    length = max(2, rate // 4)
    out = F.resample(torch.randn(2, length, generator=torch.Generator().manual_seed(0)), rate)
    assert out.shape == (2, -(-length * F.SAMPLE_RATE // rate)) and torch.isfinite(out).all()


@pytest.mark.parametrize("rate", (16001, 44101, 7999))
def test_an_odd_rate_keeps_the_pitch(rate):
    t = np.arange(rate // 2) / rate
    out = F.resample(torch.from_numpy(np.sin(2 * np.pi * 440.0 * t).astype(np.float32)), rate)
    spectrum = np.abs(np.fft.rfft(out.numpy() * np.hanning(len(out))))
    peak_hz = np.argmax(spectrum) * F.SAMPLE_RATE / len(out)
    assert abs(peak_hz - 440.0) < 3.0


def test_nonpositive_rates_are_refused():
    with pytest.raises(ValueError):
        F.resample(torch.zeros(10), 0)


@pytest.mark.parametrize("rate", (16001, 44101, 7999, 96001))
def test_odd_rate_wav_reads_as_a_clip(fsdd, tmp_path, audio, rate):
    path = audio.write_wav(tmp_path / f"odd_{rate}.wav", audio.tone(0.2, rate, 300, 600), rate)
    x, notes = fsdd.read_file(path)
    assert x.shape == fsdd.input_shape and torch.isfinite(x).all()
    assert f"resampled {rate} Hz to 16000 Hz" in notes


def test_a_rate_too_low_for_speech_is_noted(fsdd, tmp_path, audio):
    path = audio.write_wav(tmp_path / "low.wav", audio.tone(0.5, 2000, 300), 2000)
    x, notes = fsdd.read_file(path)
    assert torch.isfinite(x).all()
    assert any("too low a sample rate for speech" in n for n in notes)


# -- odd and broken files -----------------------------------------------------------------------


@pytest.mark.parametrize("subtype", ["PCM_U8", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"])
def test_every_wav_sample_format_reads(fsdd, tmp_path, audio, subtype):
    path = tmp_path / f"{subtype}.wav"
    soundfile.write(str(path), audio.tone(0.5, 16000, 300, 900, channels=2), 16000, subtype=subtype)
    x, notes = fsdd.read_file(path)
    assert x.shape == fsdd.input_shape and torch.isfinite(x).all()
    assert "mixed 2 channels to mono" in notes


def test_float_samples_beyond_full_scale_are_scaled_with_a_note(fsdd, tmp_path, audio):
    wave = audio.tone(0.5, 16000, 300, 900)
    path = tmp_path / "hot.wav"
    soundfile.write(str(path), wave * 1e30, 16000, subtype="FLOAT")
    x, notes = fsdd.read_file(path)
    assert torch.isfinite(x).all() and any(n.startswith("scaled samples peaking at 6.34e+29") for n in notes)
    soundfile.write(str(path), wave, 16000, subtype="FLOAT")
    assert torch.allclose(fsdd.read_file(path)[0], x, atol=1e-3)  # the level does not matter


def test_clipped_and_silent_audio_are_noted(fsdd, tmp_path, audio):
    clipped = np.clip(audio.tone(0.5, 16000, 300) * 10, -1, 1)
    _, notes = fsdd.read_file(audio.write_wav(tmp_path / "clipped.wav", clipped, 16000))
    assert any(n.startswith("the audio looks clipped") for n in notes)
    _, notes = fsdd.read_file(audio.write_wav(tmp_path / "plain.wav", audio.tone(0.5, 16000, 300), 16000))
    assert not any("clipped" in n for n in notes)
    x, notes = fsdd.read_file(audio.write_wav(tmp_path / "silent.wav", np.zeros(8000, np.float32), 16000))
    assert "the audio is silent" in notes and torch.isfinite(x).all()


def test_a_very_long_file_is_refused_before_it_is_decoded(fsdd, tmp_path):
    path = tmp_path / "long.wav"
    soundfile.write(str(path), np.zeros(int(F.MAX_SECONDS * 100) + 1, np.float32), 100, subtype="PCM_16")
    with pytest.raises(InputFileError) as err:
        fsdd.read_file(path)
    assert "too long" in _one_line_naming(err, path)


def test_a_rate_above_384_khz_is_refused(fsdd, tmp_path):
    path = tmp_path / "fast.wav"
    soundfile.write(str(path), np.zeros(100, np.float32), 500_000, subtype="PCM_16")
    with pytest.raises(InputFileError) as err:
        fsdd.read_file(path)
    assert "sample rate 500000 Hz" in _one_line_naming(err, path)


def _wav_header(rate: int, channels: int, bits: int, data_bytes: int) -> bytes:
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", 1, channels, rate, (rate * block) & 0xFFFFFFFF, block, bits)
    return (b"RIFF" + struct.pack("<I", 0xFFFFFFF0) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt
            + b"data" + struct.pack("<I", data_bytes))


@pytest.mark.parametrize("header", [
    _wav_header(16000, 1, 16, 0xFFFFFFF0),  # claims 4 GB of audio
    _wav_header(0, 1, 16, 2000),  # rate 0
    _wav_header(16000, 0, 16, 2000),  # no channels
    _wav_header(0xFFFFFFFF, 1, 16, 2000),  # a rate of 4 GHz
    b"RIFF\x00\x00\x00\x00WAVEjunk\xff\xff\xff\xff",  # a chunk longer than the file
])
def test_lying_wav_headers_are_input_file_errors(fsdd, tmp_path, header):
    path = tmp_path / "liar.wav"
    path.write_bytes(header + bytes(2000))
    with pytest.raises(InputFileError) as err:
        fsdd.read_file(path)
    _one_line_naming(err, path)


@pytest.mark.parametrize("kind", ["directory", "fifo", "binary"])
def test_things_named_wav_that_are_not_audio(fsdd, tmp_path, kind):
    path = tmp_path / "x.wav"
    if kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        path.write_bytes(bytes(range(256)) * 20)
    result = {}
    # A FIFO opened for reading would block until a writer comes: run it where a hang shows.
    reader = threading.Thread(target=lambda: result.setdefault("error", _error_of(fsdd.read_file, path)), daemon=True)
    reader.start()
    reader.join(timeout=30)
    assert not reader.is_alive(), f"reading a {kind} hung"
    assert isinstance(result["error"], InputFileError) and str(path) in str(result["error"])


def _error_of(function, *args):
    try:
        function(*args)
    except Exception as exc:  # noqa: BLE001 - the test inspects it
        return exc
    return None


# -- notes ------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_samples, rate", [(15999, 16000), (16001, 16000), (383999, 384000), (1, 16000)])
def test_length_notes_never_read_as_nothing(num_samples, rate):
    note = F.length_note(num_samples, rate)
    assert note and "0.00 s" not in note and not note.startswith(("padded 1.00 s", "trimmed 1.00 s"))


def test_trim_notes_skip_the_unframed_tail_and_never_say_zero():
    assert F.trim_note(0, 16000) is None
    assert F.trim_note(159, 16000) is None  # less than a 10 ms frame: only the tail trim_silence always drops
    assert F.trim_note(160, 16000) == "cut 0.01 s of silence around the speech"
    assert F.trim_note(3, 50) == "cut 0.06 s of silence around the speech"


def test_read_file_makes_no_zero_amount_notes(fsdd, tmp_path, audio):
    # loud to the last sample, with a few samples past the last whole 10 ms frame
    path = audio.write_wav(tmp_path / "tail.wav", np.sin(np.arange(8003) * 0.3).astype(np.float32) * 0.5, 8000)
    _, notes = fsdd.read_file(path)
    assert not any("0.00 s" in n for n in notes) and not any(n.startswith("cut") for n in notes)


# -- writing --------------------------------------------------------------------------------------


def _writers(tmp_path):
    wave, x = torch.zeros(1600), torch.zeros(1, 40, 101)
    return [lambda p: F.write_wav(p, wave), lambda p: F.write_mfcc_png(p, x)]


@pytest.mark.parametrize("writer", [0, 1])
def test_writes_are_all_or_nothing(tmp_path, monkeypatch, writer):
    write = _writers(tmp_path)[writer]
    path = tmp_path / "out.bin"
    path.write_bytes(b"the old file")

    def disk_full(*args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(ModgraphError) as err:
        write(path)
    assert _one_line_naming(err, path).endswith("No space left on device")
    assert path.read_bytes() == b"the old file" and sorted(tmp_path.iterdir()) == [path]  # no temporary left
    monkeypatch.undo()
    write(path)
    assert path.read_bytes() != b"the old file" and sorted(tmp_path.iterdir()) == [path]


@pytest.mark.parametrize("writer", [0, 1])
def test_a_name_at_the_file_system_limit_writes(tmp_path, writer):
    path = tmp_path / ("n" * 251 + ".wav")  # 255 bytes: no room for a temporary name built from it
    assert _writers(tmp_path)[writer](path) == path and path.stat().st_size > 0


@pytest.mark.parametrize("writer", [0, 1])
@pytest.mark.parametrize("target", ["directory", "under_a_file", "fifo", "too_long", "unwritable"])
def test_unwritable_targets_are_one_line_errors(tmp_path, writer, target):
    path = {"directory": tmp_path / "folder.wav", "under_a_file": tmp_path / "file" / "out.wav",
            "fifo": tmp_path / "pipe.wav", "too_long": tmp_path / ("n" * 300 + ".wav"),
            "unwritable": tmp_path / "locked" / "out.wav"}[target]
    if target == "directory":
        path.mkdir()
    elif target == "under_a_file":
        (tmp_path / "file").write_text("a file, not a folder")
    elif target == "fifo":
        os.mkfifo(path)  # never opened: were it, the test would hang
    elif target == "unwritable":
        if os.geteuid() == 0:
            pytest.skip("root writes into read-only folders")
        path.parent.mkdir(mode=0o500)
    with pytest.raises(ModgraphError) as err:
        _writers(tmp_path)[writer](path)
    _one_line_naming(err, path)
    if target == "fifo":
        assert stat.S_ISFIFO(os.lstat(path).st_mode)


def test_write_file_leaves_no_wav_when_its_picture_cannot_be_written(fsdd, tmp_path, wav_8k):
    x, _ = fsdd.read_file(wav_8k)
    folder = tmp_path / "out"
    path = folder / ("n" * 248 + ".wav")  # 252 bytes; its picture's name, n...n.mfcc.png, would be 257
    with pytest.raises(ModgraphError) as err:
        fsdd.write_file(x, path)
    assert "mfcc.png" in str(err.value) and "\n" not in str(err.value)
    assert list(folder.iterdir()) == []


def test_a_wav_whose_name_is_not_utf8_reads_like_any_other(fsdd, tmp_path, wav_8k):
    named = tmp_path / os.fsdecode(b"caf\xe9-\xff.wav")
    named.write_bytes(wav_8k.read_bytes())
    x, notes = fsdd.read_file(named)
    expected, expected_notes = fsdd.read_file(wav_8k)
    assert torch.equal(x, expected) and notes == expected_notes
