"""Recording the point in time T, exactly, while the workers keep writing.

A time alone is not enough to compare a restore with: a transaction that committed just
before T may not yet be visible to a snapshot taken "at T". So ``mark`` makes T a quiet
instant: one transaction takes every Conveyor table in SHARE mode (which waits for every
writing transaction on them to end, commit visible, and holds new writers back), reads
``clock_timestamp()`` as T, and while it holds the locks the checksums of every table and the
inbox's message ids are read in another session. Every commit before T is in them, every
commit after T comes after the locks are released. Recovery to T (which stops before the
first commit later than T) must then give back exactly these checksums.

Writers wait a moment (lock_timeout and deadlocks are retried by the workers, and here).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg import sql

from conveyor.db.checksum import table_checksums

TABLES = ("SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
          "WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition "
          "AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%%' "
          "ORDER BY 1, 2")
INBOX_IDS = "SELECT message_id FROM inbox"
ATTEMPTS = 10


@dataclass(frozen=True)
class Point:
    at: datetime                               # T, the server's clock
    checksums: dict[str, tuple[int, str]]      # schema.table -> (rows, hash) at T
    inbox: frozenset[str]                      # message ids processed at T
    lock_wait_s: float                         # how long the barrier waited for writers


def mark(database_url: str) -> Point:
    """T, with the checksums of every table and the inbox as of T (retried on deadlock)."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return _mark_once(database_url)
        except (psycopg.errors.DeadlockDetected, psycopg.errors.LockNotAvailable):
            if attempt == ATTEMPTS:
                raise
            time.sleep(0.1 * attempt)
    raise AssertionError("unreachable")


def _mark_once(database_url: str) -> Point:
    with psycopg.connect(database_url, connect_timeout=5) as barrier, \
            psycopg.connect(database_url, autocommit=True, connect_timeout=5) as reader:
        barrier.execute("SET lock_timeout = '5s'")
        # A worker that already holds one table and waits for another we hold is a deadlock:
        # find it quickly, and from our side, so that it is the barrier that gives way and
        # tries again, never a worker's transaction.
        barrier.execute("SET deadlock_timeout = '50ms'")
        tables = [sql.Identifier(schema, name) for schema, name in barrier.execute(TABLES).fetchall()]
        started = time.monotonic()
        barrier.execute(sql.SQL("LOCK TABLE {} IN SHARE MODE").format(sql.SQL(", ").join(tables)))
        waited = time.monotonic() - started
        (at,) = barrier.execute("SELECT clock_timestamp()").fetchone() or (None,)
        checksums = table_checksums(reader)
        inbox = frozenset(row[0] for row in reader.execute(INBOX_IDS))
        barrier.rollback()  # releases the locks: writers go on, every later commit is after T
    return Point(at, checksums, inbox, round(waited, 3))


def inbox_ids(database_url: str) -> frozenset[str]:
    with psycopg.connect(database_url, autocommit=True, connect_timeout=5) as conn:
        return frozenset(row[0] for row in conn.execute(INBOX_IDS))


def inbox_count(database_url: str) -> int:
    with psycopg.connect(database_url, autocommit=True, connect_timeout=5) as conn:
        row = conn.execute("SELECT count(*) FROM inbox").fetchone()
    return row[0] if row else 0
