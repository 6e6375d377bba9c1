"""Conformance checks a plugin author runs on their own modality.

``check_modality(modality, tmp_path, data_root=...)`` runs them all; each check raises
``AssertionError`` with a message naming the modality and what is wrong.
"""

from __future__ import annotations

from pathlib import Path

import torch

from modgraph.errors import DataNotFoundError
from modgraph.modality import NAME_PATTERN, FeatureSet, Modality
from modgraph.models import Recognizer, VAE
from modgraph.registry import Registry


def check_descriptor(modality: Modality) -> None:
    name = getattr(modality, "name", None)
    assert name and NAME_PATTERN.match(name), f"modality name {name!r} must match {NAME_PATTERN.pattern}"
    names = [c.name for c in modality.classes]
    assert names and len(set(names)) == len(names), f"{name}: class names must be non-empty and unique: {names}"
    assert all(c.concept for c in modality.classes), f"{name}: every class needs a concept"
    assert modality.reconstruction_loss in ("bce", "mse"), f"{name}: reconstruction_loss must be bce or mse"
    assert modality.output_suffix.startswith("."), f"{name}: output_suffix must be a file suffix like .png"


def check_models(modality: Modality, latent_dims: tuple[int, ...] = (8, 64)) -> None:
    """The VAE and recognizer build from their configs and have the declared shapes."""
    x = torch.rand(2, *modality.input_shape)
    for dim in latent_dims:
        vae = VAE(modality.vae_config(dim)).eval()
        mu, logvar = vae.encode(x)
        assert mu.shape == (2, dim) and logvar.shape == (2, dim), \
            f"{modality.name}: encoder gave {tuple(mu.shape)} for latent {dim}"
        out = vae.decode(mu)
        assert out.shape == x.shape, f"{modality.name}: decoder gave {tuple(out.shape)}, input is {tuple(x.shape)}"
    rec = Recognizer(modality.recognizer_config()).eval()
    logits = rec(x)
    assert logits.shape == (2, len(modality.classes)), \
        f"{modality.name}: recognizer gave {tuple(logits.shape)} for {len(modality.classes)} classes"


def check_missing_data(modality: Modality, empty_root: Path) -> None:
    """Missing data raises DataNotFoundError naming where it looked and how to download."""
    empty_root.mkdir(parents=True, exist_ok=True)
    try:
        modality.load_features(empty_root, "train", download=False)
    except DataNotFoundError as exc:
        text = str(exc)
        assert str(empty_root) in text, f"{modality.name}: missing-data error must name {empty_root}: {text}"
        assert "--download" in text, f"{modality.name}: missing-data error must mention --download: {text}"
    else:
        raise AssertionError(f"{modality.name}: load_features on an empty folder did not raise DataNotFoundError")


def check_features(modality: Modality, data_root: Path, split: str = "test") -> FeatureSet:
    """Real features load with the declared shape, labels in range, and normalisation round-trips."""
    feats = modality.load_features(Path(data_root), split)
    assert len(feats) > 0, f"{modality.name}: {split} split is empty under {data_root}"
    assert tuple(feats.x.shape[1:]) == tuple(modality.input_shape), \
        f"{modality.name}: features shaped {tuple(feats.x.shape[1:])}, declared {modality.input_shape}"
    assert feats.x.dtype == torch.float32, f"{modality.name}: features must be float32"
    assert int(feats.y.min()) >= 0 and int(feats.y.max()) < len(modality.classes), f"{modality.name}: labels out of range"
    stats = modality.fit_normalization(feats.x)
    back = modality.denormalize(modality.normalize(feats.x[:8], stats), stats)
    assert torch.allclose(back, feats.x[:8], atol=1e-4), f"{modality.name}: denormalize(normalize(x)) != x"
    return feats


def check_feature_chunks(modality: Modality, data_root: Path, split: str = "test") -> None:
    """Chunks, when the modality gives them, hold rows of the declared shape with origins local to each chunk."""
    chunks = modality.feature_chunks(Path(data_root), split)
    if chunks is None:
        return
    for i, make in enumerate(chunks):
        part = make()
        assert tuple(part.x.shape[1:]) == tuple(modality.input_shape), \
            f"{modality.name}: chunk {i} rows shaped {tuple(part.x.shape[1:])}, declared {modality.input_shape}"
        assert not len(part) or 0 <= int(part.origin.min()) <= int(part.origin.max()) < len(part), \
            f"{modality.name}: chunk {i} origins must count rows within the chunk (0..{len(part) - 1})"


def check_file_round_trip(modality: Modality, x: torch.Tensor, folder: Path) -> None:
    """An output written to a file reads back (when the modality reads its own output format)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"sample{modality.output_suffix}"
    written = modality.write_file(x, path)
    assert written and all(Path(p).exists() for p in written), f"{modality.name}: write_file wrote nothing"
    if modality.output_suffix in modality.input_suffixes:
        back, _ = modality.read_file(path)
        assert tuple(back.shape) == tuple(modality.input_shape), f"{modality.name}: read_file shape {tuple(back.shape)}"


def check_registry_round_trip(modality: Modality, folder: Path) -> None:
    """Weights stored in a registry node file rebuild modules with identical outputs."""
    torch.manual_seed(0)
    vae, rec = VAE(modality.vae_config(modality.default_latent_dim)).eval(), Recognizer(modality.recognizer_config()).eval()
    reg = Registry(folder)
    tensors = {f"vae.{k}": v for k, v in vae.state_dict().items()}
    tensors.update({f"recognizer.{k}": v for k, v in rec.state_dict().items()})
    meta = {"kind": "modality", "name": modality.name,
            "config": {"vae": vae.config.model_dump(mode="json"), "recognizer": rec.config.model_dump(mode="json")}}
    with reg.lock():
        reg.write(reg.node_path(modality.name), tensors, meta)
    header = reg.read_metadata(reg.node_path(modality.name))
    loaded = reg.load_tensors(reg.node_path(modality.name))
    vae2 = VAE(type(vae.config)(**header["config"]["vae"])).eval()
    vae2.load_state_dict({k[4:]: v for k, v in loaded.items() if k.startswith("vae.")})
    x = torch.rand(2, *modality.input_shape)
    assert torch.allclose(vae.encode(x)[0], vae2.encode(x)[0]), f"{modality.name}: reloaded VAE differs"


def check_modality(modality: Modality, tmp_path: Path, data_root: Path | None = None) -> None:
    """All checks; with ``data_root``, also on real features and a real file round trip."""
    check_descriptor(modality)
    check_models(modality)
    if modality.needs_data:
        check_missing_data(modality, Path(tmp_path) / "empty-data")
    check_registry_round_trip(modality, Path(tmp_path) / "registry")
    if data_root is not None:
        feats = check_features(modality, data_root)
        check_feature_chunks(modality, data_root)
        check_file_round_trip(modality, feats.x[0], Path(tmp_path) / "files")
