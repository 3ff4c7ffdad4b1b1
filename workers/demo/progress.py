"""A dependency-free progress line: redrawn in place on a TTY, a line every few seconds otherwise."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, label: str, total: int, *, stream=sys.stderr, every_s: float = 2.0) -> None:
        self.label, self.total, self.stream, self.every_s = label, total, stream, every_s
        self.done = 0
        self.started = time.monotonic()
        self._last_draw = 0.0
        self._tty = stream.isatty()

    def advance(self, count: int = 1) -> None:
        self.done += count
        now = time.monotonic()
        if now - self._last_draw >= (0.1 if self._tty else self.every_s) or self.done >= self.total:
            self._last_draw = now
            self._draw(now)

    def close(self) -> None:
        if self.done < self.total or self._tty:
            self._draw(time.monotonic())
        if self._tty:
            self.stream.write("\n")
        self.stream.flush()

    def _draw(self, now: float) -> None:
        fraction = self.done / self.total if self.total else 1.0
        rate = self.done / max(now - self.started, 0.5)
        bar = "#" * int(fraction * 30)
        line = f"{self.label:<10} [{bar:<30}] {self.done:>7}/{self.total} {fraction:6.1%} {rate:8.0f}/s"
        self.stream.write(("\r" + line) if self._tty else (line + "\n"))
        self.stream.flush()
