"""The one reconnect loop shared by the consumer and the relay."""

from __future__ import annotations

import threading

import pytest

from conveyor.workers.runtime import reconnect


class Lost(Exception):
    pass


def test_a_lost_connection_is_served_again_until_stopped(monkeypatch):
    # Given a serve function that loses its connection twice, then is stopped
    monkeypatch.setattr(reconnect, "reconnect_delay", lambda failures: 0.0)
    stop, calls, lost = threading.Event(), [], []

    def serve() -> None:
        calls.append(1)
        if len(calls) == 3:
            stop.set()
            return
        raise Lost("gone")

    # When it runs
    reconnect.serve_reconnecting(serve, stop=stop, errors=(Lost,), progress=lambda: 0,
                                 on_lost=lambda error, delay: lost.append(str(error)))

    # Then it was served three times, and each loss was reported
    assert len(calls) == 3 and lost == ["gone", "gone"]


def test_backoff_grows_without_progress_and_resets_after_it(monkeypatch):
    failures_seen: list[int] = []
    monkeypatch.setattr(reconnect, "reconnect_delay", lambda failures: failures_seen.append(failures) or 0.0)
    stop, generation = threading.Event(), [0]
    script = iter(["fail", "fail", "progress", "fail", "stop"])

    def serve() -> None:
        step = next(script)
        if step == "stop":
            stop.set()
            return
        if step == "progress":
            generation[0] += 1
        raise Lost(step)

    reconnect.serve_reconnecting(serve, stop=stop, errors=(Lost,), progress=lambda: generation[0],
                                 on_lost=lambda error, delay: None)

    assert failures_seen == [1, 2, 1, 2]


def test_an_unexpected_error_is_not_swallowed():
    with pytest.raises(ZeroDivisionError):
        reconnect.serve_reconnecting(lambda: 1 / 0, stop=threading.Event(), errors=(Lost,),
                                     progress=lambda: 0, on_lost=lambda error, delay: None)


@pytest.mark.parametrize("failures", [1, 2, 5, 7, 50])
def test_the_delay_is_jittered_and_capped(failures):
    delays = [reconnect.reconnect_delay(failures) for _ in range(200)]
    full = min(30.0, 0.25 * 2 ** min(failures, 7))
    assert all(full * 0.5 <= d <= full for d in delays) and max(delays) <= 30.0
    assert len(set(delays)) > 1
