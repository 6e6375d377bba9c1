"""A stand-in accelerator for CPU-only machines: tensors that say they are on ``meta`` but hold CPU data.

The conformance kit (:mod:`modgraph.testing`) runs a plugin's tensor hooks on it, so a tensor a
hook makes on the CPU next to its input raises here as it would on a GPU.

Why not plain ``meta`` tensors: they hold no data, so ``nonzero``, ``item``, ``tolist`` and
boolean indexing (text augmentation, statistics, file writing) cannot run on them. Here every
op runs on the real CPU data, and the result is what the real op gives; the device rules a
GPU enforces are checked on the way:

* an op whose tensors are some on the simulated device and some plain CPU tensors raises the
  error CUDA raises, except for CPU scalars (0-dim), the index tensors of indexing ops and
  ``copy_``, which CUDA accepts too;
* a factory given ``device=x.device`` (``torch.zeros``, ``torch.tensor``, ``torch.randint``...)
  makes a simulated tensor; given a CPU generator as well, it raises as CUDA does;
* ``.cpu()`` / ``.to("cpu")`` give plain CPU tensors, and ``.numpy()`` of a simulated tensor
  raises (a GPU tensor has no NumPy view either).
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map

DEVICE = torch.device("meta")

_aten = torch.ops.aten
# CUDA takes CPU index tensors for indexing a GPU tensor, and copies across devices.
_INDEX_OPS = {_aten.index.Tensor, _aten.index_put.default, _aten.index_put_.default, _aten._index_put_impl_.default}
_CROSS_DEVICE_OPS = {_aten.copy_.default, _aten._to_copy.default}


class DeviceMismatchError(RuntimeError):
    """What a GPU raises when an op gets tensors on two devices (a hook made one on the CPU)."""


class SimulatedTensor(torch.Tensor):
    """A tensor that reports :data:`DEVICE` and holds its data in a CPU tensor ``elem``."""

    elem: torch.Tensor
    __torch_function__ = torch._C._disabled_torch_function_impl

    @staticmethod
    def __new__(cls, elem: torch.Tensor):
        return torch.Tensor._make_wrapper_subclass(
            cls, elem.shape, strides=elem.stride(), storage_offset=elem.storage_offset(), dtype=elem.dtype,
            layout=elem.layout, device=DEVICE, requires_grad=elem.requires_grad)

    def __init__(self, elem: torch.Tensor):
        self.elem = elem

    def __repr__(self) -> str:
        return f"SimulatedTensor({self.elem!r}, device={DEVICE})"

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        _check_devices(func, args, kwargs)
        if func is _aten._to_copy.default and _device_type(kwargs.get("device")) == "cpu":
            return func(_unwrap(args[0]), *args[1:], **kwargs)  # leaving the device: a plain CPU tensor
        inputs = {id(t.elem): t for t in tree_flatten((args, kwargs))[0] if isinstance(t, SimulatedTensor)}
        out = func(*tree_map(_unwrap, args), **tree_map(_unwrap, kwargs))
        # In-place ops and ops that return an input give back the same simulated tensor.
        return tree_map(lambda t: inputs.get(id(t), t) if isinstance(t, torch.Tensor) and id(t) in inputs
                        else _wrap(t), out)


def to_device(x: torch.Tensor) -> SimulatedTensor:
    """A copy of CPU tensor ``x`` on the simulated device."""
    return SimulatedTensor(x.detach().to("cpu", copy=True))


def is_on_device(x) -> bool:
    return isinstance(x, SimulatedTensor)


@contextmanager
def simulated():
    """Within the block, factories given the simulated device make simulated tensors (see module docstring)."""
    with _Factories(), _InternalFactories():
        yield


class _Factories(TorchFunctionMode):
    """``torch.zeros(..., device=meta)``, ``torch.tensor(..., device=meta)``, ``x.to(meta)``: CPU data, simulated."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.Tensor.tolist and isinstance(args[0], SimulatedTensor):
            return args[0].elem.tolist()  # as from a GPU: the values, copied to the host
        if func in (torch.Tensor.numpy, torch.Tensor.__array__) and isinstance(args[0], SimulatedTensor):
            raise TypeError(f"can't convert {DEVICE} (simulated) device type tensor to numpy. Use Tensor.cpu() to "
                            f"copy the tensor to host memory first.")  # what a GPU tensor says
        if func is torch.Tensor.__setitem__ and isinstance(args[0], SimulatedTensor) \
                and isinstance(args[2], (bool, int, float)):
            # torch makes a Python number a tensor on the target's device, which would be an empty meta one.
            return func(args[0], args[1], torch.tensor(args[2]))
        new_from = getattr(func, "__name__", "").startswith("new_") and args and isinstance(args[0], SimulatedTensor)
        if func is torch._C._nn._parse_to or (  # Module.to(meta) parses its arguments: they stay as given
                not new_from and not any(_device_type(v) == "meta" for v in (*args, *kwargs.values()))):
            return func(*args, **kwargs)
        generator = kwargs.get("generator")
        if generator is not None and generator.device.type != DEVICE.type:
            raise DeviceMismatchError(f"Expected a '{DEVICE.type}' device type for generator but found "
                                      f"'{generator.device.type}' (simulated device)")
        args = tuple("cpu" if _device_type(v) == "meta" else v for v in args)
        kwargs = {k: "cpu" if _device_type(v) == "meta" else v for k, v in kwargs.items()}
        if new_from:
            args = (args[0].elem, *args[1:])
        return tree_map(lambda t: _wrap(t) if isinstance(t, torch.Tensor) else t, func(*args, **kwargs))


class _InternalFactories(TorchDispatchMode):
    """Factories torch calls inside an op (autograd's zeros for a backward pass) with the simulated device."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if _device_type(kwargs.get("device")) != "meta":
            return func(*args, **kwargs)
        out = func(*tree_map(_unwrap, args), **{**tree_map(_unwrap, kwargs), "device": torch.device("cpu")})
        return tree_map(lambda t: _wrap(t) if isinstance(t, torch.Tensor) else t, out)


def _device_type(value) -> str | None:
    if isinstance(value, torch.device):
        return value.type
    if isinstance(value, str):
        try:
            return torch.device(value).type
        except RuntimeError:
            return None
    return None


def _unwrap(t):
    return t.elem if isinstance(t, SimulatedTensor) else t


def _wrap(t):
    if isinstance(t, SimulatedTensor) or not isinstance(t, torch.Tensor):
        return t
    if t.device.type == "meta":
        raise DeviceMismatchError("an op made a meta tensor with no data (a factory the simulated device does not "
                                  "cover); make it with device=x.device inside modgraph.testing's checks")
    return SimulatedTensor(t)


def _check_devices(func, args, kwargs) -> None:
    if func in _CROSS_DEVICE_OPS:
        return
    checked = (args[0], *args[2:], kwargs) if func in _INDEX_OPS else (args, kwargs)
    tensors = [t for t in tree_flatten(checked)[0] if isinstance(t, torch.Tensor)]
    if any(t.device.type == "meta" and not isinstance(t, SimulatedTensor) for t in tensors):
        raise DeviceMismatchError(f"{func} got a meta tensor with no data; on the simulated device make tensors "
                                  f"with device=x.device (a factory the simulation does not cover made this one)")
    on_device = any(isinstance(t, SimulatedTensor) for t in tensors)
    host = [t for t in tensors if not isinstance(t, SimulatedTensor) and t.dim() > 0]
    if on_device and host:
        raise DeviceMismatchError(
            f"Expected all tensors to be on the same device, but found at least two devices, {DEVICE} "
            f"(simulated) and {host[0].device}! (in {func}: a tensor shaped {tuple(host[0].shape)} is on the CPU)")
