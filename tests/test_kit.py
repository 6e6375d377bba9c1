"""The conformance kit (modgraph.testing) catches each plausible plugin mistake with a message saying what to change.

Each case is a toy modality with one mistake injected; the kit must fail on it with the named
message. The eighteen of the trial in issue 32 are here (twelve the kit caught before, six it
missed: float labels, bce features outside [0, 1], features that differ between calls,
``ValueError`` on junk, non-atomic writes, one concept for every class), and a few more.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
import toyplugin
import torch

from modgraph.errors import DataNotFoundError
from modgraph.modality import ClassInfo, FeatureSet
from modgraph.testing import check_descriptor, check_learnable, check_modality


# -- the mistakes -------------------------------------------------------------------------------
def _features_then(change):
    def load_features(self, root, split, download=False):
        return change(toyplugin.ToyColor.load_features(self, root, split, download))
    return load_features


def _float_labels(feats):
    feats.y = feats.y.float()
    return feats


def _shift_labels(feats):
    feats.y = feats.y + 1
    return feats


def _float64(feats):
    feats.x = feats.x.double()
    return feats


def _wrong_shape(feats):
    feats.x = feats.x[:, :-1]
    return feats


def _scaled_up(feats):
    feats.x = feats.x * 4 - 1  # a standardisation-like range while the loss is bce
    return feats


def _noisy(feats):
    feats.x = (feats.x + 0.01 * torch.rand(feats.x.shape)).clamp(0, 1)  # an unseeded draw
    return feats


def _missing_plain(self, root, split, download=False):
    raise FileNotFoundError(Path(root) / "toycolor" / f"{split}.csv")


def _missing_no_hint(self, root, split, download=False):
    raise DataNotFoundError(f"toycolor data not found in {Path(root) / 'toycolor'}")


def _read_value_error(self, path):
    values = [float(v) for v in Path(path).read_text(errors="replace").strip().split(",")]  # ValueError escapes
    return torch.tensor(values), []


def _read_short(self, path):
    x, notes = toyplugin.ToyColor.read_file(self, path)
    return x[:-1], notes


def _write_plain(self, x, path, *, scale=1):
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:  # written in place: a failed write leaves a partial file
        for i, v in enumerate(x.flatten().tolist()):
            fh.write(("," if i else "") + f"{v:.4f}")
            fh.flush()
        fh.write("\n")
    return [Path(path)]


def _normalize_on_cpu(self, x, stats):
    return x * torch.ones(x.shape[-1])  # made on the CPU whatever x's device


def _not_inverse(self, x, stats):
    return x * 2


def _stats_as_tensors(self, x):
    return {"mean": x.mean(0)}


def _scale_ignored(self, x, path, *, scale=1):
    return toyplugin.ToyImage.write_file(self, x, path)


ONE_CONCEPT = [ClassInfo(name=c, concept="colour") for c in ["red", "green", "blue"]]
TWICE = [ClassInfo(name="red", concept="red"), ClassInfo(name="red", concept="green"),
         ClassInfo(name="blue", concept="blue")]

# (case, base, overrides, what the message must say); the first twelve the kit caught before issue 32.
MISTAKES = [
    ("bad name", toyplugin.ToyColor, {"name": "Toy-Color"}, "must match"),
    ("duplicate class names", toyplugin.ToyColor, {"classes": TWICE}, "unique"),
    ("suffix without a dot", toyplugin.ToyColor, {"output_suffix": "csv"}, "file suffix"),
    ("recognizer for the wrong class count", toyplugin.ToyColor,
     {"recognizer_config": lambda self: toyplugin.ToyColor.recognizer_config(self).model_copy(
         update={"num_classes": 2})}, "recognizer gave"),
    ("missing data as FileNotFoundError", toyplugin.ToyColor, {"load_features": _missing_plain},
     "raise modgraph.DataNotFoundError"),
    ("missing-data message without --download", toyplugin.ToyColor, {"load_features": _missing_no_hint},
     "--download"),
    ("features of the wrong shape", toyplugin.ToyColor, {"load_features": _features_then(_wrong_shape)},
     "features shaped"),
    ("float64 features", toyplugin.ToyColor, {"load_features": _features_then(_float64)}, "float32"),
    ("labels out of range", toyplugin.ToyColor, {"load_features": _features_then(_shift_labels)},
     "class positions 0..2"),
    ("normalize makes a CPU tensor", toyplugin.ToyColor, {"normalize": _normalize_on_cpu}, "normalize"),
    ("denormalize is not normalize's inverse", toyplugin.ToyColor, {"denormalize": _not_inverse},
     re.escape("denormalize(normalize(x)) != x")),
    ("read_file of the wrong shape", toyplugin.ToyColor, {"read_file": _read_short}, "read_file"),
    # the six the trial found missed
    ("float labels", toyplugin.ToyColor, {"load_features": _features_then(_float_labels)}, "int64"),
    ("bce features outside [0, 1]", toyplugin.ToyColor, {"load_features": _features_then(_scaled_up)},
     re.escape("model inputs in [0, 1]")),
    ("features differ between calls", toyplugin.ToyColor, {"load_features": _features_then(_noisy)},
     "different 'x' on a second call"),
    ("ValueError on junk", toyplugin.ToyColor, {"read_file": _read_value_error}, "raise modgraph.InputFileError"),
    ("non-atomic write", toyplugin.ToyColor, {"write_file": _write_plain}, "partial"),
    ("every class one concept", toyplugin.ToyColor, {"classes": ONE_CONCEPT}, "concept 'colour'"),
    # more
    ("statistics as tensors", toyplugin.ToyColor, {"fit_normalization": _stats_as_tensors}, "plain numbers"),
    ("write_file ignores scale", toyplugin.ToyImage, {"write_file": _scale_ignored}, "scale=2"),
]


@pytest.mark.parametrize("case,base,overrides,message", MISTAKES, ids=[m[0] for m in MISTAKES])
def test_the_kit_catches(case, base, overrides, message, toy_data, tmp_path):
    broken = type("Broken", (base,), overrides)()
    with pytest.raises(AssertionError, match=message) as caught:
        check_modality(broken, tmp_path / "kit", data_root=toy_data)
    assert "\n" not in str(caught.value), f"{case}: the kit's message is not one line: {caught.value}"


def test_a_sound_modality_passes_every_check(toy_data, tmp_path):
    """The three toy modalities pass the kit in test_device.py; here one passes the learnability check too."""
    check_modality(toyplugin.ToyColor(), tmp_path, data_root=toy_data, learnable=True)


def test_one_concept_passes_when_the_modality_means_it():
    modality = type("Broken", (toyplugin.ToyColor,), {"classes": ONE_CONCEPT})()
    check_descriptor(modality, one_concept=True)


def test_the_learnability_check_catches_a_kl_weight_that_collapses_the_latent(toy_data):
    modality = toyplugin.ToyColor()
    feats = modality.load_features(toy_data, "train")
    check_learnable(modality, feats)
    collapsed = type("Collapsed", (toyplugin.ToyColor,), {
        "training_defaults": toyplugin.TOY_DEFAULTS.model_copy(update={"kl_weight": 1000.0})})()
    with pytest.raises(AssertionError, match="lower training_defaults.kl_weight"):
        check_learnable(collapsed, feats)


def test_a_modality_without_data_needs_no_data_root(tmp_path):
    """needs_data = False: the kit loads the generated features itself (no dummy data_root)."""
    loaded = []

    class Generated(toyplugin.ToyColor):
        needs_data = False

        def load_features(self, root, split, download=False):
            loaded.append(split)
            rng = random.Random(0 if split == "train" else 1)
            y = torch.arange(30) % 3
            x = torch.tensor([toyplugin.color_vector(int(k), rng) for k in y], dtype=torch.float32)
            return FeatureSet(x=x, y=y)

    check_modality(Generated(), tmp_path)
    assert "test" in loaded
