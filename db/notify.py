"""The outbox wake-up: NOTIFY on one channel when outbox rows commit, LISTEN in the relay.

The notification carries no data (the outbox table is the truth): it only saves the relay
a poll. Writers notify in ``conveyor.db.outbox`` / ``conveyor.db.intake`` and in the
``stock_levels_changes_on_*`` triggers (migrations V003, V007, which spell the channel in
SQL); the relay waits here. Driver errors leave as ``conveyor.db.errors``.
"""

from __future__ import annotations

from collections.abc import Callable

import psycopg

from conveyor.db.errors import wrap_exceptions

OUTBOX_CHANNEL = "conveyor_outbox"
NOTIFY_OUTBOX = f"SELECT pg_notify('{OUTBOX_CHANNEL}', '')"
LISTEN_OUTBOX = f"LISTEN {OUTBOX_CHANNEL}"


def listen(conn: psycopg.Connection) -> None:
    """Subscribe ``conn`` (autocommit, used for nothing else) to the outbox channel."""
    with wrap_exceptions(conn):
        conn.execute(LISTEN_OUTBOX)


def wait_for_wakeup(conn: psycopg.Connection, timeout: float) -> None:
    """Return on the first notification or after ``timeout`` seconds; the notifications
    already received with it are the same news and are read too."""
    with wrap_exceptions(conn):
        for _ in conn.notifies(timeout=timeout, stop_after=1):
            pass
        for _ in conn.notifies(timeout=0):
            pass


def drain_for(conn: psycopg.Connection, timeout: float, *, stop: Callable[[], bool]) -> None:
    """Read (and ignore) notifications for ``timeout`` seconds, or until ``stop()``: a
    listener that never reads holds up the server's notification queue for everybody."""
    with wrap_exceptions(conn):
        for _ in conn.notifies(timeout=timeout):
            if stop():
                return
