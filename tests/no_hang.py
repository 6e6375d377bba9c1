"""A guard for tests of files that could block: they fail after a deadline instead of hanging."""

from __future__ import annotations

import contextlib
import signal


@contextlib.contextmanager
def deadline(seconds: int = 20):
    """Fail instead of hanging: a call that blocks (opening a FIFO, reading a device) is interrupted
    after ``seconds`` by SIGALRM, whose handler raises ``TimeoutError`` in the main thread."""
    def expired(*_):
        raise TimeoutError(f"still running after {seconds} s: something blocked (a FIFO or a device was opened)")

    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
