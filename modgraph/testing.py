"""Conformance checks a plugin author runs on their own modality.

``check_modality(modality, tmp_path, data_root=..., device="meta")`` runs them all; each check
raises ``AssertionError`` with a one-line message naming the modality, what is wrong and what to change.
"""

from __future__ import annotations

import json
import random
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch

from modgraph.runtime import simulated_device
from modgraph.errors import DataNotFoundError, InputFileError
from modgraph.modality import NAME_PATTERN, FeatureSet, Modality
from modgraph.learning.models import Associator, Recognizer, VAE, kl_to_standard_normal, reconstruction_error
from modgraph.storage.registry import Registry


def check_descriptor(modality: Modality, one_concept: bool = False) -> None:
    """Name, classes, concepts, loss and suffixes as the host and ``link`` need them.

    ``one_concept``: the modality means every class to stand for one concept (rarely right:
    ``link --pairing concept`` then pairs every class with every other).
    """
    name = getattr(modality, "name", None)
    assert name and NAME_PATTERN.match(name), f"modality name {name!r} must match {NAME_PATTERN.pattern}"
    names = [c.name for c in modality.classes]
    assert names and len(set(names)) == len(names), f"{name}: class names must be non-empty and unique: {names}"
    assert all(c.concept for c in modality.classes), f"{name}: every class needs a concept"
    concepts = set(modality.concepts)
    assert one_concept or len(names) < 2 or len(concepts) > 1, \
        f"{name}: all {len(names)} classes have the concept {next(iter(concepts))!r}, so link --pairing concept " \
        f"would pair every class with every other; give each class its own ClassInfo(concept=...) " \
        f"(or pass one_concept=True to the kit if that is meant)"
    assert modality.reconstruction_loss in ("bce", "mse"), f"{name}: reconstruction_loss must be bce or mse"
    assert modality.output_suffix.startswith("."), f"{name}: output_suffix must be a file suffix like .png"


def check_models(modality: Modality, latent_dims: tuple[int, ...] = (8, 64),
                 device: str | torch.device = "cpu") -> None:
    """The VAE, recognizer and associator build from their configs, have the declared shapes on
    ``device`` and train there (one loss and its gradients; ``meta`` runs torch's own meta kernels)."""
    device = torch.device(device)
    x = torch.rand(2, *modality.input_shape, device=device)
    for dim in latent_dims:
        vae = VAE(modality.vae_config(dim)).to(device)
        logits, mu, logvar = vae(x)
        assert mu.shape == (2, dim) and logvar.shape == (2, dim), \
            f"{modality.name}: encoder gave {tuple(mu.shape)} for latent {dim}"
        assert logits.shape == x.shape, \
            f"{modality.name}: decoder gave {tuple(logits.shape)}, input is {tuple(x.shape)}"
        error = reconstruction_error(logits, x, modality.reconstruction_loss)
        (error + kl_to_standard_normal(mu, logvar)).mean().backward()
        grads = [p.grad for p in vae.parameters() if p.requires_grad]
        assert all(g is not None and g.device.type == device.type for g in grads), \
            f"{modality.name}: VAE gradients missing or off {device}"
        vae.eval()
        out = vae.decode(vae.encode(x)[0])
        assert out.shape == x.shape and out.device.type == device.type, \
            f"{modality.name}: decoder gave {tuple(out.shape)} on {out.device}, input is {tuple(x.shape)} on {device}"
        assoc = Associator(modality.associator_config(dim, dim)).to(device).eval()
        z, _ = assoc(mu.detach())
        assert z.shape == (2, dim) and z.device.type == device.type, \
            f"{modality.name}: associator gave {tuple(z.shape)} on {z.device}"
    rec = Recognizer(modality.recognizer_config()).to(device)
    torch.nn.functional.cross_entropy(rec(x), torch.zeros(2, dtype=torch.long, device=device)).backward()
    logits = rec.eval()(x)
    assert logits.shape == (2, len(modality.classes)) and logits.device.type == device.type, \
        f"{modality.name}: recognizer gave {tuple(logits.shape)} on {logits.device} for {len(modality.classes)} classes"


def check_missing_data(modality: Modality, empty_root: Path) -> None:
    """Missing data raises DataNotFoundError naming where it looked and how to download."""
    empty_root.mkdir(parents=True, exist_ok=True)
    try:
        modality.load_features(empty_root, "train", download=False)
    except DataNotFoundError as exc:
        text = str(exc)
        assert str(empty_root) in text, f"{modality.name}: missing-data error must name {empty_root}: {text}"
        assert "--download" in text, f"{modality.name}: missing-data error must mention --download: {text}"
    except Exception as exc:  # noqa: BLE001 - the wrong exception type is the failure reported
        raise AssertionError(f"{modality.name}: load_features on an empty folder raised {type(exc).__name__} ({exc}); "
                             f"raise modgraph.DataNotFoundError naming the folder and --download, or set "
                             f"needs_data = False if the modality generates its data") from None
    else:
        raise AssertionError(f"{modality.name}: load_features on an empty folder did not raise DataNotFoundError")


def check_features(modality: Modality, data_root: Path, split: str = "test") -> FeatureSet:
    """Real features load with the declared shape, int64 labels in range, model inputs in [0, 1] for
    ``bce``, the same tensors on a second call, and normalisation round-trips."""
    feats = modality.load_features(Path(data_root), split)
    assert len(feats) > 0, f"{modality.name}: {split} split is empty under {data_root}"
    assert tuple(feats.x.shape[1:]) == tuple(modality.input_shape), \
        f"{modality.name}: features shaped {tuple(feats.x.shape[1:])}, declared {modality.input_shape}"
    assert feats.x.dtype == torch.float32, f"{modality.name}: features must be float32"
    check_labels(modality, feats)
    stats = modality.fit_normalization(feats.x)
    back = modality.denormalize(modality.normalize(feats.x[:8], stats), stats)
    assert torch.allclose(back, feats.x[:8], atol=1e-4), f"{modality.name}: denormalize(normalize(x)) != x"
    check_bce_range(modality, modality.normalize(feats.x, stats))
    check_deterministic(modality, feats, modality.load_features(Path(data_root), split))
    return feats


def check_labels(modality: Modality, feats: FeatureSet) -> None:
    """Labels are int64 class indices in range (training's cross-entropy refuses any other dtype)."""
    y, k = feats.y, len(modality.classes)
    assert y.dtype == torch.int64, \
        f"{modality.name}: FeatureSet labels are {y.dtype}; make y int64 class indices " \
        f"(torch.tensor(labels, dtype=torch.int64)), or training stops with 'expected scalar type Long'"
    assert int(y.min()) >= 0 and int(y.max()) < k, \
        f"{modality.name}: labels run from {int(y.min())} to {int(y.max())}; they must be class positions 0..{k - 1}"


def check_bce_range(modality: Modality, inputs: torch.Tensor) -> None:
    """With ``reconstruction_loss="bce"`` the model inputs (normalised features) lie in [0, 1]."""
    if modality.reconstruction_loss != "bce" or not len(inputs):
        return
    low, high = float(inputs.min()), float(inputs.max())
    assert 0.0 <= low and high <= 1.0, \
        f"{modality.name}: reconstruction_loss='bce' needs model inputs in [0, 1], but normalize gives " \
        f"{low:.3g}..{high:.3g}; scale them into [0, 1] in normalize, or use reconstruction_loss='mse'"


def check_deterministic(modality: Modality, first: FeatureSet, second: FeatureSet) -> None:
    """Two loads of a split give the same tensors (the feature cache keeps the first, so they must agree)."""
    for field in ("x", "y", "origin", "augmented"):
        a, b = getattr(first, field), getattr(second, field)
        assert a.shape == b.shape and torch.equal(a, b), \
            f"{modality.name}: load_features gave a different {field!r} on a second call; draw every random " \
            f"number from a seeded generator (torch.Generator().manual_seed(...)) so a split is the same every time"
    assert first.groups == second.groups, f"{modality.name}: load_features gave different groups on a second call"


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


def check_bad_files(modality: Modality, x: torch.Tensor, folder: Path) -> None:
    """``read_file`` of an empty file, of junk bytes and of a truncated output raises ``InputFileError``
    (a truncated file may also read, as features of ``input_shape``); any other exception is a bug."""
    if not modality.input_suffixes:
        return
    folder.mkdir(parents=True, exist_ok=True)
    suffix = modality.input_suffixes[0]
    junk = bytes(random.Random(0).randrange(256) for _ in range(512)) + b"\xff\xfe\x00"
    cases = [("an empty", folder / f"empty{suffix}", b""), ("a junk", folder / f"junk{suffix}", junk)]
    if modality.output_suffix in modality.input_suffixes:
        whole = folder / f"whole{modality.output_suffix}"
        modality.write_file(x, whole)
        data = whole.read_bytes()
        cases.append(("a truncated", folder / f"truncated{modality.output_suffix}", data[:len(data) // 2]))
    for what, path, data in cases:
        path.write_bytes(data)
        try:
            read, _ = modality.read_file(path)
        except InputFileError:
            continue
        except Exception as exc:  # noqa: BLE001 - the wrong exception type is the failure reported
            raise AssertionError(
                f"{modality.name}: read_file of {what} {suffix} file raised {type(exc).__name__} ({exc}); catch it "
                f"and raise modgraph.InputFileError naming the file, so translate reports it in one line") from None
        assert what != "an empty", \
            f"{modality.name}: read_file accepted an empty {suffix} file; raise modgraph.InputFileError naming it"
        assert isinstance(read, torch.Tensor) and tuple(read.shape) == tuple(modality.input_shape), \
            f"{modality.name}: read_file of {what} {suffix} file gave {_where(read)} instead of raising " \
            f"modgraph.InputFileError"


@contextmanager
def _file_size_limit(limit: int):
    """Writes past ``limit`` bytes fail with an OSError, as on a full disk (POSIX, main thread; else a no-op)."""
    import signal
    import threading

    try:
        import resource
    except ImportError:  # not POSIX
        yield False
        return
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGXFSZ"):
        yield False
        return
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the process is killed, not the write failed
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    try:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
        yield True
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)


def check_atomic_write(modality: Modality, x: torch.Tensor, folder: Path) -> None:
    """A ``write_file`` that fails halfway (the disk fills) leaves no partial file under the final name."""
    folder.mkdir(parents=True, exist_ok=True)
    whole = folder / f"whole{modality.output_suffix}"
    modality.write_file(x, whole)
    size = whole.stat().st_size if whole.is_file() else 0
    if size < 2:
        return
    target = folder / f"cut{modality.output_suffix}"
    with _file_size_limit(size // 2) as limited:
        if not limited:
            return
        try:
            modality.write_file(x, target)
        except Exception:  # noqa: BLE001 - failing is right here; what it leaves behind is checked
            pass
    assert not target.exists() or target.stat().st_size == size, \
        f"{modality.name}: write_file left a partial {target.name} when the disk filled; write through " \
        f"modgraph.write_bytes_atomically (a temporary file renamed into place) so a file is whole or absent"


def check_learnable(modality: Modality, feats: FeatureSet, steps: int = 100, rows: int = 64, seed: int = 0) -> None:
    """A tiny learnability check: on ``rows`` training rows, ``steps`` steps of the recognizer and of the VAE
    (with the modality's ``training_defaults`` lr and kl_weight) beat chance on those rows."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    index = torch.randperm(len(feats), generator=generator)[:rows]
    stats = modality.fit_normalization(feats.x[:])
    x, y = modality.normalize(torch.as_tensor(feats.x[index]), stats), feats.y[index].long()
    chance = float(torch.bincount(y).max()) / len(y)
    bar = chance + (1 - chance) / 2
    recognizer = Recognizer(modality.recognizer_config())
    _fit(recognizer, lambda: torch.nn.functional.cross_entropy(recognizer(x), y), steps, 1e-3)
    recognizer.eval()
    with torch.no_grad():
        read = float((recognizer(x).argmax(1) == y).float().mean())
    assert read > bar, \
        f"{modality.name}: the recognizer reads only {read:.0%} of {len(y)} training rows right after {steps} steps " \
        f"(chance {chance:.0%}); the features may not depend on the class, or the recognizer_config is too small"
    defaults = modality.training_defaults
    vae = VAE(modality.vae_config(modality.default_latent_dim))

    def vae_loss():
        logits, mu, logvar = vae(x)
        return (reconstruction_error(logits, x, modality.reconstruction_loss)
                + defaults.kl_weight * kl_to_standard_normal(mu, logvar)).mean()

    _fit(vae, vae_loss, steps, defaults.lr)
    vae.eval()
    with torch.no_grad():
        rebuilt = float((recognizer(vae.decode(vae.encode(x)[0])).argmax(1) == y).float().mean())
    assert rebuilt > bar, \
        f"{modality.name}: after {steps} VAE steps on {len(y)} rows the recognizer reads {rebuilt:.0%} of the " \
        f"reconstructions right (chance {chance:.0%}); lower training_defaults.kl_weight (now " \
        f"{defaults.kl_weight:g}) or change lr (now {defaults.lr:g}): modgraph tune {modality.name} searches both"


def _fit(module: torch.nn.Module, loss, steps: int, lr: float) -> None:
    module.train()
    optimizer = torch.optim.Adam(module.parameters(), lr=lr)
    for _ in range(steps):
        optimizer.zero_grad()
        loss().backward()
        optimizer.step()


def check_file_round_trip(modality: Modality, x: torch.Tensor, folder: Path) -> None:
    """An output written to a file reads back (when the modality reads its own output format)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"sample{modality.output_suffix}"
    written = modality.write_file(x, path)
    assert written and all(Path(p).exists() for p in written), f"{modality.name}: write_file wrote nothing"
    if modality.output_suffix in modality.input_suffixes:
        back, _ = modality.read_file(path)
        assert tuple(back.shape) == tuple(modality.input_shape), f"{modality.name}: read_file shape {tuple(back.shape)}"


def check_write_scale(modality: Modality, x: torch.Tensor, folder: Path) -> None:
    """``translate --scale 2`` works with this ``write_file``: it enlarges a PNG output exactly twice
    (nearest neighbour); other outputs take ``scale`` and ignore it."""
    from PIL import Image


    folder.mkdir(parents=True, exist_ok=True)
    plain, scaled = folder / f"plain{modality.output_suffix}", folder / f"scaled{modality.output_suffix}"
    assert modality.write_file(x, plain), f"{modality.name}: write_file wrote nothing"
    try:
        written = modality.write_file(x, scaled, scale=2)
    except Exception as exc:  # noqa: BLE001 - reported as the check's failure
        raise AssertionError(f"{modality.name}: write_file(x, path, scale=2) failed: {type(exc).__name__}: {exc}") \
            from exc
    assert written and all(Path(p).exists() for p in written), f"{modality.name}: write_file with scale wrote nothing"
    if modality.output_suffix.lower() != ".png":
        return
    with Image.open(plain) as small, Image.open(scaled) as large:
        assert large.size == (2 * small.width, 2 * small.height), \
            f"{modality.name}: write_file(scale=2) wrote {large.size[0]}x{large.size[1]} pixels; the plain output " \
            f"is {small.width}x{small.height}, so it should be {2 * small.width}x{2 * small.height}"
        expected = small.convert(large.mode).resize(large.size, Image.NEAREST)
        assert large.tobytes() == expected.tobytes(), \
            f"{modality.name}: write_file(scale=2) is not the plain output enlarged by nearest neighbour"


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


def check_device_hooks(modality: Modality, folder: Path, device: str | torch.device = "meta",
                       x: torch.Tensor | None = None) -> None:
    """Every tensor hook runs on inputs placed on ``device`` and answers there (what a GPU would show).

    The hooks are those the training, link, translate and evaluate paths call: ``fit_normalization``
    and ``fit_normalization_stream`` (plain numbers back), ``normalize`` / ``denormalize`` and
    ``augment_batch`` (tensors on ``device`` back), ``write_file`` (given a tensor on ``device``,
    it moves the data to the CPU itself), and ``read_file`` / ``read_text`` (CPU tensors that
    ``normalize`` then takes on ``device``). ``x``: raw features to use (default: the features
    ``read_text`` gives the class concepts where a modality reads text, else random ones).

    ``device="meta"`` runs them on :mod:`modgraph.runtime.simulated_device`: tensors that say they are on
    ``meta`` but hold CPU data, so that data-dependent ops (``nonzero``, ``tolist``, boolean
    masks), which plain meta tensors cannot run, still work, while a tensor made on the CPU
    inside a hook and mixed with its input raises as on a GPU. Any other device (``cuda``) runs
    them on real tensors there.
    """
    device = torch.device(device)
    simulated = device.type == "meta"
    place = simulated_device.to_device if simulated else (lambda t: t.to(device))
    scope = simulated_device.simulated if simulated else nullcontext
    x = _sample_features(modality) if x is None else x[:4].detach().to("cpu", torch.float32)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)

    def run(hook: str, *args):
        try:
            with scope():
                return getattr(modality, hook)(*args)
        except Exception as exc:  # noqa: BLE001 - the failure is reported as the check's
            raise AssertionError(f"{modality.name}: {hook} on device {device} failed: {type(exc).__name__}: {exc}") \
                from exc

    def on_device(hook: str, out, shape) -> torch.Tensor:
        assert isinstance(out, torch.Tensor) and out.device.type == device.type, \
            f"{modality.name}: {hook} of a tensor on {device} gave {_where(out)}, not a tensor on {device}"
        assert tuple(out.shape) == tuple(shape), \
            f"{modality.name}: {hook} changed shape {tuple(shape)} to {tuple(out.shape)}"
        return out.detach().to("cpu")

    stats = run("fit_normalization", place(x))
    _check_stats(modality, "fit_normalization", stats, modality.fit_normalization(x))
    _check_stats(modality, "fit_normalization_stream", run("fit_normalization_stream", [place(x[:2]), place(x[2:])]),
                 modality.fit_normalization_stream([x[:2], x[2:]]))
    xn = on_device("normalize", run("normalize", place(x), stats), x.shape)
    assert torch.allclose(xn, modality.normalize(x, stats), atol=1e-5), \
        f"{modality.name}: normalize on {device} differs from normalize on the CPU"
    back = on_device("denormalize", run("denormalize", place(xn), stats), x.shape)
    assert torch.allclose(back, x, atol=1e-4), f"{modality.name}: denormalize(normalize(x)) != x on {device}"
    augmented = run("augment_batch", place(xn))
    on_device("augment_batch", augmented, xn.shape)
    assert augmented.dtype == xn.dtype, f"{modality.name}: augment_batch changed dtype to {augmented.dtype}"
    path = folder / f"on-device{modality.output_suffix}"
    written = run("write_file", place(x[0]), path)
    assert written and all(Path(p).exists() for p in written), f"{modality.name}: write_file wrote nothing"
    inputs = []
    if modality.output_suffix in modality.input_suffixes:
        inputs.append(("read_file", modality.read_file(path)[0]))
    if type(modality).read_text is not Modality.read_text:
        inputs.append(("read_text", modality.read_text(modality.classes[0].concept)))
    for hook, read in inputs:
        assert read.device.type == "cpu" and tuple(read.shape) == tuple(modality.input_shape), \
            f"{modality.name}: {hook} gave {_where(read)} shaped {tuple(read.shape)}, not CPU features shaped " \
            f"{tuple(modality.input_shape)}"
        on_device(f"normalize of {hook}'s features", run("normalize", place(read[None]), stats), (1, *read.shape))


def _sample_features(modality: Modality) -> torch.Tensor:
    """Four rows of raw features without data: read from class concepts (text-like), else random."""
    if type(modality).read_text is not Modality.read_text:
        return torch.stack([modality.read_text(modality.classes[i % len(modality.classes)].concept) for i in range(4)])
    return torch.rand(4, *modality.input_shape)


def _where(value) -> str:
    return f"a tensor on {value.device}" if isinstance(value, torch.Tensor) else type(value).__name__


def _check_stats(modality: Modality, hook: str, stats, expected) -> None:
    """Statistics are stored in a JSON header: plain numbers, the same whatever device computed them."""
    try:
        text = json.dumps(stats)
    except TypeError as exc:
        raise AssertionError(f"{modality.name}: {hook} must return plain numbers (stored as JSON): {exc}") from None
    again = json.loads(text)
    assert again.keys() == expected.keys(), f"{modality.name}: {hook} gave keys {sorted(again)} on the device, " \
                                            f"{sorted(expected)} on the CPU"
    for key in expected:
        assert torch.allclose(torch.tensor(again[key], dtype=torch.float64),
                              torch.tensor(expected[key], dtype=torch.float64), rtol=1e-4, atol=1e-5), \
            f"{modality.name}: {hook}[{key!r}] differs between the device and the CPU"


def check_modality(modality: Modality, tmp_path: Path, data_root: Path | None = None,
                   device: str | torch.device = "meta", *, one_concept: bool = False,
                   learnable: bool = False) -> None:
    """All checks; with ``data_root`` (or for a modality that needs no data), also on real features.

    ``device``: where the models and every tensor hook run (:func:`check_models`,
    :func:`check_device_hooks`); the default ``meta`` catches, on a CPU-only machine, a tensor
    that a hook makes on the CPU (what fails on a GPU). ``"cuda"`` runs them on a real GPU.
    ``one_concept``: every class is meant to share one concept. ``learnable``: also run
    :func:`check_learnable` on the training split (a few seconds on a CPU).
    """
    tmp_path = Path(tmp_path)
    check_descriptor(modality, one_concept=one_concept)
    check_models(modality)
    if torch.device(device).type != "cpu":
        check_models(modality, latent_dims=(8,), device=device)
    if modality.needs_data:
        check_missing_data(modality, tmp_path / "empty-data")
    elif data_root is None:
        data_root = tmp_path / "no-data"  # a modality that generates its data reads no folder
        data_root.mkdir(parents=True, exist_ok=True)
    check_registry_round_trip(modality, tmp_path / "registry")
    feats = None
    if data_root is not None:
        feats = check_features(modality, data_root)
        check_feature_chunks(modality, data_root)
        check_file_round_trip(modality, feats.x[0], tmp_path / "files")
        if learnable:
            check_learnable(modality, modality.load_features(Path(data_root), "train"))
    sample = _sample_features(modality)[0] if feats is None else feats.x[0]
    check_write_scale(modality, sample, tmp_path / "scaled")
    check_atomic_write(modality, sample, tmp_path / "atomic")
    check_bad_files(modality, sample, tmp_path / "bad-files")
    check_device_hooks(modality, tmp_path / "on-device", device, x=None if feats is None else feats.x)


def cuda_missing(precision: str = "fp32") -> str | None:
    """Why a GPU test cannot run here (no CUDA GPU, or no native bf16 for ``precision="bf16"``); None if it can."""
    if not torch.cuda.is_available():
        return "needs a CUDA GPU"
    if precision == "bf16" and not torch.cuda.is_bf16_supported(including_emulation=False):
        return f"{torch.cuda.get_device_name()} has no native bfloat16"
    return None


def check_graph_on_device(graph, nodes: dict[str, dict | None], links: list[tuple[str, str, str]],
                          folder: Path, batch_size: int = 8, link_batch_size: int = 1024) -> None:
    """Train tiny nodes, link them, translate files and evaluate on ``graph``'s device and precision.

    ``nodes``: modality name -> options (one epoch each, latent 8); ``links``: (source, target,
    pairing), trained both ways for one epoch (of the target's ``link_pairs_per_epoch`` pairs, up to
    20,000: hence the larger ``link_batch_size``). A file written by each source node is translated
    along every link (and a text given as text, where the source reads text). Checks that the
    models live on the device, that the nodes record the device and precision they trained
    with, and that every accuracy is a number in [0, 1]. Meant for a real GPU (``device="cuda"``).
    """
    import math

    folder = Path(folder)
    device = graph.device
    for name, options in nodes.items():
        report = graph.add_modality(name, latent_dim=8, epochs=1, recognizer_epochs=1, batch_size=batch_size,
                                    options=options)
        node = graph.node(name)
        assert {p.device.type for p in node.vae.parameters()} == {device.type}, f"{name}: VAE is not on {device}"
        training = node.meta["training"]
        assert training["device"].startswith(device.type) and training["precision"] == graph.precision, \
            f"{name}: trained on {training['device']} in {training['precision']}"
        accuracy = report["metrics"]["reconstruction_accuracy"]
        assert math.isnan(accuracy) or 0.0 <= accuracy <= 1.0, f"{name}: reconstruction accuracy {accuracy}"
    for source, target, pairing in links:
        report = graph.link(source, target, pairing=pairing, epochs=1, batch_size=link_batch_size,
                            target_confidence=0.0)
        for edge, metrics in report["metrics"].items():
            assert 0.0 <= metrics["accuracy"] <= 1.0, f"{edge}: test accuracy {metrics['accuracy']}"
        assert next(graph.associator(source, target).parameters()).device.type == device.type
        for a, b in ((source, target), (target, source)):
            src = graph.node(a).modality
            sample = graph.features(src, "test").originals().x[0]
            inputs = src.write_file(sample, folder / "inputs" / a / f"sample{src.output_suffix}") \
                if src.output_suffix in src.input_suffixes else []
            texts = [src.classes[0].concept] if type(src).read_text is not Modality.read_text else []
            out = graph.translate_files(a, b, inputs[:1], folder / "outputs" / f"{a}-{b}", texts=texts, samples=2)
            assert out["written"] and all(Path(p).exists() for p in out["written"]), f"{a}->{b}: nothing written"
            result = graph.evaluate(a, b)
            assert result["n"] == 0 or 0.0 <= result["accuracy"] <= 1.0, f"{a}->{b}: accuracy {result['accuracy']}"
