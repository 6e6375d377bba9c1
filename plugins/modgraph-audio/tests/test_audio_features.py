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


# -- writing model outputs as speech ---------------------------------------------------------

FLOOR_C0 = -F.TOP_DB * F.N_MELS ** 0.5


def _blended(x: torch.Tensor) -> torch.Tensor:
    """What a model trained with MSE outputs for a word said at varying times: the average of shifted copies."""
    return torch.stack([torch.roll(x, s, dims=-1) for s in range(-20, 21, 5)]).mean(0)


def _profile(envelope: float = 5.0, spread: float = 30.0) -> F.SpeechProfile:
    return F.SpeechProfile(envelope=(envelope,) * (F.N_MFCC - 1), spread=(spread,) * F.N_MFCC)


def test_speech_profile_is_the_removed_mean_and_the_spread_over_sounding_frames():
    gen = torch.Generator().manual_seed(0)
    clips = []
    for a, b in ((1.0, 2.0), (3.0, 6.0)):
        x = torch.zeros(F.N_MFCC, F.N_FRAMES)
        x[0] = FLOOR_C0  # silence ...
        s = torch.randn(40, generator=gen)
        s = (s - s.mean()) / s.std(unbiased=False)  # zero mean, unit spread over the 40 sounding frames
        x[:, 30:70] = torch.arange(F.N_MFCC)[:, None] * a + b * s  # ... around 40 frames of sound
        x[0, 30:70] += 200.0  # coefficient 0 well above the floor
        clips.append(x)
    profile = F.speech_profile(torch.stack(clips)[:, None], source="synthetic")
    assert profile.source == "synthetic"
    torch.testing.assert_close(torch.tensor(profile.envelope), torch.arange(1, F.N_MFCC) * 2.0, atol=0.01, rtol=0)
    torch.testing.assert_close(torch.tensor(profile.spread), torch.full((F.N_MFCC,), 4.0), atol=0.01, rtol=0)
    # what cepstral mean normalisation removes is the envelope
    removed = torch.stack(clips) - F.cepstral_mean_norm(torch.stack(clips))
    assert torch.allclose(removed[:, 1:, 30:70].mean(dim=(0, 2)), torch.tensor(profile.envelope), atol=0.01)


def test_restore_speech_silences_the_blend_and_restores_spread_and_envelope(audio):
    x = F.mfcc(F.to_clips([torch.from_numpy(audio.tone(0.4, 8000, 300, 1200))], [8000]), mean_norm=True)[:, 0]
    blend = _blended(x)
    assert (blend[0, 0] > FLOOR_C0 + 1).sum() > 70  # the blend never falls silent around the word
    profile = _profile()
    restored, speech = F.restore_speech(blend, profile, mean_norm=False)
    with_envelope, speech_too = F.restore_speech(blend, profile, mean_norm=True)
    assert torch.equal(speech, speech_too) and speech.shape == (1, F.N_FRAMES)
    sounding = x[0, 0] > FLOOR_C0 + 1
    assert speech[0, sounding].all() and speech[0].sum() < 75  # the word, not the blend's long tails
    silent = ~speech[0]
    assert torch.all(restored[0, 0, silent] == FLOOR_C0) and torch.all(restored[0, 1:, silent] == 0)
    spread_before = blend[0][:, speech[0]].std(dim=1, unbiased=False)
    spread_after = restored[0][:, speech[0]].std(dim=1, unbiased=False)
    want = torch.minimum(torch.full_like(spread_before, 30.0), F.MAX_SPREAD_GAIN * spread_before)
    torch.testing.assert_close(spread_after, torch.maximum(spread_before, want), atol=1e-3, rtol=1e-4)
    # mean-normalised features get the profile's envelope back on their speech frames, and only there
    diff = with_envelope[0] - restored[0]
    assert torch.allclose(diff[1:, speech[0]], torch.tensor(5.0)) and torch.all(diff[:, silent] == 0)
    assert torch.all(diff[0] == 0)


def test_restore_speech_leaves_a_real_clip_nearly_as_it_is(audio):
    x = F.mfcc(F.to_clips([torch.from_numpy(audio.tone(0.4, 8000, 300, 1200))], [8000]), mean_norm=True)[:, 0]
    speech = F.speech_frames(x)
    assert speech[0].sum() >= 0.8 * (x[0, 0] > FLOOR_C0 + 1).sum()  # only the quietest edges are cut
    spread = x[0][:, speech[0]].std(dim=1, unbiased=False)  # a clip as spread as the profile's speech
    restored, speech = F.restore_speech(x, F.SpeechProfile(envelope=(0.0,) * 39, spread=tuple(spread.tolist())),
                                        mean_norm=True)
    assert torch.allclose(restored[0][:, speech[0]], x[0][:, speech[0]], atol=1e-3)


def test_speech_gate_is_zero_outside_speech_and_fades_inside_it():
    speech = torch.zeros(1, F.N_FRAMES, dtype=torch.bool)
    speech[0, 40:60] = True
    gate = F.speech_gate(speech)[0]
    assert gate.shape == (F.CLIP_SAMPLES,)
    assert torch.all(gate[: 40 * F.HOP_LENGTH - F.HOP_LENGTH // 2] == 0)
    assert torch.all(gate[60 * F.HOP_LENGTH:] == 0)
    assert torch.all(gate[45 * F.HOP_LENGTH: 55 * F.HOP_LENGTH] > 1 - 1e-5)
    assert gate.diff().abs().max() < 0.02  # no click: it opens and closes over a hundred samples or more


def test_written_speech_reads_back_silent_around_the_word(audio):
    x = F.mfcc(F.to_clips([torch.from_numpy(audio.tone(0.4, 8000, 300, 1200))], [8000]), mean_norm=True)[:, 0]
    blend = _blended(x)
    plain = F.mfcc(F.mfcc_to_waveform(blend))[:, 0]
    assert (plain[0, 0] > FLOOR_C0 + 1).all()  # inverted as it is, the blend hums through the whole second
    wave = F.mfcc_to_waveform(blend, profile=_profile(), mean_norm=True)
    assert torch.equal(wave, F.mfcc_to_waveform(blend, profile=_profile(), mean_norm=True))  # seeded
    _, speech = F.restore_speech(blend, _profile())
    assert torch.all(wave[0][F.speech_gate(speech)[0] == 0] == 0)  # digital silence outside the speech frames
    again = F.mfcc(wave, mean_norm=True)[:, 0]
    sounding = again[0, 0] > FLOOR_C0 + 1
    original = x[0, 0] > FLOOR_C0 + 1
    assert sounding[original].float().mean() > 0.9 and sounding.sum() <= speech.sum() + 2


def test_trim_silence_cuts_to_the_sound(audio):
    rate = 8000
    word = torch.from_numpy(audio.tone(0.3, rate, 300))
    wave = torch.cat([torch.zeros(2000), 1e-4 * torch.randn(1000), word, torch.zeros(3000)])
    cut = F.trim_silence(wave, rate, 30.0)
    assert abs(len(cut) - len(word)) <= 2 * rate // 100  # within a frame at each end
    assert cut.abs().max() == word.abs().max()
    assert len(F.trim_silence(wave, rate, 80.0)) > len(cut)  # a lower threshold keeps the faint noise
    silence = torch.zeros(rate)
    assert torch.equal(F.trim_silence(silence, rate, 30.0), silence)
    assert torch.equal(F.trim_silence(word[:5], rate, 30.0), word[:5])


def test_vtlp_warp_scales_low_frequencies_and_keeps_the_band():
    freqs = torch.linspace(0, F.SAMPLE_RATE / 2, 257)
    assert torch.equal(F.vtlp_frequencies(freqs, 1.0), freqs)
    for warp in (0.85, 1.15):
        warped = F.vtlp_frequencies(freqs, warp)
        assert warped[0] == 0 and abs(float(warped[-1]) - F.SAMPLE_RATE / 2) < 1e-3  # the band stays the band
        assert bool((warped[1:] > warped[:-1]).all())  # no two frequencies swap
        low = freqs < 3000
        assert torch.allclose(warped[low], freqs[low] * warp)


def test_warped_filterbank_moves_a_tone_as_a_longer_vocal_tract_would(audio):
    assert torch.allclose(F._mel_filterbank(1.0 + 1e-9), F._mel_filterbank(1.0), atol=1e-4)  # same filters at 1
    tone = F.to_clips([torch.from_numpy(audio.tone(0.8, 16000, 1000))], [16000])
    higher = F.to_clips([torch.from_numpy(audio.tone(0.8, 16000, 1200))], [16000])
    peak = lambda mel: int(mel[0, :, 50].argmax())  # noqa: E731 (the loudest mel band mid-clip)
    assert peak(F.mel_db(tone, warp=1.2)) == peak(F.mel_db(higher))
    assert peak(F.mel_db(tone)) < peak(F.mel_db(tone, warp=1.2))
