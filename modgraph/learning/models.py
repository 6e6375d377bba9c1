"""The networks: VAE, associator and recognizer, each built from its config alone.

No I/O, no downloads, no prints: a stored config rebuilds the exact module.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from torch import nn

# A stored header rebuilds a module, so every size in a config is bounded before anything is built
# (the parameter count is capped too: modgraph.storage.safe_io.check_parameters).
MAX_LAYERS = 16  # entries of a ``channels`` or ``hidden`` list
MAX_WIDTH = 65_536  # units or channels of one layer, and one input dimension
MAX_INPUT_DIMS = 4  # entries of an ``input_shape``
MAX_INPUT_ELEMENTS = 1 << 24  # values in one input (a 4096 x 4096 grey image); the conv VAE probes a batch of 2
MAX_CLASSES = 100_000
Width = Annotated[int, Field(ge=1, le=MAX_WIDTH)]
Widths = Annotated[list[Width], Field(max_length=MAX_LAYERS)]


def _not_too_many_elements(shape: tuple[int, ...]) -> tuple[int, ...]:
    if math.prod(shape) > MAX_INPUT_ELEMENTS:
        raise ValueError(f"an input of {math.prod(shape):,} values is more than the {MAX_INPUT_ELEMENTS:,} allowed")
    return shape


Shape = Annotated[tuple[Width, ...], Field(min_length=1, max_length=MAX_INPUT_DIMS),
                  AfterValidator(_not_too_many_elements)]

class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid")


class VAEConfig(_Config):
    """A VAE over inputs of ``input_shape`` (C, H, W for ``conv``; any for ``mlp``)."""

    input_shape: Shape
    latent_dim: int = Field(64, ge=1, le=4096)
    architecture: Literal["conv", "mlp"] = "conv"
    channels: Widths = [32, 64]  # conv: one stride-2 stage per entry
    hidden: Widths = [256]  # fully connected layers around the latent
    output: Literal["sigmoid", "linear"] = "sigmoid"
    logvar_min: float = -10.0  # log-variance bounds keep exp() finite
    logvar_max: float = 4.0

    @model_validator(mode="after")
    def _check(self):
        if self.architecture == "conv" and len(self.input_shape) != 3:
            raise ValueError("conv VAEs take inputs shaped (channels, height, width)")
        return self


class RecognizerConfig(_Config):
    """A classifier judging generated samples (the paper's recognition network)."""

    input_shape: Shape
    num_classes: int = Field(ge=2, le=MAX_CLASSES)
    architecture: Literal["conv", "mlp"] = "conv"
    channels: Widths = [32, 64]  # conv: one conv + 2x2 max-pool stage per entry
    hidden: Width = 128
    dropout: float = Field(0.3, ge=0.0, lt=1.0)


class AssociatorConfig(_Config):
    """Maps a source latent to a Gaussian in the target latent space (sizes may differ)."""

    source_dim: int = Field(ge=1, le=4096)  # latent sizes (VAEConfig.latent_dim)
    target_dim: int = Field(ge=1, le=4096)
    hidden: Widths = [512, 512]
    logvar_min: float = -10.0
    logvar_max: float = 4.0


def _bounded_logvar(raw: torch.Tensor, low: float, high: float) -> torch.Tensor:
    # A smooth squash rather than a clamp, so gradients never vanish at the bound.
    return low + (high - low) * torch.sigmoid(raw + math.log(-low / high))  # raw 0 -> logvar 0


def _mlp(sizes: list[int], final_activation: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2 or final_activation:
            layers.append(nn.LeakyReLU(0.2))
    return nn.Sequential(*layers)


class VAE(nn.Module):
    """Encoder to (mu, log-variance), reparameterisation, decoder (the paper's Eq. 6)."""

    def __init__(self, config: VAEConfig):
        super().__init__()
        self.config = config
        shape = tuple(config.input_shape)
        if config.architecture == "conv":
            c, h, w = shape
            enc: list[nn.Module] = []
            prev = c
            for ch in config.channels:
                enc += [nn.Conv2d(prev, ch, 4, 2, 1), nn.BatchNorm2d(ch), nn.LeakyReLU(0.2)]
                prev = ch
            self.encoder_body = nn.Sequential(*enc, nn.Flatten())
            stages = len(config.channels)
            self._grid = (math.ceil(h / 2**stages), math.ceil(w / 2**stages))
            with torch.no_grad():
                flat = self.encoder_body(torch.zeros(2, *shape)).shape[1]
            dec_flat = config.channels[-1] * self._grid[0] * self._grid[1]
            dec: list[nn.Module] = []
            chans = list(reversed(config.channels)) + [c]
            for i, (a, b) in enumerate(zip(chans[:-1], chans[1:])):
                dec.append(nn.ConvTranspose2d(a, b, 4, 2, 1))
                if i < len(chans) - 2:
                    dec += [nn.BatchNorm2d(b), nn.LeakyReLU(0.2)]
            self.decoder_body = nn.Sequential(*dec)
        else:
            flat = math.prod(shape)
            dec_flat = flat
            self.encoder_body = nn.Flatten()
            self.decoder_body = nn.Identity()
        hid = list(config.hidden)
        self.encoder_head = _mlp([flat, *hid, 2 * config.latent_dim])
        self.decoder_head = _mlp([config.latent_dim, *reversed(hid), dec_flat],
                                 final_activation=config.architecture == "conv")

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, raw = self.encoder_head(self.encoder_body(x)).chunk(2, dim=1)
        return mu, _bounded_logvar(raw, self.config.logvar_min, self.config.logvar_max)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        """Decoder output before the output non-linearity (logits for ``sigmoid``)."""
        h = self.decoder_head(z)
        shape = tuple(self.config.input_shape)
        if self.config.architecture == "conv":
            h = self.decoder_body(h.view(len(z), self.config.channels[-1], *self._grid))
            return h[:, :, : shape[1], : shape[2]]
        return h.view(len(z), *shape)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        out = self.decode_logits(z)
        return torch.sigmoid(out) if self.config.output == "sigmoid" else out

    def forward(self, x: torch.Tensor):
        mu, logvar = self.encode(x)
        z = reparameterize(mu, logvar)
        return self.decode_logits(z), mu, logvar


class Associator(nn.Module):
    """A_ji: z_i to the mean and log-variance of a Gaussian in modality j's latent space."""

    def __init__(self, config: AssociatorConfig):
        super().__init__()
        self.config = config
        self.net = _mlp([config.source_dim, *config.hidden, 2 * config.target_dim])

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, raw = self.net(z).chunk(2, dim=1)
        return mu, _bounded_logvar(raw, self.config.logvar_min, self.config.logvar_max)


class Recognizer(nn.Module):
    """A small CNN (or MLP) classifier over a modality's model inputs."""

    def __init__(self, config: RecognizerConfig):
        super().__init__()
        self.config = config
        shape = tuple(config.input_shape)
        if config.architecture == "conv":
            layers: list[nn.Module] = []
            prev = shape[0]
            for ch in config.channels:
                layers += [nn.Conv2d(prev, ch, 3, padding=1), nn.BatchNorm2d(ch), nn.ReLU(), nn.MaxPool2d(2)]
                prev = ch
            self.features = nn.Sequential(*layers, nn.Flatten())  # keep where things are, not only what
            with torch.no_grad():
                flat = self.features(torch.zeros(2, *shape)).shape[1]
        else:
            self.features = nn.Flatten()
            flat = math.prod(shape)
        self.head = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(flat, config.hidden), nn.ReLU(),
                                  nn.Dropout(config.dropout), nn.Linear(config.hidden, config.num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)


def kl_to_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) summed over latent dims, one value per sample."""
    return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1)


def reconstruction_error(logits: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    """-log p(x|z) up to a constant, summed over features, one value per sample.

    ``mse`` is the paper's squared error (a unit-variance Gaussian); ``bce`` is the
    Bernoulli likelihood for data in [0, 1], given decoder logits.
    """
    if kind == "bce":
        err = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    elif kind == "mse":
        err = (logits - target).pow(2)
    else:
        raise ValueError(f"unknown reconstruction loss {kind!r}")
    return err.flatten(1).sum(dim=1)
