"""The fsdd modality: descriptor, data loading, normalisation, augmentation, file I/O."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile
import torch
from PIL import Image

import modgraph_audio
from modgraph.errors import ConfigError, DataNotFoundError, InputFileError
from modgraph.learning.models import VAE, Recognizer
from modgraph.plugins import PluginHost
from modgraph_audio import FSDD
from modgraph_audio import features as F
from modgraph_audio.gsc import GSC
from modgraph_audio.speech import SpeechOptions
from modgraph_audio.measure_profiles import profile_of
from modgraph_audio.speech_profiles import FSDD_PROFILE, GSC_PROFILE


@pytest.fixture
def fsdd():
    return FSDD()


def test_plugin_registers_fsdd():
    host = PluginHost(load_entry_points=False)
    host.add_plugin(modgraph_audio, name="audio", distribution="modgraph-audio", version="0.1.0")
    modality = host.get("fsdd")
    assert modality.class_names == [str(d) for d in range(10)]
    assert modality.concepts[7] == "seven"
    assert modality.input_shape == (1, 49, 101)  # 40 MFCCs, then the speech embedding's 9 rows
    assert modality.reconstruction_loss == "mse"


def test_architectures_build_for_the_feature_shape(fsdd):
    x = torch.randn(2, *fsdd.input_shape)
    vae = VAE(fsdd.vae_config(16))
    assert vae.decode(vae.encode(x)[0]).shape == x.shape
    assert Recognizer(fsdd.recognizer_config())(x).shape == (2, 10)


def test_test_split_is_takes_0_to_4_with_speaker_groups(fsdd, fsdd_root, audio):
    test = fsdd.load_features(fsdd_root, "test")
    n = len(audio.speakers) * len(audio.digits) * 5
    assert test.x.shape == (n, *fsdd.input_shape) and test.x.dtype == torch.float32
    assert torch.isfinite(test.x).all()
    assert not test.augmented.any()
    assert torch.equal(test.origin, torch.arange(n))
    assert sorted(set(test.groups["speaker"])) == sorted(audio.speakers)
    assert sorted(test.y.unique().tolist()) == list(audio.digits)


def test_train_split_adds_seeded_augmented_copies(fsdd_root, audio):
    fsdd = FSDD().with_options({"augment_copies": 2})
    train = fsdd.load_features(fsdd_root, "train")
    n = len(audio.speakers) * len(audio.digits) * 2  # takes 5 and 6
    assert len(train) == 3 * n
    assert int((~train.augmented).sum()) == n and int(train.augmented.sum()) == 2 * n
    originals = (~train.augmented).nonzero().flatten()
    assert torch.equal(train.origin[originals], originals)
    copies = train.augmented.nonzero().flatten()
    assert torch.equal(train.y[copies], train.y[train.origin[copies]])
    speakers = train.groups["speaker"]
    assert all(speakers[i] == speakers[train.origin[i]] for i in copies.tolist())
    assert not torch.allclose(train.x[copies[0]], train.x[train.origin[copies[0]]])
    again = fsdd.load_features(fsdd_root, "train")
    assert torch.equal(train.x, again.x)  # cached features must be reproducible
    other_seed = FSDD().with_options({"augment_copies": 2, "augment_seed": 1}).load_features(fsdd_root, "train")
    assert not torch.equal(train.x[copies], other_seed.x[copies])


def test_vtlp_warps_only_the_copies_and_is_part_of_the_cache_key(fsdd_root, audio):
    plain = FSDD().with_options({"augment_copies": 2, "vtlp": 0}).load_features(fsdd_root, "train")
    warped = FSDD().with_options({"augment_copies": 2, "vtlp": 0.2}).load_features(fsdd_root, "train")
    originals, copies = ~plain.augmented, plain.augmented
    assert torch.equal(warped.x[originals], plain.x[originals])
    assert not torch.allclose(warped.x[copies], plain.x[copies])
    assert FSDD().with_options({"vtlp": 0}).cache_key() != FSDD().cache_key()
    assert FSDD().options.vtlp == 0.2 and GSC().options.vtlp == 0  # gsc's 300-clip sample cannot measure it
    with pytest.raises(ConfigError, match="vtlp"):
        FSDD().with_options({"vtlp": 0.5})


def test_augment_copies_option_is_validated_and_zero_turns_augmentation_off(fsdd_root, audio):
    train = FSDD().with_options({"augment_copies": 0}).load_features(fsdd_root, "train")
    assert not train.augmented.any() and len(train) == len(audio.speakers) * len(audio.digits) * 2
    with pytest.raises(ConfigError, match="augment_copies"):
        FSDD().with_options({"augment_copies": -1})
    assert FSDD().with_options({"augment_copies": 3}).cache_key() != FSDD().cache_key()


def test_missing_data_names_the_folder_and_the_download_flag(fsdd, tmp_path):
    with pytest.raises(DataNotFoundError) as err:
        fsdd.load_features(tmp_path, "train")
    message = str(err.value)
    assert str(tmp_path / "fsdd" / "recordings") in message and "--download" in message


def test_unknown_split_is_a_config_error(fsdd, fsdd_root):
    with pytest.raises(ConfigError, match="validation"):
        fsdd.load_features(fsdd_root, "validation")


def test_normalize_denormalize_round_trip(fsdd, fsdd_root):
    x = fsdd.load_features(fsdd_root, "test").x
    stats = fsdd.fit_normalization(x)
    json.dumps(stats)  # stored in safetensors metadata as JSON
    assert len(stats["mean"]) == len(stats["std"]) == 40
    assert len(stats["embedding_mean"]) == len(stats["embedding_std"]) == 96
    z = fsdd.normalize(x, stats)
    per_coefficient = z[:, 0, :40].transpose(0, 1).reshape(40, -1)
    assert per_coefficient.mean(dim=1).abs().max() < 1e-3
    assert (per_coefficient.std(dim=1) - 1).abs().max() < 1e-2
    per_value = z[:, 0, 40:, :96].permute(2, 0, 1).reshape(96, -1)  # each embedding value over clips and windows
    assert per_value.mean(dim=1).abs().max() < 1e-3
    assert torch.equal(z[:, 0, 40:, 96:], x[:, 0, 40:, 96:])  # the rows' padding stays zero
    assert torch.allclose(fsdd.denormalize(z, stats), x, atol=1e-3)
    with pytest.raises(ConfigError):
        fsdd.normalize(x, {})


def test_augment_batch_masks_spans_and_keeps_the_input(fsdd):
    x = torch.randn(32, 1, 40, 101)
    before = x.clone()
    out = fsdd.augment_batch(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and torch.equal(x, before)
    assert (out == 0).any() and (out == 0).float().mean() < 0.4
    assert torch.equal(out[:, :, 0][out[:, :, 0] != 0], x[:, :, 0][out[:, :, 0] != 0])
    assert torch.equal(out, fsdd.augment_batch(x, torch.Generator().manual_seed(0)))


def test_read_file_returns_features_and_conversion_notes(fsdd, tmp_path, audio):
    path = audio.write_wav(tmp_path / "stereo.wav", audio.tone(0.42, 8000, 300, 700, channels=2), 8000)
    x, notes = fsdd.read_file(path)
    assert x.shape == fsdd.input_shape and x.dtype == torch.float32
    assert "resampled 8000 Hz to 16000 Hz" in notes
    assert "mixed 2 channels to mono" in notes
    assert any(n.startswith("padded 0.42 s to 1.00 s") for n in notes)
    long = audio.write_wav(tmp_path / "long.flac", audio.tone(1.3, 16000, 300), 16000)
    _, notes = fsdd.read_file(long)
    assert notes == ["trimmed 1.30 s to its central 1.00 s"]


def test_read_files_matches_read_file(fsdd, tmp_path, wav_8k, audio):
    other = audio.write_wav(tmp_path / "other.wav", audio.tone(0.8, 22050, 500, 200), 22050)
    batch, notes = fsdd.read_files([wav_8k, other])
    for i, path in enumerate([wav_8k, other]):
        x, n = fsdd.read_file(path)
        assert torch.allclose(batch[i], x, atol=1e-3) and notes[i] == n


def test_features_do_not_depend_on_loudness(fsdd, tmp_path, audio):
    wave = audio.tone(0.6, 16000, 250, 600)
    loud, _ = fsdd.read_file(audio.write_wav(tmp_path / "loud.wav", wave, 16000))
    quiet, _ = fsdd.read_file(audio.write_wav(tmp_path / "quiet.wav", wave * 0.05, 16000))
    assert torch.corrcoef(torch.stack([loud.flatten(), quiet.flatten()]))[0, 1] > 0.99


@pytest.mark.parametrize("content", ["missing", "empty", "no_frames", "truncated", "text"])
def test_unreadable_files_raise_input_file_error(fsdd, tmp_path, wav_8k, content, audio):
    path = tmp_path / f"{content}.wav"
    if content == "empty":
        path.write_bytes(b"")
    elif content == "no_frames":
        audio.write_wav(path, np.zeros(0, dtype=np.float32), 8000)
    elif content == "truncated":
        data = wav_8k.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif content == "text":
        path.write_text("digit,label\n7,seven\n")
    with pytest.raises(InputFileError) as err:
        fsdd.read_file(path)
    message = str(err.value)
    assert str(path) in message and "\n" not in message and "expected" in message


def test_write_file_writes_a_16k_wav_and_a_png(fsdd, tmp_path, wav_8k):
    x, _ = fsdd.read_file(wav_8k)
    written = fsdd.write_file(x, tmp_path / "new" / "out.wav")  # a folder that does not exist yet
    assert written == [tmp_path / "new" / "out.wav", tmp_path / "new" / "out.mfcc.png"]
    info = soundfile.info(str(written[0]))
    assert (info.samplerate, info.channels, info.frames, info.subtype) == (16000, 1, 16000, "PCM_16")
    with Image.open(written[1]) as image:
        assert image.format == "PNG" and image.size[0] > image.size[1]


def test_write_file_takes_scale_and_ignores_it(fsdd, tmp_path, wav_8k):
    x, _ = fsdd.read_file(wav_8k)
    plain = fsdd.write_file(x, tmp_path / "a.wav")
    scaled = fsdd.write_file(x, tmp_path / "b.wav", scale=4)  # translate --scale is for image outputs
    assert plain[0].read_bytes() == scaled[0].read_bytes()
    with Image.open(plain[1]) as small, Image.open(scaled[1]) as picture:  # labelled with the wav's name
        assert small.size == picture.size


def test_picture_is_a_labelled_mel_spectrogram(fsdd, wav_8k):
    x, _ = fsdd.read_file(wav_8k)
    picture = np.asarray(fsdd.picture(x))
    assert picture.shape == (14 + 2 * F.N_MELS, 2 * F.N_FRAMES, 3) and picture.dtype == np.uint8
    assert (picture[:14].min(axis=2) < 100).any()  # the label, in black on a white band
    spectrogram = picture[14:].astype(int)
    floor = F.mel_image(torch.full((F.N_MELS, F.N_FRAMES), -F.TOP_DB)).getpixel((0, 0))
    assert spectrogram.sum(axis=2).max() > 2 * sum(floor)  # the tone is brighter than the -80 dB floor
    silence = np.asarray(F.mel_image(torch.full((F.N_MELS, F.N_FRAMES), -F.TOP_DB)))
    assert (silence == floor).all()


def test_resynthesised_wav_has_correlated_mfcc(fsdd, tmp_path, wav_8k):
    fsdd = fsdd.with_options({"trim_db": 0})  # frame by frame: reading back must not re-centre the word
    x, _ = fsdd.read_file(wav_8k)
    wav, _ = fsdd.write_file(x, tmp_path / "again.wav")
    y, _ = fsdd.read_file(wav)
    x, y = x[:, :40], y[:, :40]  # the MFCCs (the speech embedding's rows follow)
    # Coefficient 0 (level) dominates any correlation, so compare the spectral shape too: with
    # what was synthesised (x restored to FSDD's speech profile, as reading it normalises it).
    assert torch.corrcoef(torch.stack([x.flatten(), y.flatten()]))[0, 1] > 0.95
    synthesised = F.cepstral_mean_norm(F.restore_speech(x, FSDD_PROFILE)[0])
    assert torch.corrcoef(torch.stack([synthesised[0, 1:].flatten(), y[0, 1:].flatten()]))[0, 1] > 0.8
    assert torch.corrcoef(torch.stack([synthesised[0, 1:].flatten(), x[0, 1:].flatten()]))[0, 1] > 0.9


def _high_to_low_band_db(path) -> float:
    """Power above 4.5 kHz against power in 0.3-3 kHz, in dB, of a wav."""
    wave, rate = soundfile.read(str(path), dtype="float32")
    power = torch.stft(torch.from_numpy(wave), 512, 160, 400, torch.hann_window(400),
                       return_complex=True).abs().pow(2).sum(dim=-1)
    hz = torch.arange(len(power)) * rate / 512
    return 10 * torch.log10(power[(hz > 4500) & (hz < 7500)].mean() / power[(hz > 300) & (hz < 3000)].mean()).item()


def test_written_speech_gets_fsdd_s_long_term_spectrum_back(fsdd, tmp_path, audio):
    # White noise has a flat spectrum, and mean normalisation removes what tilt is left; FSDD's
    # recordings (8 kHz) hold nothing above 4 kHz, and the wavs written for fsdd should not either.
    noise = np.zeros(8000, dtype=np.float32)
    noise[2000:6000] = 0.3 * np.random.default_rng(0).standard_normal(4000)
    x, _ = fsdd.read_file(audio.write_wav(tmp_path / "noise.wav", noise, 8000))
    plain = F.write_wav(tmp_path / "plain.wav", F.mfcc_to_waveform(x[:, :40])[0])
    assert _high_to_low_band_db(plain) > -15  # inverted as it is: as much hiss above 4 kHz as sound below
    written, _ = fsdd.write_file(x, tmp_path / "written.wav")
    assert _high_to_low_band_db(written) < -30
    assert FSDD.speech_profile is FSDD_PROFILE and GSC.speech_profile is GSC_PROFILE


def test_profile_of_recordings_is_the_mean_that_normalisation_removes(fsdd_root):
    paths = sorted((fsdd_root / "fsdd" / "recordings").glob("*.wav"))[:6]
    profile = profile_of(paths, "fixture")
    raw, _ = FSDD().with_options({"mean_norm": False}).read_files(paths)
    normalised, _ = FSDD().read_files(paths)
    raw, normalised = raw[:, :, :40], normalised[:, :, :40]  # the MFCCs (the speech embedding's rows follow)
    sounding = raw[:, 0, 0] > -640 + 1  # (clips, frames)
    removed = torch.stack([(raw - normalised)[i, 0, 1:, sounding[i]].mean(dim=1) for i in range(len(paths))])
    torch.testing.assert_close(torch.tensor(profile.envelope), removed.mean(0), atol=0.01, rtol=0)
    spread = torch.stack([raw[i, 0][:, sounding[i]].std(dim=1, unbiased=False) for i in range(len(paths))])
    torch.testing.assert_close(torch.tensor(profile.spread), spread.mean(0), atol=0.01, rtol=0)


def test_cepstral_mean_normalisation_is_the_default_and_optional(tmp_path, wav_8k):
    x, _ = FSDD().read_file(wav_8k)
    raw, _ = FSDD().with_options({"mean_norm": False}).read_file(wav_8k)
    x, raw = x[:, :40], raw[:, :40]  # the MFCCs (the speech embedding's rows follow)
    sounding = raw[0, 0] > -640 + 1
    assert x[0, 1:, sounding].mean(dim=1).abs().max() < 1e-3
    assert raw[0, 1:, sounding].mean(dim=1).abs().max() > 1.0
    assert torch.equal(x[0, 0], raw[0, 0])  # level and padding untouched
    assert torch.equal(x[0, 1:, ~sounding], raw[0, 1:, ~sounding])


def test_cepstral_variance_normalisation_gives_each_coefficient_unit_spread(tmp_path, wav_8k, audio):
    x, _ = FSDD().read_file(wav_8k)
    vn = FSDD().with_options({"var_norm": True})
    y, _ = vn.read_file(wav_8k)
    x, y = x[:, :40], y[:, :40]  # the MFCCs (the speech embedding's rows follow)
    sounding = x[0, 0] > -640 + 1
    assert (~sounding).any()  # the fixture is padded: silent frames must stay silent
    torch.testing.assert_close(y[0, 1:].pow(2).mean(dim=1), torch.ones(39), atol=2e-3, rtol=0)
    assert torch.equal(y[0, 0], x[0, 0])  # the level is kept
    assert y[0, 1:, ~sounding].abs().max() < 1e-3  # silence stays (numerically) zero
    # a louder and a quieter speaker alike: the spread is gone, the shape over time stays
    torch.testing.assert_close(y[0, 1:], x[0, 1:] / x[0, 1:].pow(2).mean(dim=1, keepdim=True).sqrt(),
                               atol=1e-2, rtol=1e-3)
    assert "var_norm" in vn.cache_key() and vn.cache_key() != FSDD().cache_key()


def test_variance_normalised_outputs_are_written_with_a_speech_spread(tmp_path, wav_8k):
    vn = FSDD().with_options({"var_norm": True, "trim_db": 0})  # frame by frame, as written
    x, _ = vn.read_file(wav_8k)
    wav, png = vn.write_file(x, tmp_path / "vn.wav")
    assert soundfile.info(str(wav)).frames == 16000 and png.exists()
    back = F.undo_variance_norm(x[:, :40], torch.tensor(FSDD_PROFILE.spread[1:]))
    speech = F.speech_frames(back)[0]
    spread = back[0, 1:, speech].std(dim=1, unbiased=False)
    # the profile's spread over the speech frames, within the clip's own variation
    ratio = spread / torch.tensor(FSDD_PROFILE.spread[1:])
    assert 0.5 < ratio.median() < 2.0
    again, _ = vn.read_file(wav)  # what was written reads back close to what went in
    assert torch.corrcoef(torch.stack([x[0, 1:40].flatten(), again[0, 1:40].flatten()]))[0, 1] > 0.6


def test_trimming_centres_the_word_whenever_it_was_said(tmp_path, audio):
    word = audio.tone(0.3, 8000, 300, 900)
    early = audio.write_wav(tmp_path / "early.wav", np.concatenate([np.zeros(400), word, np.zeros(4000)]), 8000)
    late = audio.write_wav(tmp_path / "late.wav", np.concatenate([np.zeros(4000), word, np.zeros(400)]), 8000)
    plain = FSDD().with_options({"trim_db": 0})
    (a, b), _ = plain.read_files([early, late])
    assert (a - b).abs().max() > 10  # as recorded: the word sits at different frames
    trim = FSDD()
    assert trim.options.trim_db == 30  # fsdd's default (gsc's clips are kept as recorded)
    assert GSC().options.trim_db == 0
    (a, b), notes = trim.read_files([early, late])
    torch.testing.assert_close(a, b, atol=1e-2, rtol=1e-3)  # cut and centred: the same clip
    assert any(n.startswith("cut 0.5") and "silence" in n for n in notes[0])
    assert trim.cache_key() != plain.cache_key()


def test_download_extracts_only_the_recordings(tmp_path, wav_8k, monkeypatch):
    # A local archive shaped like the GitHub release, fetched through a file:// URL: no network.
    import shutil
    import tarfile

    from modgraph_audio import fsdd as fsdd_module
    from modgraph_audio.fsdd import download_fsdd

    archive = tmp_path / "release.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(wav_8k, arcname="free-spoken-digit-dataset-1.0.10/recordings/3_carol_7.wav")
        tar.add(wav_8k, arcname="free-spoken-digit-dataset-1.0.10/recordings/3_carol_1.wav")
        tar.add(wav_8k, arcname="free-spoken-digit-dataset-1.0.10/utils/noise.wav")
    root = tmp_path / "data"
    with pytest.raises(DataNotFoundError, match="not FSDD v1.0.10's .2 wavs.*expected 3000"):
        download_fsdd(root, url=archive.as_uri())  # not the release's files: refused, nothing kept
    assert not (root / "fsdd" / "recordings").exists() and not list((root / "fsdd").iterdir())
    staged = tmp_path / "staged"
    staged.mkdir()
    for name in ("3_carol_1.wav", "3_carol_7.wav"):
        shutil.copy(wav_8k, staged / name)
    monkeypatch.setattr(fsdd_module, "RELEASE_RECORDINGS", 2)
    monkeypatch.setattr(fsdd_module, "RELEASE_DIGEST", fsdd_module.recordings_digest(staged)[1])
    target = download_fsdd(root, url=archive.as_uri())
    assert target == root / "fsdd" / "recordings"
    assert sorted(p.name for p in target.iterdir()) == ["3_carol_1.wav", "3_carol_7.wav"]
    assert [p.name for p in (root / "fsdd").iterdir()] == ["recordings"]  # no archive or staging left behind
    assert len(FSDD().with_options({"augment_copies": 0}).load_features(root, "train")) == 1
    with pytest.raises(DataNotFoundError, match="could not download"):
        download_fsdd(tmp_path / "other", url=(tmp_path / "missing.tar.gz").as_uri())


def test_modgraph_conformance_kit(tmp_path, fsdd_root):
    from modgraph.testing import check_modality

    check_modality(FSDD(), tmp_path / "conformance", data_root=fsdd_root, device="meta")
    # var_norm takes its own path through write_file (the spread is put back before resynthesis).
    check_modality(FSDD().with_options({"var_norm": True}), tmp_path / "var-norm", device="meta")


class _CpuMaskFSDD(FSDD):
    """FSDD with the augment_batch of issue 18: the mask is built on the CPU, whatever the batch's device."""

    def augment_batch(self, x, generator=None):
        b = len(x)
        frames, coeffs = torch.arange(x.shape[-1]), torch.arange(x.shape[-2])
        t_len = torch.randint(0, 13, (b, 1), generator=generator)
        t_start = (torch.rand(b, 1, generator=generator) * (x.shape[-1] - t_len)).long()
        c_len = torch.randint(0, 5, (b, 1), generator=generator)
        c_start = 1 + (torch.rand(b, 1, generator=generator) * (x.shape[-2] - 1 - c_len)).long()
        mask = ((frames >= t_start) & (frames < t_start + t_len))[:, None, :] \
            | ((coeffs >= c_start) & (coeffs < c_start + c_len))[:, :, None]
        return x.masked_fill(mask.view(b, *([1] * (x.dim() - 3)), *mask.shape[1:]), 0.0)


def test_the_kit_catches_a_mask_built_on_the_cpu(tmp_path):
    """What crashed `add-modality fsdd` on an H200 fails the kit on a CPU-only machine (issue 18)."""
    from modgraph.testing import check_device_hooks

    check_device_hooks(_CpuMaskFSDD(), tmp_path / "cpu", device="cpu")  # on the CPU nothing shows
    with pytest.raises(AssertionError, match="augment_batch on device meta.*same device"):
        check_device_hooks(_CpuMaskFSDD(), tmp_path / "meta", device="meta")


def test_masks_are_the_same_on_any_device():
    """The spans are drawn on the generator's device, so a seed gives the same masks on the CPU and elsewhere."""
    from modgraph.runtime import simulated_device
    x = torch.randn(6, 1, 40, 101)
    on_cpu = FSDD().augment_batch(x, torch.Generator().manual_seed(3))
    with simulated_device.simulated():
        elsewhere = FSDD().augment_batch(simulated_device.to_device(x), torch.Generator().manual_seed(3))
    assert elsewhere.device.type == "meta" and torch.equal(elsewhere.cpu(), on_cpu)
    # On the CPU the masks are those the old code drew: training runs made before are unchanged.
    assert torch.equal(_CpuMaskFSDD().augment_batch(x, torch.Generator().manual_seed(3)), on_cpu)


def test_band_rate_makes_a_16k_recording_read_like_the_same_one_made_at_8k(tmp_path, audio):
    rate = 16000
    t = np.arange(int(0.6 * rate)) / rate
    speech_band = audio.tone(0.6, rate, 300, 900)
    hiss = (0.2 * np.sin(2 * np.pi * 6000 * t)).astype(np.float32)  # above 4 kHz: never in FSDD's 8 kHz files
    wide = audio.write_wav(tmp_path / "wide.wav", speech_band + hiss, rate)
    narrow = audio.write_wav(tmp_path / "narrow.wav", speech_band, rate)
    banded = FSDD().with_options({"band_rate": 8000})
    (a, b), notes = banded.read_files([wide, narrow])
    torch.testing.assert_close(a, b, atol=0.3, rtol=0)  # the hiss is gone before the features
    (c, d), _ = FSDD().with_options({"band_rate": 0}).read_files([wide, narrow])
    assert (c - d).abs().max() > 5  # without it, the hiss is all over the upper coefficients
    assert FSDD.options_model.model_fields["band_rate"].metadata == SpeechOptions.model_fields["band_rate"].metadata
    assert banded.cache_key() != FSDD().with_options({"band_rate": 0}).cache_key()


def speech_commands_digits(root, audio):
    """Two Speech Commands digit words in torchaudio's layout, one speaker in each held-out list."""
    folder = root / "SpeechCommands" / "speech_commands_v0.01"
    for w, word in enumerate(["zero", "one", "go"]):
        for speaker in ("aaaa0001", "aaaa0002", "aaaa0003", "bbbb0001", "cccc0001"):
            audio.write_wav(folder / word / f"{speaker}_nohash_0.wav", audio.tone(0.5, 16000, 300 + 200 * w), 16000)
    (folder / "testing_list.txt").write_text("zero/bbbb0001_nohash_0.wav\none/bbbb0001_nohash_0.wav\n")
    (folder / "validation_list.txt").write_text("zero/cccc0001_nohash_0.wav\none/cccc0001_nohash_0.wav\n")
    return folder


def test_speech_commands_option_adds_digit_clips_of_training_speakers_only(fsdd_root, audio):
    speech_commands_digits(fsdd_root, audio)
    alone = FSDD().with_options({"speech_commands": 0}).recordings(fsdd_root, "train")
    more = FSDD().with_options({"speech_commands": 2}).recordings(fsdd_root, "train")
    added = list(zip(*(column[len(alone[0]):] for column in more)))
    assert [(p.parent.name, p.name, label, speaker) for p, label, speaker in added] == [
        ("zero", "aaaa0001_nohash_0.wav", 0, "gsc-aaaa0001"), ("zero", "aaaa0002_nohash_0.wav", 0, "gsc-aaaa0002"),
        ("one", "aaaa0001_nohash_0.wav", 1, "gsc-aaaa0001"), ("one", "aaaa0002_nohash_0.wav", 1, "gsc-aaaa0002")]
    assert more[:3] != alone and list(more[0][:len(alone[0])]) == alone[0]
    every = FSDD().with_options({"speech_commands": 100}).recordings(fsdd_root, "train")
    assert {p.name.split("_")[0] for p in every[0][len(alone[0]):]} == {"aaaa0001", "aaaa0002", "aaaa0003"}
    # The test split stays FSDD's own, and the option is part of the cache key.
    assert FSDD().with_options({"speech_commands": 2}).recordings(fsdd_root, "test") == FSDD().recordings(fsdd_root, "test")
    assert FSDD().with_options({"speech_commands": 2}).cache_key() != FSDD().cache_key()


def test_fsdd_reads_in_its_band_by_default_and_learns_its_own_speakers_alone(fsdd_root, audio):
    speech_commands_digits(fsdd_root, audio)
    assert FSDD().options.band_rate == 8000 and FSDD().options.speech_commands == 0
    settled, notes = FSDD().for_data(fsdd_root)
    assert settled.options.speech_commands == 0 and notes == []
    assert FSDD().recordings(fsdd_root, "train") == FSDD().with_options({"speech_commands": 0}).recordings(
        fsdd_root, "train")


def test_speech_commands_option_without_the_data_says_what_to_do(fsdd_root):
    with pytest.raises(DataNotFoundError, match="Speech Commands"):
        FSDD().with_options({"speech_commands": 5}).recordings(fsdd_root, "train")
