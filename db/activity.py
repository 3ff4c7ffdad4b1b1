"""What the database's sessions are doing to each other (``conveyor db locks``).

This module owns the SQL over ``pg_stat_activity``, ``pg_locks`` and ``pg_stat_database``:
the sessions waiting for a lock and the sessions they wait for (``pg_blocking_pids``), the
long transactions, the sessions idle inside a transaction, and the deadlock count; and the
pure walk that turns "who waits for whom" into chains. Every query looks at the sessions of
the current database (and at whoever its waiting sessions wait for), leaves out the backend
that asks, and measures ages from the start of its own statement. Query texts may hold personal data:
they leave here cut to ``query_chars`` characters, on one line. Nothing here writes; driver
errors leave as Conveyor's ``conveyor.db.errors`` family.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import psycopg

from conveyor.db.errors import wrap_exceptions

QUERY_CHARS = 200
# Cut first (the whole text never leaves the server), then fold whitespace onto one line.
_QUERY_TEXT = """regexp_replace(left(a.query, %(query_chars)s), '\\s+', ' ', 'g')
       || CASE WHEN length(a.query) > %(query_chars)s THEN '...' ELSE '' END"""
# A transaction that failed forgets when it began (xact_start is NULL while it waits for its
# ROLLBACK): it is counted from when it failed, the latest it can have begun.
_XACT_START = "coalesce(a.xact_start, CASE WHEN a.state = 'idle in transaction (aborted)' THEN a.state_change END)"


def _age(timestamp: str) -> str:
    """Seconds from ``timestamp`` to this statement's start (the activity snapshot is taken a
    moment after it, so a wait that began in between would come out just below 0); NULL stays
    NULL, which ``greatest`` alone would turn into 0."""
    return (f"CASE WHEN {timestamp} IS NOT NULL"
            f" THEN greatest(extract(epoch FROM statement_timestamp() - {timestamp}), 0)::float8 END")


# The waiting backends of this database and every backend they wait for (pid 0 is a prepared
# transaction, which has no session). `waiting` is referenced twice, so it is materialised:
# pg_blocking_pids, which takes the lock manager's locks, runs once per waiting backend.
# A backend waits for at most one lock: its ungranted row in pg_locks; one that waits for a
# row's transaction holds that row's tuple lock, which names the table.
BLOCKING = f"""
WITH waiting AS (
    SELECT pid, pg_blocking_pids(pid) AS blocked_by FROM pg_stat_activity
    WHERE datname = current_database() AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'
), involved AS (
    SELECT pid FROM waiting WHERE cardinality(blocked_by) > 0
    UNION
    SELECT unnest(blocked_by) FROM waiting
)
SELECT i.pid, coalesce(w.blocked_by, '{{}}'::int[]), a.datname, a.application_name, a.usename, a.state,
       a.wait_event_type, a.wait_event,
       {_age(_XACT_START)},
       CASE WHEN l.locktype IS NOT NULL
           THEN {_age('coalesce(l.waitstart, a.state_change)')} END,
       l.mode, coalesce(l.relation, t.relation)::regclass::text,
       CASE l.locktype
           WHEN 'relation' THEN l.relation::regclass::text
           WHEN 'tuple' THEN format('row (%%s,%%s) of %%s', l.page, l.tuple, l.relation::regclass)
           WHEN 'transactionid' THEN format('transaction %%s', l.transactionid)
           WHEN 'advisory' THEN CASE WHEN l.objsubid = 1
               THEN format('advisory key %%s', (l.classid::bigint << 32) | l.objid::bigint)
               ELSE format('advisory keys (%%s, %%s)', l.classid, l.objid) END
           ELSE l.locktype END,
       {_QUERY_TEXT}
FROM involved i
LEFT JOIN waiting w ON w.pid = i.pid AND cardinality(w.blocked_by) > 0
LEFT JOIN pg_stat_activity a ON a.pid = i.pid
LEFT JOIN LATERAL (
    SELECT locktype, mode, relation, page, tuple, transactionid, classid, objid, objsubid, waitstart
    FROM pg_locks WHERE pid = i.pid AND NOT granted LIMIT 1
) l ON w.pid IS NOT NULL
LEFT JOIN LATERAL (
    SELECT relation FROM pg_locks WHERE pid = i.pid AND granted AND locktype = 'tuple' LIMIT 1
) t ON l.locktype = 'transactionid'
ORDER BY i.pid
"""
# Transactions open longer than the threshold, in any state, oldest first.
LONG_TRANSACTIONS = f"""
SELECT a.pid, a.application_name, a.usename, a.state,
       {_age(_XACT_START)},
       {_age('a.state_change')},
       {_QUERY_TEXT}
FROM pg_stat_activity a
WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()
  AND {_XACT_START} < statement_timestamp() - make_interval(secs => %(older_than_s)s)
ORDER BY {_XACT_START}
"""
# Every session idle inside a transaction now (it holds its locks and pins the xmin horizon
# while it does nothing), longest idle first; the query is the last one it ran.
IDLE_IN_TRANSACTION = f"""
SELECT a.pid, a.application_name, a.usename, a.state,
       {_age(_XACT_START)},
       {_age('a.state_change')},
       {_QUERY_TEXT}
FROM pg_stat_activity a
WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()
  AND a.state IN ('idle in transaction', 'idle in transaction (aborted)')
ORDER BY a.state_change
"""
DEADLOCKS = "SELECT deadlocks, stats_reset FROM pg_stat_database WHERE datname = current_database()"


@dataclass(frozen=True)
class LockedSession:
    """A session in a blocking chain: waiting (``blocked_by`` not empty), blocking, or both.

    ``waited_s``, ``lock_mode`` and ``lock_target`` are None for a session that does not wait;
    every activity field is None for a prepared transaction (pid 0) and for a session that
    ended between the two reads."""

    pid: int
    blocked_by: tuple[int, ...]
    database: str | None
    application_name: str | None
    usename: str | None
    state: str | None
    wait_event_type: str | None
    wait_event: str | None
    xact_age_s: float | None
    waited_s: float | None
    lock_mode: str | None
    relation: str | None
    lock_target: str | None
    query: str | None


@dataclass(frozen=True)
class OpenTransaction:
    """A session inside a transaction: how old the transaction is, how long the state has lasted."""

    pid: int
    application_name: str | None
    usename: str | None
    state: str | None
    xact_age_s: float | None
    state_age_s: float | None
    query: str | None


@dataclass(frozen=True)
class Deadlocks:
    count: int
    since: datetime | None  # the last statistics reset; None: never reset


@dataclass(frozen=True)
class ChainLink:
    """One row of a blocking chain: ``depth`` 0 is a head (it waits for nobody shown here),
    ``waits_for`` the session one level up."""

    session: LockedSession
    depth: int
    waits_for: int | None


def blocking_sessions(conn: psycopg.Connection, *, query_chars: int = QUERY_CHARS) -> list[LockedSession]:
    """The waiting sessions of this database and the sessions they wait for, by pid."""
    with wrap_exceptions(conn):
        rows = conn.execute(BLOCKING, {"query_chars": query_chars}).fetchall()
    return [LockedSession(pid, tuple(blocked_by), *rest) for pid, blocked_by, *rest in rows]


def long_transactions(conn: psycopg.Connection, *, older_than_s: float,
                      query_chars: int = QUERY_CHARS) -> list[OpenTransaction]:
    with wrap_exceptions(conn):
        rows = conn.execute(LONG_TRANSACTIONS, {"older_than_s": older_than_s, "query_chars": query_chars})
        return [OpenTransaction(*row) for row in rows]


def idle_in_transaction(conn: psycopg.Connection, *, query_chars: int = QUERY_CHARS) -> list[OpenTransaction]:
    with wrap_exceptions(conn):
        return [OpenTransaction(*row) for row in conn.execute(IDLE_IN_TRANSACTION, {"query_chars": query_chars})]


def deadlocks(conn: psycopg.Connection) -> Deadlocks:
    """Deadlocks detected in this database since its statistics were last reset."""
    with wrap_exceptions(conn):
        row = conn.execute(DEADLOCKS).fetchone()
    return Deadlocks(int(row[0]), row[1]) if row else Deadlocks(0, None)


def chains(sessions: Iterable[LockedSession]) -> list[ChainLink]:
    """Who waits for whom, as rows of trees: each head (a session that blocks and waits for
    nobody shown), then depth-first the sessions waiting for it. A session waiting for two
    others appears under each; a cycle (a deadlock the server has not broken yet) is cut
    where it comes round again, and started at its lowest pid."""
    by_pid = {s.pid: s for s in sessions}
    waiters: dict[int, list[int]] = {}
    for session in by_pid.values():
        for blocker in session.blocked_by:
            waiters.setdefault(blocker, []).append(session.pid)
    heads = [pid for pid in sorted(by_pid) if not by_pid[pid].blocked_by]
    links: list[ChainLink] = []
    shown: set[int] = set()

    def walk(pid: int, depth: int, parent: int | None, path: frozenset[int]) -> None:
        links.append(ChainLink(by_pid[pid], depth, parent))
        shown.add(pid)
        for waiter in sorted(waiters.get(pid, [])):
            if waiter not in path:
                walk(waiter, depth + 1, pid, path | {waiter})

    for head in heads:
        walk(head, 0, None, frozenset({head}))
    for pid in sorted(by_pid):  # only cycles are left
        if pid not in shown:
            walk(pid, 0, None, frozenset({pid}))
    return links
