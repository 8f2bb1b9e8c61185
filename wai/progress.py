"""Progress of long work (a model load, a weights conversion): a bar on a terminal, a log
line every 10% otherwise (a service's journal should not fill with carriage returns)."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import TextIO

log = logging.getLogger("wai.engines")

STEP = 10  # percent between log lines


class Progress:
    def __init__(self, what: str, *, stream: TextIO | None = None, tty: bool | None = None) -> None:
        self.what = what
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self._shown = -1  # last percent reported
        self._t0 = time.monotonic()
        self._lock = threading.Lock()

    def update(self, fraction: float) -> None:
        pct = max(0, min(100, int(fraction * 100)))
        with self._lock:
            if self.tty:
                if pct != self._shown:
                    bar = "#" * (pct // 4)
                    self.stream.write(f"\r{self.what} [{bar:<25}] {pct:3d}%")
                    self.stream.flush()
                    self._shown = pct
            elif pct // STEP > self._shown // STEP or (pct == 100 and self._shown < 100):
                log.info("%s: %d%% (%.1f s)", self.what, pct, time.monotonic() - self._t0)
                self._shown = pct

    def done(self) -> None:
        self.update(1.0)
        if self.tty:
            with self._lock:
                self.stream.write(f" {time.monotonic() - self._t0:.1f} s\n")
                self.stream.flush()


def watch_file(path_of: Callable[[], int], expected: int, progress: Progress) -> Callable[[], None]:
    """Report a file growing towards `expected` bytes (`path_of` gives its size now) from a
    thread, every half second; returns the function that stops it."""
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(0.5):
            progress.update(min(0.99, path_of() / expected) if expected else 0.0)

    thread = threading.Thread(target=run, name="progress", daemon=True)
    thread.start()

    def finish() -> None:
        stop.set()
        thread.join()

    return finish
