"""The two training phases of the paper and the recognizer fit.

Intra-modal: a VAE per modality (Eq. 6). Cross-modal: an associator between two frozen
VAEs on class-matched random pairs redrawn each epoch (Eq. 7). Every loop keeps the
best validation checkpoint and stops with an error, saving nothing, on NaN.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from modgraph.runtime import distributed
from modgraph.errors import ConfigError, TrainingDivergedError
from modgraph.learning.models import (Associator, Recognizer, VAE, kl_to_standard_normal, reconstruction_error,
                             reparameterize)
from modgraph.runtime.precision import check_precision, for_training
from modgraph.runtime.progress import Progress


@dataclass
class TrainSettings:
    """How one model trains. ``batch_size`` is global: under torchrun each rank takes its share of each batch."""

    epochs: int
    batch_size: int
    lr: float
    kl_weight: float
    seed: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    progress: bool = True
    grad_clip: float = 10.0
    description: str = "training"
    precision: str = "fp32"  # "bf16": forward passes under bf16 autocast, fp32 weights (modgraph.runtime.precision)

    def __post_init__(self):
        check_precision(self.precision, self.device)


def resolve_device(name: str | torch.device | None) -> torch.device:
    """``auto`` picks CUDA when present; ``cuda`` without a GPU is an error, not a fallback."""
    if isinstance(name, torch.device):
        return name
    name = (name or "auto").lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError("--device cuda was asked for but no CUDA GPU is available; use --device cpu or auto")
        device = torch.device(name)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"--device {name}: this machine has {torch.cuda.device_count()} GPU(s), "
                              f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
        return device
    if name == "cpu":
        return torch.device("cpu")
    raise ConfigError(f"--device must be auto, cpu or cuda, not {name!r}")


def configure_threads() -> None:
    """Use every core we are allowed, shared among torchrun's local processes (``MODGRAPH_NUM_THREADS`` overrides)."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:
        n = os.cpu_count() or 1
    n = max(1, n // int(os.environ.get("LOCAL_WORLD_SIZE") or 1))
    n = int(os.environ.get("MODGRAPH_NUM_THREADS") or n)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


def _progress(total: int, desc: str, enabled: bool) -> Progress:
    return Progress(total, desc, enabled and distributed.is_main(), unit="batch")  # one bar, not one per rank


def _check_finite(loss: torch.Tensor, what: str, epoch: int, settings: TrainSettings) -> None:
    if not torch.isfinite(loss):
        raise TrainingDivergedError(
            f"{what} diverged (loss {loss.item()}) in epoch {epoch + 1}; nothing was saved. "
            f"Try a lower --lr (now {settings.lr:g}) or a larger --kl-weight (now {settings.kl_weight:g})")


def _batches(n: int, batch_size: int, generator: torch.Generator, device: torch.device):
    """This rank's share of each global batch; the order goes to the device once an epoch, not once a step."""
    order = torch.randperm(n, generator=generator).to(device)
    for (idx,) in distributed.batch_shares(batch_size, order):
        if len(idx) > 1 or n == 1:  # a batch of one breaks batch-norm statistics
            yield idx


def _for_training(model: nn.Module, settings: TrainSettings) -> nn.Module:
    """What a training loop calls: bf16 autocast if asked, DDP under torchrun; the weights stay ``model``'s."""
    return distributed.wrap(for_training(model, settings.precision, settings.device), settings.device)


def _step(model: nn.Module, optimizer, loss: torch.Tensor, clip: float) -> None:
    # The trainers' optimizers are fused (one pass over each tensor, not five): on a CPU a step of
    # the MNIST VAE's Adam took 1.7 ms instead of 4.5 ms, the same maths to about 1e-7.
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), clip)
    optimizer.step()


@dataclass
class EpochResult:
    """What the shared loop measured in one epoch, handed to a trainer's validation."""

    index: int  # counted from 0
    train_loss: float  # the running training loss (an average weighting recent batches 10%)
    seconds: float  # the epoch's batches, without validation


def _epochs(module: nn.Module, trained: nn.Module, optimizer, steps: int, settings: TrainSettings, what: str,
            batches: Callable[[], Iterable], batch_loss: Callable[[Any], torch.Tensor],
            validate: Callable[[EpochResult], tuple[dict, dict]], shown_loss: str = "running") -> Iterator[dict]:
    """The epoch loop of every trainer; yields each epoch's history record after its validation.

    Each epoch: ``module.train()``, then for each batch of ``batches()`` (called once an epoch)
    ``batch_loss`` through ``trained`` (the module as :func:`_for_training` wraps it), a finite
    check naming ``what``, a clipped optimiser step and a one-cycle learning-rate step over
    ``steps`` batches an epoch. ``validate`` returns the epoch's history record and the figures
    the progress line shows. The bar shows the running loss (``shown_loss`` "running") or the
    last batch's ("last", to 3 decimals).
    """
    # 1 / pct_start must not be a whole number: OneCycleLR divides by zero when pct_start * total_steps == 1.
    sched = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=settings.lr,
                                                total_steps=steps * settings.epochs + 1, pct_start=0.15)
    with _progress(steps * settings.epochs, settings.description, settings.progress) as bar:
        for epoch in range(settings.epochs):
            module.train()
            running, started = 0.0, time.perf_counter()
            for i, batch in enumerate(batches()):
                loss = batch_loss(batch)
                _check_finite(loss, what, epoch, settings)
                _step(trained, optimizer, loss, settings.grad_clip)
                sched.step()
                last = loss.item()
                running = last if i == 0 else 0.9 * running + 0.1 * last
                bar.update(1)
                shown = f"{running:.2f}" if shown_loss == "running" else f"{last:.3f}"
                bar.set_postfix(epoch=f"{epoch + 1}/{settings.epochs}", loss=shown)
            record, figures = validate(EpochResult(epoch, running, time.perf_counter() - started))
            bar.log(**figures)
            for watch in _EPOCH_WATCHERS.get():
                watch(module, settings, record)
            yield record


_EPOCH_WATCHERS: ContextVar[tuple[Callable[[nn.Module, TrainSettings, dict], None], ...]] = ContextVar(
    "epoch_watchers", default=())


@contextlib.contextmanager
def watching_epochs(watch: Callable[[nn.Module, TrainSettings, dict], None]) -> Iterator[None]:
    """Within the block every training loop calls ``watch(module, settings, record)`` after each epoch's validation.

    ``module`` is the model in training (its weights of that epoch), ``record`` the epoch's history
    record (``epoch`` counted from 1, of ``settings.epochs``); an exception ``watch`` raises stops
    the loop (``modgraph tune`` prunes hopeless trials so).
    """
    token = _EPOCH_WATCHERS.set((*_EPOCH_WATCHERS.get(), watch))
    try:
        yield
    finally:
        _EPOCH_WATCHERS.reset(token)


class _BestState:
    """A copy of a module's state at its best validation score so far (the first of equals)."""

    def __init__(self, module: nn.Module, start: float, higher_is_better: bool = False):
        self.module, self.score, self.higher_is_better = module, start, higher_is_better
        self.state = copy.deepcopy(module.state_dict())

    def offer(self, score: float) -> None:
        if (score > self.score) if self.higher_is_better else (score < self.score):
            self.score, self.state = score, copy.deepcopy(self.module.state_dict())

    def restore(self) -> None:
        self.module.load_state_dict(self.state)
        self.module.eval()


@torch.no_grad()
def vae_loss_eval(vae: VAE, x: torch.Tensor, kind: str, kl_weight: float, batch_size: int = 512) -> float:
    """Mean negative ELBO per sample on ``x`` (posterior mean decoded, for a stable score)."""
    vae.eval()
    total = 0.0
    for start in range(0, len(x), batch_size):
        xb = x[start:start + batch_size]
        mu, logvar = vae.encode(xb)
        loss = reconstruction_error(vae.decode_logits(mu), xb, kind) + kl_weight * kl_to_standard_normal(mu, logvar)
        total += loss.sum().item()
    return total / max(1, len(x))


def train_vae(vae: VAE, x_train: torch.Tensor, x_val: torch.Tensor, kind: str, settings: TrainSettings,
              augment=None, target_rows: torch.Tensor | None = None) -> dict:
    """Eq. 6: reconstruction error + kl_weight * KL(q(z|x) || N(0, I)); keeps the best validation state.

    ``target_rows[i]``: the row that row i's reconstruction is compared with (default: row i
    itself); :func:`original_rows` makes augmented copies reconstruct their originals.
    """
    device = settings.device
    vae.to(device)
    x_train, x_val = x_train.to(device), x_val.to(device)
    if target_rows is not None:
        if target_rows.shape != (len(x_train),):
            raise ConfigError(f"target_rows must hold one row index per training row ({len(x_train)})")
        target_rows = target_rows.to(device)
    gen = torch.Generator().manual_seed(settings.seed)
    opt = torch.optim.Adam(vae.parameters(), lr=settings.lr, fused=True)  # see _step
    best, history = _BestState(vae, math.inf), []
    model = _for_training(vae, settings)

    def batch_loss(idx: torch.Tensor) -> torch.Tensor:
        inputs = x_train[idx]
        target = x_train[target_rows[idx]] if target_rows is not None else inputs
        if augment is not None:
            inputs = augment(inputs)
        logits, mu, logvar = model(inputs)  # encode, reparameterise, decode
        return (reconstruction_error(logits, target, kind)
                + settings.kl_weight * kl_to_standard_normal(mu, logvar)).mean()

    def validate(done: EpochResult) -> tuple[dict, dict]:
        distributed.sync_buffers(vae)
        val = distributed.agree(vae_loss_eval(vae, x_val, kind, settings.kl_weight) if len(x_val)
                                else done.train_loss)
        if not math.isfinite(val):
            _check_finite(torch.tensor(val), "VAE validation", done.index, settings)
        return ({"epoch": done.index + 1, "train_loss": done.train_loss, "val_loss": val,
                 "seconds": round(done.seconds, 3)}, {"val_loss": f"{val:.2f}"})

    steps = math.ceil(len(x_train) / settings.batch_size)
    for record in _epochs(vae, model, opt, steps, settings, "VAE training",
                          lambda: _batches(len(x_train), settings.batch_size, gen, device), batch_loss, validate):
        history.append(record)
        best.offer(record["val_loss"])
    best.restore()
    return {"best_val_loss": best.score, "history": history}


def original_rows(origin: torch.Tensor, augmented: torch.Tensor) -> torch.Tensor:
    """For each row, the position of the original (non-augmented) row of its ``origin``.

    An augmented copy whose original is not among the rows (left out) keeps its own position.
    """
    position = torch.arange(len(origin))
    originals = ~augmented
    lookup = dict(zip(origin[originals].tolist(), position[originals].tolist()))
    return torch.tensor([lookup.get(o, i) for i, o in enumerate(origin.tolist())], dtype=torch.long)


@torch.no_grad()
def predict(model: Recognizer, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    model.eval()
    device = next(model.parameters()).device
    out = [model(x[s:s + batch_size].to(device)).argmax(1).cpu() for s in range(0, len(x), batch_size)]
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


def train_recognizer(model: Recognizer, x_train: torch.Tensor, y_train: torch.Tensor, x_val: torch.Tensor,
                     y_val: torch.Tensor, settings: TrainSettings, augment=None) -> dict:
    """Cross-entropy on real data; keeps the state with the best validation accuracy."""
    device = settings.device
    model.to(device)
    x_train, y_train = x_train.to(device), y_train.to(device)
    gen = torch.Generator().manual_seed(settings.seed + 1)
    opt = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=1e-4, fused=True)
    best, history = _BestState(model, -1.0, higher_is_better=True), []
    trained = _for_training(model, settings)

    def batch_loss(idx: torch.Tensor) -> torch.Tensor:
        xb = x_train[idx]
        if augment is not None:
            xb = augment(xb)
        return F.cross_entropy(trained(xb), y_train[idx], label_smoothing=0.05)

    def validate(done: EpochResult) -> tuple[dict, dict]:
        distributed.sync_buffers(model)
        acc = distributed.agree((predict(model, x_val) == y_val).float().mean().item() if len(x_val) else 0.0)
        return {"epoch": done.index + 1, "val_accuracy": acc}, {"val_accuracy": f"{acc:.4f}"}

    steps = math.ceil(len(x_train) / settings.batch_size)
    for record in _epochs(model, trained, opt, steps, settings, "recognizer training",
                          lambda: _batches(len(x_train), settings.batch_size, gen, device), batch_loss, validate,
                          shown_loss="last"):
        history.append(record)
        best.offer(record["val_accuracy"])
    best.restore()
    return {"best_val_accuracy": best.score, "history": history}


@torch.no_grad()
def encode_all(vae: VAE, x: torch.Tensor, batch_size: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior means and log-variances of a frozen encoder, batched."""
    vae.eval()
    device = next(vae.parameters()).device
    mus, logvars = [], []
    for s in range(0, len(x), batch_size):
        mu, logvar = vae.encode(x[s:s + batch_size].to(device))
        mus.append(mu)
        logvars.append(logvar)
    return torch.cat(mus), torch.cat(logvars)


class ClassPairSampler:
    """Draws, for each source row, a random target row of the paired class (redrawn per call)."""

    def __init__(self, source_y: torch.Tensor, target_y: torch.Tensor, class_map: dict[int, int], seed: int):
        self.gen = torch.Generator().manual_seed(seed)
        self.target_rows = {c: (target_y == c).nonzero().flatten() for c in set(class_map.values())}
        self.target_rows = {c: rows for c, rows in self.target_rows.items() if len(rows)}
        mapped = torch.tensor([class_map.get(int(c), -1) for c in range(int(source_y.max()) + 1)]) \
            if len(source_y) else torch.zeros(0, dtype=torch.long)
        self.source_target_class = mapped[source_y] if len(source_y) else source_y
        self.source_rows = torch.tensor([i for i, c in enumerate(self.source_target_class.tolist())
                                         if c in self.target_rows], dtype=torch.long)

    def __len__(self) -> int:
        return len(self.source_rows)

    def draw(self, limit: int | None = None, candidates: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """``limit`` (source row, target row) pairs in a fresh random order and pairing.

        Without a limit, every source row once. A limit above the number of source rows
        repeats them (each pass in a new order, each time with a new partner), so a
        small paired set still gets a full epoch of steps. With ``candidates`` K > 1,
        each source row gets K partners of its paired class: target rows shaped (N, K).
        """
        n = len(self.source_rows)
        limit = n if limit is None else limit
        passes = max(1, -(-limit // max(1, n)))
        order = torch.cat([torch.randperm(n, generator=self.gen) for _ in range(passes)])[:limit]
        src = self.source_rows[order]
        classes = self.source_target_class[src]
        tgt = torch.empty((len(src), candidates), dtype=torch.long)
        for c, rows in self.target_rows.items():
            sel = classes == c
            tgt[sel] = rows[torch.randint(len(rows), (int(sel.sum()), candidates), generator=self.gen)]
        return src, (tgt[:, 0] if candidates == 1 else tgt)


def source_sample(mu: torch.Tensor, logvar: torch.Tensor, noise: float) -> torch.Tensor:
    """An associator's training input: mu + noise * sigma * eps (1: E_i's sample, as in the paper; 0: mu)."""
    if noise == 0:
        return mu
    return mu + noise * torch.exp(0.5 * logvar) * torch.randn_like(mu)


def associator_loss(associator: Associator, target_vae: VAE, z_source: torch.Tensor, x_target: torch.Tensor,
                    kind: str, kl_weight: float, sample: bool = True) -> torch.Tensor:
    """Eq. 7 per sample: ||x_j - D_j(z_ji)||^2 (or the BCE analogue) + kl_weight * KL(q(z_ji|x_i) || N(0, I)).

    ``x_target`` holds one partner per source row, or K candidate partners (B, K, ...):
    then the reconstruction term is that of the closest candidate. One partner is the
    paper's Eq. 7, whose optimum decodes to the class's pixel average (a blur recognisers
    misjudge); the closest of K pulls the output to one typical member of the class.
    """
    mu, logvar = associator(z_source)
    z = reparameterize(mu, logvar) if sample else mu
    logits = target_vae.decode_logits(z)
    if x_target.dim() == logits.dim():
        rec = reconstruction_error(logits, x_target, kind)
    else:
        # One pass over all K candidates (B*K rows), then the closest per source row.
        rec = reconstruction_error(logits.unsqueeze(1).expand_as(x_target).flatten(0, 1), x_target.flatten(0, 1),
                                   kind).view(x_target.shape[:2]).min(1).values
    return rec + kl_weight * kl_to_standard_normal(mu, logvar)


def train_associator(associator: Associator, source_mu: torch.Tensor, source_logvar: torch.Tensor,
                     train_pairs: ClassPairSampler, val_pairs: ClassPairSampler, val_source_mu: torch.Tensor,
                     target_vae: VAE, target_x: torch.Tensor, val_target_x: torch.Tensor, kind: str,
                     settings: TrainSettings, pairs_per_epoch: int | None = None, candidates: int = 1,
                     source_noise: float = 1.0, judge: Callable[[Associator], float] | None = None,
                     select: str = "loss") -> dict:
    """Cross-modal phase for one direction, the target VAE frozen (its decoder only passes gradients).

    An epoch is ``pairs_per_epoch`` pairs (default: one pass over the paired source
    rows), so a large source does not pay a full pass per epoch and a small one (a few
    percent paired) still trains for as many steps. ``candidates``: partners drawn per
    source row, the loss taking the closest (see :func:`associator_loss`; 1 is Eq. 7).
    ``judge``: the share of validation sources whose translation the target's recognizer
    reads as the paired class, recorded each epoch (its ``samples`` attribute: how many it
    judges). ``select``: which epoch is kept, see :func:`kept_epoch`.
    """
    device = settings.device
    associator.to(device)
    target_vae.to(device).eval()
    _set_trainable(target_vae, False)
    source_mu, source_logvar, target_x = source_mu.to(device), source_logvar.to(device), target_x.to(device)
    torch.manual_seed(settings.seed)
    opt = torch.optim.Adam(associator.parameters(), lr=settings.lr)
    per_epoch = pairs_per_epoch or len(train_pairs)
    vsrc, vtgt = val_pairs.draw(limit=min(5000, len(val_pairs)), candidates=candidates)
    history, states = [], []
    model = _for_training(associator, settings)

    def batches():
        src, tgt = train_pairs.draw(limit=per_epoch, candidates=candidates)
        return distributed.batch_shares(settings.batch_size, src.to(device), tgt.to(device))

    def batch_loss(pair: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        s, t = pair
        z = source_sample(source_mu[s], source_logvar[s], source_noise)
        return associator_loss(model, target_vae, z, target_x[t], kind, settings.kl_weight).mean()

    def validate(done: EpochResult) -> tuple[dict, dict]:
        associator.eval()
        with torch.no_grad():
            val = _associator_val_loss(associator, target_vae, val_source_mu, val_target_x, vsrc, vtgt, kind,
                                       settings)
            val = distributed.agree(val if len(vsrc) else done.train_loss)
            accuracy = distributed.agree(judge(associator)) if judge is not None else None
        judged = {"val_accuracy": accuracy} if judge is not None else {}
        return ({"epoch": done.index + 1, "train_loss": done.train_loss, "val_loss": val} | judged,
                {"val_loss": f"{val:.2f}", **({"val_accuracy": f"{accuracy:.4f}"} if judge is not None else {})})

    steps = math.ceil(per_epoch / settings.batch_size)
    for record in _epochs(associator, model, opt, steps, settings, "associator training", batches, batch_loss,
                          validate):
        history.append(record)
        states.append({k: v.detach().to("cpu", copy=True) for k, v in associator.state_dict().items()})
    judged = getattr(judge, "samples", None)
    kept = history[kept_epoch(history, select, judged)]
    _set_trainable(target_vae, True)
    associator.load_state_dict(states[kept["epoch"] - 1])
    associator.eval()
    return {"best_val_loss": kept["val_loss"], "val_accuracy": kept.get("val_accuracy"), "epoch_kept": kept["epoch"],
            "val_judged": judged, "select": select, "history": history}


def _set_trainable(module: nn.Module, trainable: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(trainable)


@torch.no_grad()
def _associator_val_loss(associator: Associator, target_vae: VAE, val_source_mu: torch.Tensor,
                         val_target_x: torch.Tensor, vsrc: torch.Tensor, vtgt: torch.Tensor, kind: str,
                         settings: TrainSettings) -> float:
    """Mean Eq. 7 loss of the fixed validation pairs, from posterior means (0.0 with no pairs)."""
    device = settings.device
    val = 0.0
    for start in range(0, len(vsrc), 1024):
        s, t = vsrc[start:start + 1024], vtgt[start:start + 1024]
        val += associator_loss(associator, target_vae, val_source_mu[s].to(device), val_target_x[t].to(device),
                               kind, settings.kl_weight, sample=False).sum().item()
    return val / max(1, len(vsrc))


def kept_epoch(history: list[dict], select: str, samples: int | None = None) -> int:
    """Index of the epoch to keep: the lowest validation loss (``select`` "loss"), or the lowest
    loss among the epochs whose validation accuracy is within one standard error of the best
    ("accuracy"; the one-standard-error rule of Breiman et al., with the error of the best
    accuracy on ``samples`` judged sources, at least 1 / ``samples``).

    The error margin keeps a judge that reads nearly everything right from picking an epoch
    by one or two sources; a clear collapse stays out.
    """
    candidates = list(range(len(history)))
    if select == "accuracy" and history and history[0].get("val_accuracy") is not None:
        accuracy = [h["val_accuracy"] for h in history]
        top = max(accuracy)
        margin = max(math.sqrt(top * (1 - top) / samples), 1 / samples) if samples else 0.0
        # The tolerance keeps a one-source difference inside a margin of exactly one source (float rounding).
        candidates = [i for i in candidates if accuracy[i] >= top - margin - 1e-6]
    return min(candidates, key=lambda i: history[i]["val_loss"])
