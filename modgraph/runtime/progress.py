"""Progress of long loops: a tqdm bar on a terminal, else plain lines on stderr.

Off a terminal a redrawn bar is noise in a log, so a :class:`Progress` prints only the lines
its owner asks for (one per epoch, one per tenth of a cache build), each with the time and ETA.
"""

from __future__ import annotations

import os
import sys
import time


def status(text: str, enabled: bool = True) -> None:
    """One line on stderr saying what a step without a bar is doing, so no phase is silent.

    Under torchrun only rank 0 speaks.
    """
    if enabled and os.environ.get("RANK", "0") == "0":
        print(text, file=sys.stderr, flush=True)


class Progress:
    """Counts steps towards ``total``; shows a bar on a terminal, or lines when ``log`` is called off one.

    Disabled, it shows nothing. Use it as a context manager (the bar is closed on exit).
    """

    def __init__(self, total: int, desc: str, enabled: bool = True, unit: str = "it", initial: int = 0):
        self.total, self.desc, self.n, self.first = total, desc, initial, initial
        self.postfix: dict = {}
        self.start = time.monotonic()
        self.lines = enabled and not sys.stderr.isatty()
        self.bar = None
        if enabled and not self.lines:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, leave=False, dynamic_ncols=True)
        self._next_tenth = (10 * initial // max(1, total) + 1) * total / 10

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False

    def close(self) -> None:
        """Close the bar, leaving one summary line: what ran, how far, in how long, with its last figures."""
        if self.bar is None and not self.lines:
            return
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        figures = ", ".join(f"{k} {v}" for k, v in self.postfix.items())
        status(f"{self.desc}: {self.n - self.first} of {self.total - self.first} steps in "
               f"{time.monotonic() - self.start:.0f} s" + (f" ({figures})" if figures else ""))

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.bar is not None:
            self.bar.update(n)

    def set_postfix(self, **values) -> None:
        """Figures shown after the bar, and at the start of the next :meth:`log` line."""
        self.postfix = values
        if self.bar is not None:
            self.bar.set_postfix(**values)

    def say(self, text: str) -> None:
        """Off a terminal, print ``desc: text``; on one the bar says enough."""
        if self.lines:
            print(f"{self.desc}: {text}", file=sys.stderr, flush=True)

    def log(self, *words: str, detail: str = "", **values) -> None:
        """Off a terminal, print ``words``, the postfix and ``values`` as "name value", then in
        parentheses ``detail``, the time so far and the ETA."""
        if not self.lines:
            return
        elapsed = time.monotonic() - self.start
        eta = elapsed / max(1, self.n - self.first) * (self.total - self.n)
        head = " ".join([*words, *(f"{k} {v}" for k, v in {**self.postfix, **values}.items())])
        self.say(f"{head} ({detail}{elapsed:.0f} s, ETA {eta:.0f} s)")

    def passed_tenth(self) -> bool:
        """Whether the count reached another tenth of the total (or the end) since this last said so."""
        if self.n < self._next_tenth and self.n != self.total:
            return False
        while self._next_tenth <= self.n:
            self._next_tenth += self.total / 10
        return True
