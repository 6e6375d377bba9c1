"""Mixed precision for training: bf16 autocast around a module's forward, fp32 everywhere else.

Weights, gradients, optimizer state, losses, validation and stored files stay fp32; only the
training forward passes run in bfloat16 (on GPUs that have it, or on the CPU, where it is slower
than fp32 unless the CPU has native bf16 instructions).
"""

from __future__ import annotations

import torch
from torch import nn

from modgraph.errors import ConfigError

PRECISIONS = ("fp32", "bf16")


def check_precision(precision: str, device: torch.device) -> None:
    if precision not in PRECISIONS:
        raise ConfigError(f"--precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported(including_emulation=False):
        raise ConfigError(f"--precision bf16: GPU {torch.cuda.get_device_name(device)} has no native bfloat16; "
                          f"use --precision fp32")


def _fp32(value):
    if isinstance(value, torch.Tensor) and value.is_floating_point():
        return value.float()
    if isinstance(value, (tuple, list)):
        return type(value)(_fp32(v) for v in value)
    return value


class Autocast(nn.Module):
    """Runs ``module``'s forward under bf16 autocast and hands back fp32 outputs, so loss maths stays fp32."""

    def __init__(self, module: nn.Module, device_type: str):
        super().__init__()
        self.module = module
        self.device_type = device_type

    def forward(self, *args, **kwargs):
        with torch.autocast(self.device_type, dtype=torch.bfloat16):
            out = self.module(*args, **kwargs)
        return _fp32(out)


def for_training(module: nn.Module, precision: str, device: torch.device) -> nn.Module:
    """The module a training loop calls for ``precision``; its weights are ``module``'s (fp32)."""
    check_precision(precision, device)
    return module if precision == "fp32" else Autocast(module, device.type)
