"""A primary and a streaming standby of our own (initdb, pg_basebackup -R), for the tests of
what must go to a replica (CONVEYOR_DATABASE_READ_URL) and what a replica must refuse.

``with primary_and_standby() as (primary, standby):`` yields two ``RestartablePostgres``
servers on free ports; the standby replays the primary's WAL (hot standby, read-only).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from conveyor.devservices import RestartablePostgres


@contextmanager
def primary_and_standby() -> Iterator[tuple[RestartablePostgres, RestartablePostgres]]:
    with RestartablePostgres(settings={"wal_level": "replica"}) as primary, \
            RestartablePostgres(settings={"hot_standby": "on"}) as standby:
        standby.stop(mode="fast")
        target = os.path.join(standby.workdir, "standby")
        _base_backup(primary, standby, target)
        standby.use_data_directory(target)
        standby.start()
        wait_replayed(primary, standby)
        yield primary, standby


def wait_replayed(primary: RestartablePostgres, standby: RestartablePostgres, timeout: float = 30) -> None:
    """Until the standby has replayed everything the primary wrote so far."""
    with psycopg.connect(primary.database_url, autocommit=True) as conn:
        row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
    assert row is not None
    deadline = time.monotonic() + timeout
    with psycopg.connect(standby.database_url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            done = conn.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", [row[0]]).fetchone()
            if done and done[0]:
                return
            time.sleep(0.05)
    raise AssertionError("the standby did not catch up")


def _base_backup(primary: RestartablePostgres, standby: RestartablePostgres, target: str) -> None:
    command = [f"{primary.bindir}/pg_basebackup", "-D", target, "-R", "-X", "stream", "-c", "fast",
               "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres"]
    done = subprocess.run(command, cwd=standby.workdir, capture_output=True, text=True, timeout=120,
                          **standby._as_user)  # type: ignore[call-overload]  # as the server's user
    if done.returncode != 0:
        raise AssertionError(f"pg_basebackup failed: {done.stderr[-800:]}")
