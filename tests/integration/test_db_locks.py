"""`conveyor db locks` against real sessions on a real PostgreSQL: a blocking chain of three
sessions (A holds a row, B waits for A, C waits for B), sessions idle in a transaction, and
the deadlock count. The command runs as a process, the way a script or an operator runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import psycopg
import pytest
from psycopg import errors as pg_errors

from tests.support.workers import ROOT, settings_for, wait_until

PROBE = "CREATE TABLE lock_probe (id int PRIMARY KEY, n int NOT NULL); INSERT INTO lock_probe VALUES (1, 0), (2, 0)"
# Longer than the command's runs while the chain stands, short enough that a test gone wrong
# does not hang: a waiter gives up by itself after this.
WAITER_LOCK_TIMEOUT = "15s"


class Sessions:
    """The test's own sessions, and the threads in which some of them wait."""

    def __init__(self, database_url: str) -> None:
        self.url = database_url
        self.conns: list[psycopg.Connection] = []
        self.threads = ThreadPoolExecutor(max_workers=4, thread_name_prefix="locks-waiter")

    def open(self, name: str) -> psycopg.Connection:
        conn = psycopg.connect(self.url, autocommit=True, application_name=name,
                               options=f"-c lock_timeout={WAITER_LOCK_TIMEOUT}")
        self.conns.append(conn)
        return conn

    def in_thread(self, conn: psycopg.Connection, statement: str) -> Future:
        return self.threads.submit(conn.execute, statement)

    def close(self) -> None:
        # End every session's backend first: then each waiting statement returns (its lock was
        # released or its backend ended), the threads can be joined, the connections closed.
        pids = [c.info.backend_pid for c in self.conns if not c.closed]
        with psycopg.connect(self.url, autocommit=True) as admin:
            for pid in pids:
                admin.execute("SELECT pg_terminate_backend(%(pid)s)", {"pid": pid})
        self.threads.shutdown(wait=True)
        for conn in self.conns:
            conn.close()


@pytest.fixture
def sessions(database_url: str) -> Iterator[Sessions]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(PROBE)
    opened = Sessions(database_url)
    try:
        yield opened
    finally:
        opened.close()


def conveyor(database_url: str, amqp_url: str, *args: str) -> subprocess.CompletedProcess:
    settings = settings_for(database_url, amqp_url)
    env = {**os.environ, "CONVEYOR_DATABASE_URL": settings.database_url,
           "CONVEYOR_AMQP_URL": settings.amqp_url, "CONVEYOR_LOG_FORMAT": "json"}
    return subprocess.run([sys.executable, "-m", "conveyor", "db", "locks", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def blocking_pids(database_url: str, pid: int) -> list[int]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute("SELECT pg_blocking_pids(%(pid)s)", {"pid": pid}).fetchone()
    return list(row[0]) if row else []


def test_a_blocking_chain_is_shown_with_its_pids_and_exits_1_until_it_is_released(
        sessions, database_url, amqp_url):
    # Given A holds row 1 in an open transaction, B waits for A's transaction, C for B's row lock
    holder, first, second = (sessions.open(name) for name in ("locks-holder", "locks-first", "locks-second"))
    holder.execute("BEGIN")
    holder.execute("UPDATE lock_probe SET n = n + 1 WHERE id = 1")
    a, b, c = (conn.info.backend_pid for conn in (holder, first, second))
    waiting_b = sessions.in_thread(first, "UPDATE lock_probe SET n = n + 10 WHERE id = 1")
    wait_until(lambda: blocking_pids(database_url, b) == [a], message="B waiting for A")
    waiting_c = sessions.in_thread(second, "UPDATE lock_probe SET n = n + 100 WHERE id = 1")
    wait_until(lambda: blocking_pids(database_url, c) == [b], message="C waiting for B")

    # When the command looks, as JSON and as text
    as_json = conveyor(database_url, amqp_url, "--json")
    as_text = conveyor(database_url, amqp_url)

    # Then it sees the chain A <- B <- C, with each waiter's lock and query, and exits 1
    assert as_json.returncode == 1, as_json.stderr
    blocking = json.loads(as_json.stdout)["blocking"]
    assert [(r["pid"], r["depth"], r["waits_for"], r["blocked_by"]) for r in blocking] == [
        (a, 0, None, []), (b, 1, a, [a]), (c, 2, b, [b])]
    head, waiter_b, waiter_c = blocking
    assert head["application_name"] == "locks-holder" and head["state"] == "idle in transaction"
    assert head["lock_mode"] is None and head["waited_s"] is None
    assert waiter_b["lock_mode"] == "ShareLock" and waiter_b["lock_target"].startswith("transaction ")
    assert waiter_c["lock_mode"] == "ExclusiveLock" and waiter_c["lock_target"].startswith("row (")
    for waiter, query in ((waiter_b, "n + 10 "), (waiter_c, "n + 100 ")):
        assert waiter["relation"] == "lock_probe"
        assert (waiter["wait_event_type"], waiter["state"]) == ("Lock", "active")
        assert waiter["waited_s"] >= 0 and waiter["xact_age_s"] >= waiter["waited_s"] - 0.01
        assert query in waiter["query"]
    assert as_text.returncode == 1, as_text.stderr
    assert "blocking: 2 session(s) waiting in 1 chain(s)" in as_text.stdout
    assert f"\n  pid {a}  " in as_text.stdout
    assert f"\n  └─ pid {b}  " in as_text.stdout and f"\n     └─ pid {c}  " in as_text.stdout
    assert "conveyor-db-locks" not in as_text.stdout + as_json.stdout  # the command's own backend is left out

    # When A commits: B, then C, get their row
    holder.execute("COMMIT")
    waiting_b.result(timeout=10)
    waiting_c.result(timeout=10)
    released = conveyor(database_url, amqp_url, "--json")

    # Then nothing is blocked and it exits 0
    assert released.returncode == 0, released.stderr
    assert json.loads(released.stdout)["blocking"] == []


def test_sessions_idle_in_a_transaction_and_long_transactions_are_listed_with_their_age(
        sessions, database_url, amqp_url):
    # Given one session idle in a transaction, one idle in an aborted one
    idle, aborted = sessions.open("locks-idle"), sessions.open("locks-aborted")
    idle.execute("BEGIN")
    idle.execute("SELECT n FROM lock_probe WHERE id = 2")
    aborted.execute("BEGIN")
    with pytest.raises(pg_errors.DivisionByZero):
        aborted.execute("SELECT 1 / 0")

    # When the command looks, with and without a threshold the transactions are past
    default = conveyor(database_url, amqp_url, "--json")
    everything = conveyor(database_url, amqp_url, "--json", "--older-than", "0")
    as_text = conveyor(database_url, amqp_url)

    # Then both are idle in a transaction with their age, long only past the threshold; nothing blocks
    assert (default.returncode, everything.returncode, as_text.returncode) == (0, 0, 0), default.stderr
    report = json.loads(default.stdout)
    by_pid = {row["pid"]: row for row in report["idle_in_transaction"]}
    assert by_pid.keys() == {idle.info.backend_pid, aborted.info.backend_pid}
    assert by_pid[idle.info.backend_pid]["state"] == "idle in transaction"
    assert by_pid[aborted.info.backend_pid]["state"] == "idle in transaction (aborted)"
    assert "SELECT n FROM lock_probe" in by_pid[idle.info.backend_pid]["query"]
    assert all(row["xact_age_s"] >= row["state_age_s"] >= 0 for row in by_pid.values())
    assert report["long_transactions"] == [] and report["blocking"] == []
    assert {row["pid"] for row in json.loads(everything.stdout)["long_transactions"]} == by_pid.keys()
    assert "idle in transaction: 2" in as_text.stdout
    assert f"pid {idle.info.backend_pid}  postgres / locks-idle  idle in transaction for " in as_text.stdout


def test_the_deadlock_count_is_this_databases_and_counts_a_real_deadlock(sessions, database_url, amqp_url):
    # Given the count so far, then two sessions that each hold the row the other one wants
    before = json.loads(conveyor(database_url, amqp_url, "--json").stdout)["deadlocks"]
    x, y = sessions.open("locks-x"), sessions.open("locks-y")
    for conn, row in ((x, 1), (y, 2)):
        conn.execute("BEGIN")
        conn.execute(f"UPDATE lock_probe SET n = n + 1 WHERE id = {row}")
    crossed = [sessions.in_thread(x, "UPDATE lock_probe SET n = n + 1 WHERE id = 2"),
               sessions.in_thread(y, "UPDATE lock_probe SET n = n + 1 WHERE id = 1")]
    failures = [f.exception(timeout=30) for f in crossed]
    assert sum(isinstance(e, pg_errors.DeadlockDetected) for e in failures) == 1, failures
    for conn in (x, y):
        conn.execute("ROLLBACK")

    # When the server has counted it (statistics are flushed within about a second)
    def counted() -> dict | None:
        deadlocks = json.loads(conveyor(database_url, amqp_url, "--json").stdout)["deadlocks"]
        return deadlocks if deadlocks["count"] > before["count"] else None

    after = wait_until(counted, timeout=20, interval=0.5, message="the deadlock counted")

    # Then the count is an integer that went up by one, since the same statistics reset
    assert isinstance(before["count"], int) and after == {"count": before["count"] + 1, "since": before["since"]}


def test_the_asking_session_is_never_in_its_own_report(sessions, database_url):
    from conveyor.db import activity

    # Given another session and the asking one, both inside transactions older than the threshold
    other, asking = sessions.open("locks-other"), sessions.open("locks-asking")
    for conn in (other, asking):
        conn.execute("BEGIN")
        conn.execute("SELECT 1")
    time.sleep(0.3)

    # When the asking session reads the long transactions
    long = activity.long_transactions(asking, older_than_s=0.1)

    # Then the other one is there and the asking one is not
    assert [t.pid for t in long] == [other.info.backend_pid]


def test_a_session_waiting_for_a_stock_lock_shows_the_advisory_key(sessions, database_url, amqp_url):
    from conveyor.db.locks import lock_stock, stock_lock_key

    # Given one session holds the stock lock of (shop-1, SKU-1) and another waits for it
    holder, waiter = sessions.open("locks-stock-holder"), sessions.open("locks-stock-waiter")
    holder.execute("BEGIN")
    lock_stock(holder, [("shop-1", "SKU-1")])
    waiting = sessions.in_thread(waiter, "BEGIN; SELECT pg_advisory_xact_lock(%d); COMMIT"
                                 % stock_lock_key("shop-1", "SKU-1"))
    wait_until(lambda: blocking_pids(database_url, waiter.info.backend_pid) == [holder.info.backend_pid],
               message="the waiter waiting for the holder")

    # When the command looks
    result = conveyor(database_url, amqp_url, "--json")

    # Then the waiter's lock is named by the key of the scheme in conveyor.db.locks
    assert result.returncode == 1, result.stderr
    _, row = json.loads(result.stdout)["blocking"]
    assert (row["pid"], row["lock_mode"], row["relation"]) == (waiter.info.backend_pid, "ExclusiveLock", None)
    assert row["lock_target"] == f"advisory key {stock_lock_key('shop-1', 'SKU-1')}"
    holder.execute("COMMIT")
    waiting.result(timeout=10)


def test_chains_show_a_waiter_under_each_blocker_and_cut_a_cycle_where_it_comes_round():
    from conveyor.db.activity import LockedSession, chains

    def session(pid: int, *blocked_by: int) -> LockedSession:
        return LockedSession(pid, blocked_by, *[None] * 12)

    # Given 3 waits for both 1 and 2; and 5 and 6 wait for each other (a deadlock not yet broken)
    sessions = [session(1), session(2), session(3, 1, 2), session(5, 6), session(6, 5)]

    # When they are walked into chains
    rows = [(link.session.pid, link.depth, link.waits_for) for link in chains(sessions)]

    # Then each head comes with its waiters below it, and the cycle starts at its lowest pid
    assert rows == [(1, 0, None), (3, 1, 1), (2, 0, None), (3, 1, 2), (5, 0, None), (6, 1, 5)]
