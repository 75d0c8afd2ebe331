"""Progress for the ``mimo`` commands: a tqdm bar on a terminal, a plain line every few seconds
(and at the end) when stderr is a file or a pipe, so logs get a readable line, not one per update.

    with Progress("denoise", total=50, unit="step") as bar:
        for i in range(50):
            bar.update(i + 1)          # absolute count done
"""
from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

#: seconds between two progress lines in a log
LOG_INTERVAL = 5.0


class Progress:
    """One stage's progress. ``update(n)`` sets the absolute count done (not an increment)."""

    def __init__(self, desc: str, total: int, unit: str = "it", quiet: bool = False,
                 stream: TextIO | None = None, interval: float = LOG_INTERVAL,
                 clock: Callable[[], float] = time.monotonic):
        self.desc, self.total, self.unit = desc, int(total), unit
        self.stream = stream if stream is not None else sys.stderr
        self.quiet, self.interval, self.clock = quiet, interval, clock
        self.n = 0
        self._bar = None
        self._start = self._last = clock()
        self._printed_n = -1
        if not quiet and _is_terminal(self.stream):
            from tqdm import tqdm

            self._bar = tqdm(total=self.total, desc=desc, unit=unit, leave=False, file=self.stream)

    def update(self, n: int) -> None:
        self.n = int(n)
        if self.quiet:
            return
        if self._bar is not None:
            self._bar.n = self.n
            self._bar.refresh()
            return
        now = self.clock()
        if now - self._last >= self.interval:
            self._line(now)

    def _line(self, now: float) -> None:
        self._last = now
        self._printed_n = self.n
        pct = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        print(f"{self.desc}: {self.n}/{self.total} {self.unit}s{pct}, {now - self._start:.1f} s",
              file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif not self.quiet and self._printed_n != self.n:
            self._line(self.clock())

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
