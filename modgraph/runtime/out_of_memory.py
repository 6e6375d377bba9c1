"""A GPU running out of memory, as an error a user can act on instead of torch's traceback.

``ModGraph``'s commands are wrapped with :func:`as_error`; the CLI prints the error as one line.
"""

from __future__ import annotations

import functools

import torch

from modgraph.errors import DeviceOutOfMemoryError
from modgraph.runtime.progress import done


def as_error(command: str, training: bool = False):
    """Turn ``torch.cuda.OutOfMemoryError`` raised by the wrapped method into :class:`DeviceOutOfMemoryError`.

    ``command``: what ran out (``add-modality``); ``training``: a training command, which takes
    ``--batch-size`` (the message names it, with the value in use when one was given) and writes
    nothing until it has finished.
    """

    def wrap(method):
        @functools.wraps(method)
        def run(self, *args, **kwargs):
            try:
                return method(self, *args, **kwargs)
            except torch.cuda.OutOfMemoryError as exc:
                settings = kwargs.get("settings") or next((a for a in args if hasattr(a, "batch_size")), None)
                batch_size = (kwargs.get("batch_size") or getattr(settings, "batch_size", None)) if training else None
                raise DeviceOutOfMemoryError(message(command, self.device, exc, training, batch_size)) from None
            finally:
                done()  # the last status line's step ends with the call (no "still working" after it)
        return run

    return wrap


def message(command: str, device, exc: BaseException, training: bool, batch_size: int | None = None) -> str:
    """One line: what ran out of memory, torch's own first sentence, and what to do."""
    # torch's first line: "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of ..."
    first = ". ".join((str(exc).strip().splitlines() or ["out of memory"])[0].split(". ")[:2]).rstrip(".")
    smaller = f"a smaller --batch-size (now {batch_size}), " if batch_size else \
        "a smaller --batch-size, " if training else ""
    saved = "; nothing was saved" if training else ""
    return (f"{command} ran out of GPU memory on {device} ({first}){saved}. Use {smaller}"
            f"--device cpu, or free the GPU (other processes holding its memory show in nvidia-smi)")
