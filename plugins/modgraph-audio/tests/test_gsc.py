"""The gsc modality on a tiny tree in torchaudio's SPEECHCOMMANDS layout."""

from __future__ import annotations

import pytest

from modgraph.errors import ConfigError, DataNotFoundError
from modgraph_audio.fsdd import FSDD
from modgraph_audio.gsc import GSC, WORDS
from modgraph.learning.pairing import class_map


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


def write_uneven_words(root, audio, clips, version="v0.01"):
    """Like the local folder: some words with many training clips, others with few; one test clip each."""
    folder = root / "SpeechCommands" / f"speech_commands_{version}"
    test = []
    for w, (word, n) in enumerate(clips.items()):
        for k in range(n + 1):
            name = f"{k:08x}_nohash_0.wav"
            audio.write_wav(folder / word / name, audio.tone(0.5, 16000, 300 + 150 * w, seed=k), 16000)
            if k == n:
                test.append(f"{word}/{name}")
    (folder / "testing_list.txt").write_text("\n".join(test) + "\n")
    return root


def test_classes_are_the_papers_fourteen_words_in_order():
    gsc = GSC()
    assert [c.name for c in gsc.classes] == WORDS
    assert [c.concept for c in gsc.classes] == WORDS
    assert len(WORDS) == 14 and WORDS[10:] == ["go", "stop", "left", "right"]
    assert gsc.class_numbers == list(range(14))


def test_words_option_sets_the_classes_and_the_recognizer_head():
    gsc = GSC().with_options({"words": "zero, one,five,eight,go,left,right"})
    assert gsc.class_names == ["zero", "one", "five", "eight", "go", "left", "right"]
    assert gsc.recognizer_config().num_classes == 7
    assert gsc.class_numbers == [0, 1, 5, 8, 10, 12, 13]  # the paper's numbering, whatever the list
    assert GSC().with_options({"words": ["yes", "no"]}).class_names == ["yes", "no"]
    for bad, message in [("go,goo", "unknown word"), ("go,go", "more than once"), ("go", "at least 2")]:
        with pytest.raises(ConfigError, match=message):
            GSC().with_options({"words": bad})


def test_words_with_enough_training_clips_are_learnt_and_the_rest_named(tmp_path, audio):
    root = write_uneven_words(tmp_path, audio, {"zero": 4, "go": 5, "left": 4, "stop": 1, "marvin": 6})
    gsc, notes = GSC().with_options({"min_clips": 3}).for_data(root)
    assert gsc.options.words == ["zero", "go", "left"] and gsc.options.version == "v0.01"
    assert gsc.recognizer_config().num_classes == 3
    assert any("v0.01" in n for n in notes)
    said = next(n for n in notes if "left out" in n)
    assert "zero (4), go (5), left (4)" in said and "stop (1)" in said and "--option words=" in said
    train = gsc.with_options({**gsc.options.model_dump(), "augment_copies": 0}).load_features(root, "train")
    assert sorted(set(train.y.tolist())) == [0, 1, 2] and len(train) == 13
    # Chosen words are kept as chosen, in their order; a word without clips is an error.
    chosen, _ = GSC().with_options({"words": "stop,go"}).for_data(root)
    assert chosen.options.words == ["stop", "go"]
    with pytest.raises(DataNotFoundError, match="no training clips of two"):
        GSC().with_options({"words": "go,two"}).for_data(root)
    with pytest.raises(DataNotFoundError, match="min_clips"):
        GSC().for_data(root)  # the default 100: no word has enough


def test_default_finds_the_release_that_is_there_and_says_how_to_choose(tmp_path, audio):
    root = write_speech_commands(tmp_path, audio, version="v0.01")
    assert GSC().folder(root).name == "speech_commands_v0.01"
    assert len(GSC().with_options({"augment_copies": 0}).load_features(root, "train")) == 6
    with pytest.raises(DataNotFoundError, match="v0.02 not found.*v0.01 is there: pass --option version=v0.01"):
        GSC().with_options({"version": "v0.02"}).load_features(root, "train")
    with pytest.raises(DataNotFoundError, match="v0.01 is there: pass --option version=v0.01"):
        GSC().with_options({"version": "v0.02"}).for_data(root)
    with pytest.raises(DataNotFoundError, match="looked for speech_commands_v0.02 and speech_commands_v0.01.*--download"):
        GSC().for_data(tmp_path / "empty")
    # Both releases: v0.02, the paper's, unless chosen.
    write_speech_commands(tmp_path, audio, version="v0.02")
    assert GSC().folder(root).name == "speech_commands_v0.02"
    assert GSC().with_options({"version": "v0.01"}).folder(root).name == "speech_commands_v0.01"


def test_pairs_with_digits_by_concept_and_by_the_papers_index():
    gsc = GSC().with_options({"words": "zero,one,five,eight,go,left,right"})
    digits = FSDD()  # concepts zero..nine, classes 0..9
    assert class_map(gsc, digits, "concept") == {0: 0, 1: 1, 2: 5, 3: 8}
    assert class_map(gsc, digits, "index") == {0: 0, 1: 1, 2: 5, 3: 8}  # "five" with class 5, as in the paper
    assert class_map(digits, gsc, "index") == {0: 0, 1: 1, 5: 2, 8: 3}


def test_pairs_the_commands_with_the_papers_signs():
    gtsrb_module = pytest.importorskip("modgraph_vision.gtsrb")
    signs = gtsrb_module.GTSRB()  # default: Ahead only, No entry, Turn left ahead, Turn right ahead, ...
    gsc = GSC().with_options({"words": "zero,one,five,eight,go,left,right"})
    mapping = class_map(gsc, signs, "concept")
    assert {gsc.class_names[i]: signs.class_names[j] for i, j in mapping.items()} == {
        "go": "Ahead only", "left": "Turn left ahead", "right": "Turn right ahead"}
    full = {GSC().class_names[i]: signs.class_names[j] for i, j in class_map(GSC(), signs, "concept").items()}
    assert full["stop"] == "No entry"  # the paper's pair (round signs only); Stop and Keep left/right pair with nothing


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
        GSC().with_options({"version": "v0.02"}).load_features(root, "train")


def test_modgraph_conformance_kit(tmp_path, audio):
    from modgraph.testing import check_modality

    root = write_speech_commands(tmp_path / "data", audio)
    check_modality(GSC().with_options({"version": "v0.01"}), tmp_path / "conformance", data_root=root,
                   device="meta")


def test_datasets_state_their_licences():
    from modgraph_audio import FSDD

    assert FSDD.dataset.name == "Free Spoken Digit Dataset" and FSDD.dataset.licence.startswith("CC BY-SA 4.0; ")
    assert "CC BY-NC-SA 4.0" in FSDD.dataset.licence  # the speech embedding's, said on the card
    assert (GSC.dataset.name, GSC.dataset.licence) == ("Speech Commands", "CC BY 4.0")
    

def test_a_node_stores_the_words_it_learnt_and_graph_names_them(tmp_path, audio, monkeypatch):
    from click.testing import CliRunner

    from modgraph import ModGraph
    from modgraph.app.cli import main

    root = write_uneven_words(tmp_path / "data", audio, {"zero": 4, "five": 4, "go": 4, "stop": 1})
    mg = ModGraph(registry=tmp_path / "registry", data_root=root, cache_dir=tmp_path / "cache", device="cpu",
                  progress=False)
    report = mg.add_modality("gsc", epochs=1, recognizer_epochs=1, latent_dim=4,
                             options={"min_clips": 3, "augment_copies": 0})
    assert any("left out" in n and "stop (1)" in n for n in report["notes"])
    header = mg.registry.node_record("gsc")
    assert header.options["words"] == ["zero", "five", "go"] and header.options["version"] == "v0.01"
    assert [c["name"] for c in header.classes] == ["zero", "five", "go"]
    node = ModGraph(registry=tmp_path / "registry", data_root=tmp_path / "elsewhere", device="cpu").node("gsc")
    assert node.modality.class_names == ["zero", "five", "go"]  # rebuilt from the header, no data needed
    assert node.recognizer.config.num_classes == 3
    from modgraph.runtime.plan import node_changes
    from modgraph.settings import NodeSpec

    spec = dict(epochs=1, recognizer_epochs=1, latent_dim=4, options={"min_clips": 3, "augment_copies": 0})
    assert node_changes(mg, "gsc", NodeSpec(**spec)) == []  # the settled words count as what was asked
    assert node_changes(mg, "gsc", NodeSpec(**{**spec, "options": {"words": "zero,go", "augment_copies": 0}}))
    monkeypatch.setenv("MODGRAPH_REGISTRY", str(tmp_path / "registry"))
    text = CliRunner().invoke(main, ["graph"]).output
    assert "3 classes: zero, five, go" in text and '"words": ["zero", "five", "go"]' in text
