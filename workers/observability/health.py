"""What the probes answer from, for one `conveyor run` process.

**Liveness** (``/healthz``) is about the process itself, never its dependencies: every
supervised thread is alive and every loop ticked within ``CONVEYOR_LIVENESS_TIMEOUT``. A
loop waiting out a database or broker outage still ticks, so an outage never gets a
healthy pod killed. **Readiness** (``/readyz``) is about serving: the schema is what this
code needs, each worker is consuming from the broker, and no worker is waiting out a
database outage. Each condition is set by the loop that knows it; ``None`` means fine.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from conveyor.workers.observability.metrics import READY


@dataclass(frozen=True)
class Verdict:
    ok: bool
    detail: dict[str, object]

    def body(self, *, ok: str, failed: str) -> dict[str, object]:
        return {"status": ok if self.ok else failed, **self.detail}


class Health:
    def __init__(self, *, liveness_timeout: float = 120.0) -> None:
        self.liveness_timeout = liveness_timeout
        self._lock = threading.Lock()
        self._beats: dict[str, float] = {}
        self._problems: dict[str, str] = {}
        self._threads: Callable[[], list[str]] = list
        READY.set(0)

    # -- written by the loops ------------------------------------------------------------------

    def beat(self, loop: str) -> None:
        """``loop`` is turning (called every iteration; a dict store, no lock needed)."""
        self._beats[loop] = time.monotonic()

    def forget(self, loop: str) -> None:
        """``loop`` ended on purpose (stopping): it no longer has to tick."""
        self._beats.pop(loop, None)

    def set_problem(self, condition: str, problem: str | None) -> None:
        """``condition`` (``schema``, ``broker:orders``, ``database:orders``, …) is fine
        (``None``) or names what is missing."""
        with self._lock:
            if problem is None:
                self._problems.pop(condition, None)
            else:
                self._problems[condition] = problem
            ready = not self._problems
        READY.set(1 if ready else 0)

    def watch_threads(self, dead_threads: Callable[[], list[str]]) -> None:
        """``dead_threads()`` names the supervised threads that died."""
        self._threads = dead_threads

    # -- read by the probes --------------------------------------------------------------------

    def liveness(self) -> Verdict:
        now = time.monotonic()
        stale = {loop: round(now - at, 1) for loop, at in list(self._beats.items())
                 if now - at > self.liveness_timeout}
        dead = self._threads()
        detail: dict[str, object] = {}
        if stale:
            detail["stale_loops_s"] = stale
        if dead:
            detail["dead_threads"] = dead
        return Verdict(not stale and not dead, detail)

    def readiness(self) -> Verdict:
        with self._lock:
            problems = dict(self._problems)
        return Verdict(not problems, {"missing": problems} if problems else {})
