"""The one progress adapter: a tqdm bar or spinner on a terminal, plain lines on stderr otherwise.

Off a terminal a redrawn bar is noise in a log, so a :class:`Progress` prints the lines its owner
asks for (one per epoch, one per tenth of a cache build), each with the time and ETA; and while a
:class:`Progress` or a :func:`phase` is open, a heartbeat prints "still working" whenever nothing
was printed for ``MODGRAPH_PROGRESS_SECONDS`` (10 s), so no phase is silent in a log. On a
terminal a phase shows a spinner with what it is doing and for how long.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from contextlib import contextmanager

# Off a terminal: the longest silence while something is running; on one: how often a spinner is redrawn.
DEFAULT_HEARTBEAT_SECONDS = 10.0
SPINNER_SECONDS = 0.5


def heartbeat_seconds() -> float:
    try:
        return max(0.05, float(os.environ.get("MODGRAPH_PROGRESS_SECONDS") or DEFAULT_HEARTBEAT_SECONDS))
    except ValueError:
        return DEFAULT_HEARTBEAT_SECONDS


def _speaks(enabled: bool) -> bool:
    """Whether this process prints progress: asked to, and rank 0 under torchrun."""
    return enabled and os.environ.get("RANK", "0") == "0"


class _Heartbeat:
    """What is running now (a stack of open phases) and when a progress line was last printed."""

    def __init__(self):
        self.lock = threading.Lock()
        self.running: list = []  # Progress or _Phase objects, innermost last
        self.implicit = None  # the phase a status() line began: it lasts until the next one, or done(),
        # beneath the bars and phases opened meanwhile, so that the time between them is covered too
        self.last_line = time.monotonic()
        self.thread: threading.Thread | None = None

    def emit(self, text: str) -> None:
        with self.lock:
            self.last_line = time.monotonic()
        print(text, file=sys.stderr, flush=True)

    def open(self, item, implicit: bool = False) -> None:
        if implicit:  # a status line's step lasts until the next one; bars and phases open above it
            self.end_implicit()
        with self.lock:
            if implicit:
                self.implicit = item
            self.running.append(item)
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._beat, name="modgraph-progress", daemon=True)
                self.thread.start()

    def close(self, item) -> None:
        with self.lock:
            if item in self.running:
                self.running.remove(item)

    def end_implicit(self) -> None:
        with self.lock:
            item, self.implicit = self.implicit, None
        if item is not None:
            self.close(item)
            item.close()

    def _beat(self) -> None:
        while True:
            time.sleep(min(SPINNER_SECONDS, heartbeat_seconds() / 4))
            with self.lock:
                if not self.running:
                    self.thread = None
                    return
                top = self.running[-1]
                quiet_for = time.monotonic() - max(self.last_line, top.start)  # silence within this step
            try:
                top.tick(quiet_for >= heartbeat_seconds())
            except Exception:  # a closed stream at exit: progress is never worth a crash
                return


_HEARTBEAT = _Heartbeat()


def status(text: str, enabled: bool = True) -> None:
    """One line on stderr saying what a step without a bar is doing, so no phase is silent.

    The step lasts until the next status line, bar or phase, or :func:`done`: meanwhile a spinner
    turns on a terminal, and a log gets a "still working" line after each silence. Under torchrun
    only rank 0 speaks.
    """
    if _speaks(enabled):
        _HEARTBEAT.emit(text)
        _HEARTBEAT.open(_Phase(text), implicit=True)


def done() -> None:
    """The command (or API call) is over: the step its last status line began ends here."""
    _HEARTBEAT.end_implicit()


class _Phase:
    """A step whose length is not counted: a spinner on a terminal, "still working" lines in a log."""

    def __init__(self, desc: str):
        self.desc, self.start = desc, time.monotonic()
        self.lines = not sys.stderr.isatty()
        self.bar = None
        if not self.lines:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=None, desc=desc, leave=False, dynamic_ncols=True, bar_format="{desc}: {elapsed}")

    def tick(self, quiet: bool) -> None:
        if self.bar is not None:
            self.bar.refresh()
        elif quiet:
            _HEARTBEAT.emit(f"{self.desc}: still working ({time.monotonic() - self.start:.0f} s)")

    def close(self) -> float:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        return time.monotonic() - self.start


@contextmanager
def phase(desc: str, enabled: bool = True, summary: bool = True):
    """Show that ``desc`` is under way until the block ends (spinner, or a line at least every 10 s).

    ``summary``: a phase that took more than 2 s leaves one line saying how long.
    """
    if not _speaks(enabled):
        yield
        return
    item = _Phase(desc)
    _HEARTBEAT.open(item)
    try:
        yield
    finally:
        _HEARTBEAT.close(item)
        seconds = item.close()
        if summary and seconds > 2:
            _HEARTBEAT.emit(f"{desc}: done in {seconds:.0f} s")


class Progress:
    """Counts steps towards ``total``; shows a bar on a terminal, or lines when ``log`` is called off one.

    Off a terminal it also prints a line with the count and ETA whenever nothing was printed for
    the heartbeat's interval. Disabled, it shows nothing. Use it as a context manager (the bar is
    closed on exit).
    """

    def __init__(self, total: int, desc: str, enabled: bool = True, unit: str = "it", initial: int = 0,
                 summary_after: float = 0.0):
        """``summary_after``: the summary line is left only when the loop took longer than this (seconds)."""
        self.total, self.desc, self.n, self.first, self.unit = total, desc, initial, initial, unit
        self.summary_after = summary_after
        self.postfix: dict = {}
        self.start = time.monotonic()
        enabled = _speaks(enabled)
        self.lines = enabled and not sys.stderr.isatty()
        self.bar = None
        if enabled and not self.lines:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, leave=False, dynamic_ncols=True,
                            unit_scale=unit == "B")
        self._next_tenth = (10 * initial // max(1, total) + 1) * total / 10
        if enabled:
            _HEARTBEAT.open(self)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False

    def close(self) -> None:
        """Close the bar, leaving one summary line: what ran, how far, in how long, with its last figures."""
        _HEARTBEAT.close(self)
        if self.bar is None and not self.lines:
            return
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        self.lines = False
        if time.monotonic() - self.start <= self.summary_after:
            return
        figures = ", ".join(f"{k} {v}" for k, v in self.postfix.items())
        _HEARTBEAT.emit(f"{self.desc}: {self.n - self.first} of {self.total - self.first} steps in "
                        f"{time.monotonic() - self.start:.0f} s" + (f" ({figures})" if figures else ""))

    def tick(self, quiet: bool) -> None:
        """The heartbeat's call: on a terminal, redraw the bar (its clock moves on during a long step);
        off one, after a silence, say how far this has come."""
        if self.bar is not None:
            self.bar.refresh()
        elif self.lines and quiet:
            self.log(detail=f"{self.n - self.first}/{self.total - self.first} {self.unit}, ", still=True)

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
            _HEARTBEAT.emit(f"{self.desc}: {text}")

    def log(self, *words: str, detail: str = "", still: bool = False, **values) -> None:
        """Off a terminal, print ``words``, the postfix and ``values`` as "name value", then in
        parentheses ``detail``, the time so far and the ETA (``still``: a heartbeat line)."""
        if not self.lines:
            return
        elapsed = time.monotonic() - self.start
        eta = elapsed / max(1, self.n - self.first) * (self.total - self.n)
        head = " ".join([*(["still working"] if still else []), *words,
                         *(f"{k} {v}" for k, v in {**self.postfix, **values}.items())])
        self.say(f"{head} ({detail}{elapsed:.0f} s, ETA {eta:.0f} s)")

    def passed_tenth(self) -> bool:
        """Whether the count reached another tenth of the total (or the end) since this last said so."""
        if self.n < self._next_tenth and self.n != self.total:
            return False
        while self._next_tenth <= self.n:
            self._next_tenth += self.total / 10
        return True
