"""The ``spoken`` modality: fsdd plus Speech Commands voices, settled from the data."""

from __future__ import annotations

import pytest
from test_fsdd import speech_commands_digits

from modgraph_audio import FSDD, Spoken


def test_spoken_adds_speech_commands_voices_when_the_release_is_there(fsdd_root, audio):
    assert Spoken().options.speech_commands is None and Spoken().name == "spoken"
    alone, notes = Spoken().for_data(fsdd_root)
    assert alone.options.speech_commands == 0 and "five speakers alone" in notes[0]
    assert alone.recordings(fsdd_root, "train") == FSDD().recordings(fsdd_root, "train")
    speech_commands_digits(fsdd_root, audio)
    settled, notes = Spoken().for_data(fsdd_root)
    assert settled.options.speech_commands == 100 and "up to 100 Speech Commands clips" in notes[0]
    paths, labels, speakers = settled.recordings(fsdd_root, "train")
    fsdd_paths = FSDD().recordings(fsdd_root, "train")[0]
    assert paths[:len(fsdd_paths)] == fsdd_paths
    added = sorted((p.parent.name, s) for p, s in zip(paths[len(fsdd_paths):], speakers[len(fsdd_paths):]))
    # The held-out lists' speakers (bbbb0001, cccc0001) never join; "go" is not a digit.
    assert added == [(w, f"gsc-aaaa000{i}") for w in ("one", "zero") for i in (1, 2, 3)]
    assert settled.recordings(fsdd_root, "test") == FSDD().recordings(fsdd_root, "test")
    chosen, notes = Spoken().with_options({"speech_commands": 0}).for_data(fsdd_root)
    assert chosen.options.speech_commands == 0 and notes == []
    assert Spoken().training_defaults.link_spread_balance is None  # its speakers do not say every digit
    assert Spoken().cache_key() != FSDD().cache_key()


def test_a_spoken_node_stores_the_voices_it_learnt(fsdd_root, audio, tmp_path):
    from modgraph import ModGraph

    speech_commands_digits(fsdd_root, audio)
    mg = ModGraph(registry=tmp_path / "registry", data_root=fsdd_root, cache_dir=tmp_path / "cache", device="cpu",
                  progress=False)
    report = mg.add_modality("spoken", epochs=1, recognizer_epochs=1, latent_dim=4, options={"augment_copies": 0})
    assert any("Speech Commands clips" in n for n in report["notes"])
    header = mg.registry.node_record("spoken")
    assert header.options["speech_commands"] == 100
    rows = header.data["train_rows"] + header.data["val_samples"]
    assert rows == len(FSDD().recordings(fsdd_root, "train")[0]) + 6  # six Speech Commands clips joined
    node = ModGraph(registry=tmp_path / "registry", data_root=tmp_path / "elsewhere", device="cpu").node("spoken")
    assert node.modality.options.speech_commands == 100  # read back from the header, no data needed


@pytest.mark.parametrize("with_voices", [False, True])
def test_modgraph_conformance_kit(tmp_path, fsdd_root, audio, with_voices):
    from modgraph.testing import check_modality

    if with_voices:
        speech_commands_digits(fsdd_root, audio)
    modality, _ = Spoken().for_data(fsdd_root)
    check_modality(modality, tmp_path / "conformance", data_root=fsdd_root, device="meta")
