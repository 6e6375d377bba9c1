"""The shared speech front end: length fixing, batched MFCCs and their inverse."""

from __future__ import annotations

import numpy as np
import torch

from modgraph_audio import features as F


def test_fit_length_centres_pads_and_crops():
    wave = torch.arange(1, 5, dtype=torch.float32)
    assert F.fit_length(wave, 8).tolist() == [0, 0, 1, 2, 3, 4, 0, 0]
    assert F.fit_length(wave, 8, offset=2).tolist() == [0, 0, 0, 0, 1, 2, 3, 4]
    assert F.fit_length(torch.arange(10.0), 4).tolist() == [3, 4, 5, 6]
    assert F.fit_length(wave, 4, offset=9).tolist() == [0, 0, 0, 0]


def test_to_clips_resamples_every_rate_to_one_second_at_16k(audio):
    waves = [torch.from_numpy(audio.tone(0.5, rate, 440)) for rate in (8000, 16000, 44100)]
    clips = F.to_clips(waves, [8000, 16000, 44100])
    assert clips.shape == (3, 16000)
    # all three hold the same 0.5 s tone, centred: silence at the edges, sound in the middle
    assert clips[:, :3000].abs().max() < 1e-2 and (clips[:, 7000:9000].abs().amax(dim=1) > 0.3).all()


def test_resample_matches_torchaudio_on_every_path():
    import torchaudio.transforms as AT

    gen = torch.Generator().manual_seed(0)
    # 8 -> 16 kHz and 48 -> 16 kHz take the grouped path, 44.1 kHz torchaudio's own; batches and one wave
    for rate, shape in ((8000, (5, 8000)), (8000, (8001,)), (48000, (3, 2, 4800)), (44100, (2, 4410))):
        waves = torch.randn(*shape, generator=gen)
        got = F.resample(waves, rate)
        want = AT.Resample(rate, F.SAMPLE_RATE)(waves)  # what resample computed before its grouped path
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


def test_mfcc_is_batched_and_shaped_as_the_paper(audio):
    clips = F.to_clips([torch.from_numpy(audio.tone(0.6, 16000, f)) for f in (200, 400, 800)], [16000] * 3)
    batch = F.mfcc(clips)
    assert batch.shape == (3, 1, 40, 101)
    assert torch.allclose(batch[1], F.mfcc(clips[1:2])[0], atol=1e-3)
    assert not torch.allclose(batch[0], batch[2])


def test_silence_gives_finite_features():
    x = F.mfcc(torch.zeros(1, 16000))
    assert torch.isfinite(x).all()
    assert torch.isfinite(F.mfcc_to_waveform(x)).all()


def test_inverse_dct_recovers_the_smoothed_log_mel(audio):
    clips = F.to_clips([torch.from_numpy(audio.tone(0.7, 16000, 300, 1200))], [16000])
    mel = F.mel_db(clips)
    again = F.mfcc_to_mel_db(F.mfcc(clips))
    assert again.shape == mel.shape == (1, 64, 101)
    assert np.corrcoef(mel.flatten(), again.flatten())[0, 1] > 0.97


def test_waveform_round_trip_keeps_the_mfcc(audio):
    clips = F.to_clips([torch.from_numpy(audio.tone(0.6, 8000, 250, 900))], [8000])
    x = F.mfcc(clips)
    wave = F.mfcc_to_waveform(x)
    assert wave.shape == (1, 16000) and wave.abs().max() <= 0.9 + 1e-6
    assert torch.equal(wave, F.mfcc_to_waveform(x))  # seeded phase: reproducible
    y = F.mfcc(wave)
    assert np.corrcoef(x[0, 0, 1:].flatten(), y[0, 0, 1:].flatten())[0, 1] > 0.8


def test_png_picture(tmp_path, audio):
    x = F.mfcc(F.to_clips([torch.from_numpy(audio.tone(0.5, 16000, 300))], [16000]))[0]
    path = F.write_mfcc_png(tmp_path / "m.png", x)
    from PIL import Image

    with Image.open(path) as image:
        assert image.size == (101 * 4, 40 * 4) and image.mode == "RGB"
