"""The two training phases of the paper and the recognizer fit.

Intra-modal: a VAE per modality (Eq. 6). Cross-modal: an associator between two frozen
VAEs on class-matched random pairs redrawn each epoch (Eq. 7). Every loop keeps the
best validation checkpoint and stops with an error, saving nothing, on NaN.
"""

from __future__ import annotations

import copy
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from modgraph import distributed
from modgraph.errors import ConfigError, TrainingDivergedError
from modgraph.models import (Associator, Recognizer, VAE, kl_to_standard_normal, reconstruction_error,
                             reparameterize)
from modgraph.precision import check_precision, for_training


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
    precision: str = "fp32"  # "bf16": forward passes under bf16 autocast, fp32 weights (modgraph.precision)

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


class _EpochLog:
    """Off a terminal a redrawn bar is noise in a log: print one line per epoch instead."""

    def __init__(self, total: int, desc: str):
        self.total, self.desc, self.n, self.postfix = total, desc, 0, {}
        self.start = time.monotonic()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n: int) -> None:
        self.n += n

    def set_postfix(self, **values) -> None:
        self.postfix = values

    def epoch_done(self, **values) -> None:
        elapsed = time.monotonic() - self.start
        eta = elapsed / max(1, self.n) * (self.total - self.n)
        fields = " ".join(f"{k} {v}" for k, v in {**self.postfix, **values}.items())
        print(f"{self.desc}: {fields} ({elapsed:.0f} s, ETA {eta:.0f} s)", file=sys.stderr, flush=True)


def _progress(total: int, desc: str, enabled: bool):
    enabled = enabled and distributed.is_main()  # one bar, not one per rank
    if enabled and not sys.stderr.isatty():
        return _EpochLog(total, desc)
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=desc, disable=not enabled, unit="batch", leave=False, dynamic_ncols=True)
    bar.epoch_done = lambda **values: None
    return bar


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
    steps = math.ceil(len(x_train) / settings.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=settings.lr, total_steps=steps * settings.epochs + 1,
                                                pct_start=0.15)
    best, best_state, history = math.inf, copy.deepcopy(vae.state_dict()), []
    model = _for_training(vae, settings)
    with _progress(steps * settings.epochs, settings.description, settings.progress) as bar:
        for epoch in range(settings.epochs):
            vae.train()
            running = 0.0
            started = time.perf_counter()
            for i, idx in enumerate(_batches(len(x_train), settings.batch_size, gen, device)):
                inputs = x_train[idx]
                target = x_train[target_rows[idx]] if target_rows is not None else inputs
                if augment is not None:
                    inputs = augment(inputs)
                logits, mu, logvar = model(inputs)  # encode, reparameterise, decode
                loss = (reconstruction_error(logits, target, kind)
                        + settings.kl_weight * kl_to_standard_normal(mu, logvar)).mean()
                _check_finite(loss, "VAE training", epoch, settings)
                _step(model, opt, loss, settings.grad_clip)
                sched.step()
                running = loss.item() if i == 0 else 0.9 * running + 0.1 * loss.item()
                bar.update(1)
                bar.set_postfix(epoch=f"{epoch + 1}/{settings.epochs}", loss=f"{running:.2f}")
            seconds = time.perf_counter() - started
            distributed.sync_buffers(vae)
            val = distributed.agree(vae_loss_eval(vae, x_val, kind, settings.kl_weight) if len(x_val) else running)
            if not math.isfinite(val):
                _check_finite(torch.tensor(val), "VAE validation", epoch, settings)
            history.append({"epoch": epoch + 1, "train_loss": running, "val_loss": val, "seconds": round(seconds, 3)})
            bar.epoch_done(val_loss=f"{val:.2f}")
            if val < best:
                best, best_state = val, copy.deepcopy(vae.state_dict())
    vae.load_state_dict(best_state)
    vae.eval()
    return {"best_val_loss": best, "history": history}


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
    steps = math.ceil(len(x_train) / settings.batch_size)
    # 1 / pct_start must not be a whole number: OneCycleLR divides by zero when pct_start * total_steps == 1.
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=settings.lr, total_steps=steps * settings.epochs + 1,
                                                pct_start=0.15)
    best, best_state, history = -1.0, copy.deepcopy(model.state_dict()), []
    trained = _for_training(model, settings)
    with _progress(steps * settings.epochs, settings.description, settings.progress) as bar:
        for epoch in range(settings.epochs):
            model.train()
            for idx in _batches(len(x_train), settings.batch_size, gen, device):
                xb = x_train[idx]
                if augment is not None:
                    xb = augment(xb)
                loss = F.cross_entropy(trained(xb), y_train[idx], label_smoothing=0.05)
                _check_finite(loss, "recognizer training", epoch, settings)
                _step(trained, opt, loss, settings.grad_clip)
                sched.step()
                bar.update(1)
                bar.set_postfix(epoch=f"{epoch + 1}/{settings.epochs}", loss=f"{loss.item():.3f}")
            distributed.sync_buffers(model)
            acc = distributed.agree((predict(model, x_val) == y_val).float().mean().item() if len(x_val) else 0.0)
            history.append({"epoch": epoch + 1, "val_accuracy": acc})
            bar.epoch_done(val_accuracy=f"{acc:.4f}")
            if acc > best:
                best, best_state = acc, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    model.eval()
    return {"best_val_accuracy": best, "history": history}


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
    for p in target_vae.parameters():
        p.requires_grad_(False)
    source_mu, source_logvar, target_x = source_mu.to(device), source_logvar.to(device), target_x.to(device)
    torch.manual_seed(settings.seed)
    opt = torch.optim.Adam(associator.parameters(), lr=settings.lr)
    per_epoch = pairs_per_epoch or len(train_pairs)
    steps = math.ceil(per_epoch / settings.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=settings.lr, total_steps=steps * settings.epochs + 1,
                                                pct_start=0.15)
    vsrc, vtgt = val_pairs.draw(limit=min(5000, len(val_pairs)), candidates=candidates)
    history, states = [], []
    model = _for_training(associator, settings)
    with _progress(steps * settings.epochs, settings.description, settings.progress) as bar:
        for epoch in range(settings.epochs):
            associator.train()
            src, tgt = train_pairs.draw(limit=per_epoch, candidates=candidates)
            running = 0.0
            for i, (s, t) in enumerate(distributed.batch_shares(settings.batch_size, src.to(device), tgt.to(device))):
                z = source_sample(source_mu[s], source_logvar[s], source_noise)
                loss = associator_loss(model, target_vae, z, target_x[t], kind, settings.kl_weight).mean()
                _check_finite(loss, "associator training", epoch, settings)
                _step(model, opt, loss, settings.grad_clip)
                sched.step()
                running = loss.item() if i == 0 else 0.9 * running + 0.1 * loss.item()
                bar.update(1)
                bar.set_postfix(epoch=f"{epoch + 1}/{settings.epochs}", loss=f"{running:.2f}")
            associator.eval()
            with torch.no_grad():
                val = 0.0
                for start in range(0, len(vsrc), 1024):
                    s, t = vsrc[start:start + 1024], vtgt[start:start + 1024]
                    val += associator_loss(associator, target_vae, val_source_mu[s].to(device),
                                           val_target_x[t].to(device), kind, settings.kl_weight,
                                           sample=False).sum().item()
                val = distributed.agree(val / max(1, len(vsrc)) if len(vsrc) else running)
                accuracy = distributed.agree(judge(associator)) if judge is not None else None
            history.append({"epoch": epoch + 1, "train_loss": running, "val_loss": val}
                           | ({"val_accuracy": accuracy} if judge is not None else {}))
            bar.epoch_done(val_loss=f"{val:.2f}", **({"val_accuracy": f"{accuracy:.4f}"} if judge is not None else {}))
            states.append({k: v.detach().to("cpu", copy=True) for k, v in associator.state_dict().items()})
    judged = getattr(judge, "samples", None)
    kept = history[kept_epoch(history, select, judged)]
    for p in target_vae.parameters():
        p.requires_grad_(True)
    associator.load_state_dict(states[kept["epoch"] - 1])
    associator.eval()
    return {"best_val_loss": kept["val_loss"], "val_accuracy": kept.get("val_accuracy"), "epoch_kept": kept["epoch"],
            "val_judged": judged, "select": select, "history": history}


def kept_epoch(history: list[dict], select: str, samples: int | None = None) -> int:
    """Index of the epoch to keep: the lowest validation loss (``select`` "loss"), or the lowest
    loss among the epochs whose validation accuracy is within one standard error of the best
    ("accuracy"; the one-standard-error rule of Breiman et al., with the error of the best
    accuracy on ``samples`` judged sources, at least 1 / ``samples``).

    The error margin keeps a judge that reads nearly everything right from picking an epoch
    by one or two sources; a clear collapse (82% against 99.7%) stays out.
    """
    candidates = list(range(len(history)))
    if select == "accuracy" and history and history[0].get("val_accuracy") is not None:
        accuracy = [h["val_accuracy"] for h in history]
        top = max(accuracy)
        margin = max(math.sqrt(top * (1 - top) / samples), 1 / samples) if samples else 0.0
        # The tolerance keeps a one-source difference inside a margin of exactly one source (float rounding).
        candidates = [i for i in candidates if accuracy[i] >= top - margin - 1e-6]
    return min(candidates, key=lambda i: history[i]["val_loss"])
