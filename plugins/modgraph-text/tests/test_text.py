"""The ``text`` modality: descriptor, registration, generated features, files, and the conformance kit."""

from __future__ import annotations

import pytest
import torch

import modgraph_text
from modgraph.errors import ConfigError, InputFileError
from modgraph.learning.models import VAE
from modgraph.plugins import PluginHost
from modgraph.testing import check_modality
from modgraph_text import ALPHABET_SIZE, CONCEPTS, MAX_LENGTH, Text, decode, encode

SMALL = {"train_per_class": 20, "test_per_class": 10}


@pytest.fixture
def text():
    return Text().with_options(SMALL)


def test_registers_through_the_hook():
    host = PluginHost(load_entry_points=False)
    host.add_plugin(modgraph_text, name="text", distribution="modgraph-text", version="0.1.0")
    modality = host.get("text")
    assert isinstance(modality, Text)
    assert (modality.distribution, modality.distribution_version) == ("modgraph-text", "0.1.0")
    assert [p.modalities for p in host.plugins()] == [["text"]]


def test_classes_are_concepts_that_pair_with_digits_and_signs():
    modality = Text()
    assert modality.class_names == modality.concepts == CONCEPTS
    assert modality.concepts[:10] == ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    assert modality.input_shape == (MAX_LENGTH, ALPHABET_SIZE)
    assert modality.reconstruction_loss == "bce"
    assert (modality.input_suffixes, modality.output_suffix) == ((".txt",), ".txt")
    assert modality.vae_config(16).architecture == "mlp" and modality.vae_config(16).output == "sigmoid"
    assert modality.recognizer_config().architecture == "mlp"


def test_concepts_pair_with_the_digit_and_sign_modalities():
    """``link --pairing concept`` pairs text with mnist/fsdd digits and the default gtsrb signs."""
    vision = pytest.importorskip("modgraph_vision")
    from modgraph.learning.pairing import class_map

    text = Text()
    assert class_map(text, vision.MNIST(), "concept") == {i: i for i in range(10)}
    assert class_map(text, vision.GTSRB(), "concept") == {10 + i: i for i in range(10)}


def test_conformance_kit(text, tmp_path):
    check_modality(text, tmp_path, device="meta")  # needs_data is false: no data_root needed


def test_load_features_ignores_root_and_is_deterministic(text, tmp_path):
    a = text.load_features(tmp_path / "nowhere", "train")
    b = text.load_features(tmp_path / "elsewhere", "train")
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert a.x.shape == (20 * len(CONCEPTS), MAX_LENGTH, ALPHABET_SIZE) and a.x.dtype == torch.float32
    assert torch.bincount(a.y).tolist() == [20] * len(CONCEPTS)
    assert set(a.groups["variant"]) <= {"word", "digit", "phrase", "typo"}
    assert len(text.load_features(tmp_path, "test")) == 10 * len(CONCEPTS)


def test_options_change_the_data_and_the_cache_key():
    base, other = Text().with_options(SMALL), Text().with_options({**SMALL, "seed": 3})
    assert base.cache_key() != other.cache_key()
    assert not torch.equal(base.load_features(None, "train").x, other.load_features(None, "train").x)
    with pytest.raises(ConfigError, match="typo_rate"):
        Text().with_options({"typo_rate": 2})


def test_variants_option():
    words = Text().with_options({**SMALL, "variants": ["word"]})
    assert set(words.load_features(None, "train").groups["variant"]) == {"word", "typo"}
    # Order and repeats do not change the data, so they do not change the cache key either.
    assert (Text().with_options({"variants": ["phrase", "word", "word"]}).cache_key()
            == Text().with_options({"variants": ["word", "phrase"]}).cache_key())
    # --option variants=word,digit arrives as a string
    assert Text().with_options({"variants": "word, digit"}).options.variants == ["word", "digit"]
    with pytest.raises(ConfigError, match="must include 'word'"):
        Text().with_options({"variants": ["digit"]})
    with pytest.raises(ConfigError, match="variants"):
        Text().with_options({"variants": ["emoji"]})


def test_unknown_split_is_a_config_error(text, tmp_path):
    with pytest.raises(ConfigError, match="'validation'"):
        text.load_features(tmp_path, "validation")


def test_augment_batch_edits_rows_in_place_of_typos():
    modality = Text().with_options({"edit_rate": 1.0})
    x = torch.stack([encode("roundabout")] * 8)
    torch.manual_seed(0)
    out = modality.augment_batch(x)
    assert out.shape == x.shape and any(decode(row) != "roundabout" for row in out)
    assert Text().with_options({"edit_rate": 0.0}).augment_batch(x) is x


# -- files -------------------------------------------------------------------------------

def test_read_file_reads_the_first_non_empty_line(tmp_path):
    path = tmp_path / "word.txt"
    path.write_text("\n  Seven  \nsix\n", encoding="utf-8")
    x, notes = Text().read_file(path)
    assert decode(x) == "seven"
    assert notes == ["used the first of 2 non-empty lines"]


def test_read_file_takes_a_bom_and_notes_accents(tmp_path):
    path = tmp_path / "word.txt"
    path.write_bytes("\ufeffZ\u00e9ro\n".encode("utf-8"))
    x, notes = Text().read_file(path)
    assert decode(x) == "zero" and notes == ["removed accents"]


def test_read_file_truncates_a_long_line_with_a_note(tmp_path):
    path = tmp_path / "long.txt"
    path.write_text("go straight or right and then left\n", encoding="utf-8")
    x, notes = Text().read_file(path)
    assert decode(x) == "go straight or right and"
    assert notes == [f"truncated to {MAX_LENGTH} characters: 'go straight or right and'"]


@pytest.mark.parametrize("content,message", [
    (b"", "holds no text"),
    (b"\n   \n\t\n", "holds no text"),
    (b"\x89PNG\r\n\x1a\n\x00\x00", "not UTF-8"),
    (b"se\x00ven", "looks binary"),
    ("caf\u00e9 \u2603".encode(), "unsupported characters '\u2603'"),
    (b"seven@home", "unsupported characters '@'"),
    (b"x" * (64 * 1024 + 1), "too long"),
])
def test_read_file_errors_name_the_file_in_one_line(tmp_path, content, message):
    path = tmp_path / "input.txt"
    path.write_bytes(content)
    with pytest.raises(InputFileError) as info:
        Text().read_file(path)
    text = str(info.value)
    assert str(path) in text and message in text and "\n" not in text


def test_read_file_on_a_missing_file_or_a_folder(tmp_path):
    with pytest.raises(InputFileError, match="no such file"):
        Text().read_file(tmp_path / "missing.txt")
    with pytest.raises(InputFileError, match="not a file"):
        Text().read_file(tmp_path)


def test_read_text():
    modality = Text()
    assert torch.equal(modality.read_text("  The Number SEVEN "), encode("the number seven"))
    assert decode(modality.read_text("Let\u2019s go!")) == "let's go!"


@pytest.mark.parametrize("literal,message", [
    ("", "is empty"), ("   ", "is empty"), ("seven#", "unsupported characters '#'"),
    ("a" * (MAX_LENGTH + 1), f"at most {MAX_LENGTH}"),
])
def test_read_text_refuses_rather_than_guesses(literal, message):
    with pytest.raises(InputFileError, match=message):
        Text().read_text(literal)


def test_write_file_writes_the_decoded_string(tmp_path):
    path = tmp_path / "out" / "seven.txt"
    assert Text().write_file(encode("stop sign!"), path) == [path]
    assert path.read_text(encoding="utf-8") == "stop sign!\n"
    assert [p.name for p in path.parent.iterdir()] == ["seven.txt"]  # no temporary file left behind
    x, notes = Text().read_file(path)
    assert decode(x) == "stop sign!" and notes == []


def test_write_file_decodes_a_vae_output(tmp_path):
    modality = Text()
    vae = VAE(modality.vae_config(8)).eval()
    with torch.no_grad():
        out = vae.decode(torch.zeros(1, 8))[0]  # probabilities, not one-hot
    path = modality.write_file(out, tmp_path / "sample.txt")[0]
    assert path.read_text(encoding="utf-8") == decode(out) + "\n"


def test_picture_is_the_decoded_string_and_scale_is_ignored(tmp_path):
    assert Text().picture(encode("keep left")) == "keep left"
    path = Text().write_file(encode("keep left"), tmp_path / "k.txt", scale=3)[0]
    assert path.read_text(encoding="utf-8") == "keep left\n"


def test_write_file_refuses_other_shapes(tmp_path):
    with pytest.raises(ValueError, match="shaped"):
        Text().write_file(torch.zeros(1, MAX_LENGTH, ALPHABET_SIZE), tmp_path / "x.txt")


def test_translate_files_reads_literal_text_and_writes_txt(tmp_path):
    """Through the library as the CLI drives it: a tiny node, then ``--text`` in and .txt out."""
    from modgraph import ModGraph

    host = PluginHost(load_entry_points=False)
    host.add_plugin(modgraph_text, name="text", distribution="modgraph-text", version="0.1.0")
    graph = ModGraph(registry=tmp_path / "registry", data_root=tmp_path / "data", cache_dir=tmp_path / "cache",
                     device="cpu", progress=False, plugins=host)
    report = graph.add_modality("text", latent_dim=8, epochs=1, recognizer_epochs=1, options=SMALL)
    assert set(report["metrics"]) >= {"recognizer_accuracy", "reconstruction_accuracy"}
    (tmp_path / "in.txt").write_text("Seven\n", encoding="utf-8")
    result = graph.translate_files("text", "text", [tmp_path / "in.txt"], tmp_path / "out",
                                   texts=["stop sign!"], sheet=tmp_path / "sheet.png")
    assert sorted(p.rsplit("/", 1)[-1] for p in result["written"]) == ["in.txt", "stop-sign.txt"]
    assert result["sheet"]["rows"] == 2 and (tmp_path / "sheet.png").stat().st_size > 0  # a file and a --text
    for path in result["written"]:
        assert (tmp_path / "out" / path.rsplit("/", 1)[-1]).read_text(encoding="utf-8").endswith("\n")


def test_dataset_is_generated():
    assert Text.dataset.licence.startswith("generated") and Text.dataset.url == ""
