"""The gsc modality on a tiny tree in torchaudio's SPEECHCOMMANDS layout."""

from __future__ import annotations

import pytest

from modgraph.errors import ConfigError, DataNotFoundError
from modgraph_audio.gsc import GSC, WORDS


def write_speech_commands(root, audio, version="v0.01"):
    """``SpeechCommands/speech_commands_{version}/{word}/{speaker}_nohash_{n}.wav`` plus testing_list.txt."""
    folder = root / "SpeechCommands" / f"speech_commands_{version}"
    test = []
    for w, word in enumerate(["go", "stop", "seven", "marvin"]):  # marvin is not one of the 14 words
        for s, speaker in enumerate(["0a1b2c3d", "ffee0011", "12345678"]):
            name = f"{speaker}_nohash_0.wav"
            audio.write_wav(folder / word / name, audio.tone(0.9, 16000, 300 + 200 * w + 30 * s, seed=s), 16000)
            if s == 2:
                test.append(f"{word}/{name}")
    (folder / "testing_list.txt").write_text("\n".join(test) + "\n")
    (folder / "validation_list.txt").write_text("")
    return root


def test_classes_are_the_papers_fourteen_words_in_order():
    gsc = GSC()
    assert [c.name for c in gsc.classes] == WORDS
    assert [c.concept for c in gsc.classes] == WORDS
    assert len(WORDS) == 14 and WORDS[10:] == ["go", "stop", "left", "right"]


def test_splits_follow_the_testing_list_and_keep_only_the_fourteen_words(tmp_path, audio):
    root = write_speech_commands(tmp_path, audio)
    gsc = GSC().with_options({"version": "v0.01", "augment_copies": 0})
    train, test = gsc.load_features(root, "train"), gsc.load_features(root, "test")
    assert train.x.shape == (6, 1, 40, 101) and test.x.shape == (3, 1, 40, 101)
    assert sorted(test.y.tolist()) == sorted([WORDS.index("go"), WORDS.index("stop"), WORDS.index("seven")])
    assert set(test.groups["speaker"]) == {"12345678"}
    assert set(train.groups["speaker"]) == {"0a1b2c3d", "ffee0011"}


def test_training_split_gets_augmented_copies(tmp_path, audio):
    root = write_speech_commands(tmp_path, audio)
    train = GSC().with_options({"version": "v0.01", "augment_copies": 2}).load_features(root, "train")
    assert len(train) == 18 and int(train.augmented.sum()) == 12
    assert (train.y[train.augmented] == train.y[train.origin[train.augmented]]).all()


def test_version_option_is_validated_and_selects_the_folder(tmp_path, audio):
    with pytest.raises(ConfigError, match="version"):
        GSC().with_options({"version": "v3"})
    root = write_speech_commands(tmp_path, audio, version="v0.01")
    with pytest.raises(DataNotFoundError, match="speech_commands_v0.02.*--download"):
        GSC().load_features(root, "train")


def test_modgraph_conformance_kit(tmp_path, audio):
    from modgraph.testing import check_modality

    root = write_speech_commands(tmp_path / "data", audio)
    check_modality(GSC().with_options({"version": "v0.01"}), tmp_path / "conformance", data_root=root,
                   device="meta")


def test_datasets_state_their_licences():
    from modgraph_audio import FSDD

    assert (FSDD.dataset.name, FSDD.dataset.licence) == ("Free Spoken Digit Dataset", "CC BY-SA 4.0")
    assert (GSC.dataset.name, GSC.dataset.licence) == ("Speech Commands", "CC BY 4.0")
