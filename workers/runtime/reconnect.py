"""The one reconnect loop: serve until stopped, and after a lost connection wait a jittered,
growing delay before serving again. Used by the consumer and the relay alike."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable


def reconnect_delay(failures: int) -> float:
    """Jittered exponential backoff: ~0.5 s after the first failure, at most 30 s."""
    return min(30.0, 0.25 * 2 ** min(failures, 7)) * random.uniform(0.5, 1.0)


def serve_reconnecting(serve: Callable[[], None], *, stop: threading.Event,
                       errors: tuple[type[BaseException], ...], progress: Callable[[], int],
                       on_lost: Callable[[BaseException, float], None], max_delay: float = 30.0,
                       should_reconnect: Callable[[BaseException], bool] = lambda error: True) -> None:
    """Call ``serve`` until ``stop`` is set. An exception of ``errors`` means the connection is
    gone: ``on_lost(error, delay)`` runs, then the loop waits ``delay``. A connection that made
    progress (``progress()`` moved, e.g. it got as far as consuming) resets the backoff. An
    error of ``errors`` that ``should_reconnect`` refuses is raised, not retried."""
    failures = 0
    while not stop.is_set():
        before = progress()
        try:
            serve()
        except errors as error:
            if not should_reconnect(error):
                raise
            failures = 1 if progress() != before else failures + 1
            delay = min(reconnect_delay(failures), max_delay)
            on_lost(error, delay)
            stop.wait(delay)
