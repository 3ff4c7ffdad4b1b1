"""Planner statistics on a database vacuumed while empty (migration V008, db/statistics.py).

A VACUUM of the empty tables records them as empty; a worker connection that cached a
generic plan then (a prepared statement, a foreign-key check) keeps a sequential scan while
the table grows, until an ANALYZE invalidates it. With autovacuum off (as on this machine)
nothing else runs that ANALYZE: Conveyor's statistics keeper does.
"""

from __future__ import annotations

import re
import threading

import psycopg

from conveyor.db.connection import connect
from conveyor.db.statistics import STATISTICS_LOCK_KEY, refresh
from conveyor.workers.services.statistics import StatisticsKeeper
from tests.support.workers import settings_for

LOOKUP = "PREPARE seen(text) AS SELECT 1 FROM inbox WHERE message_id = $1"


def plan(conn: psycopg.Connection) -> str:
    return "\n".join(row[0] for row in conn.execute("EXPLAIN EXECUTE seen('m-1')"))


def grow_inbox(conn: psycopg.Connection, rows: int) -> None:
    conn.execute("INSERT INTO inbox (message_id, handler) SELECT 'm-' || g, 'orders' "
                 "FROM generate_series(1, %(rows)s) g", {"rows": rows})


def test_a_plan_cached_on_a_vacuumed_empty_table_is_replaced_once_statistics_are_refreshed(database_url):
    with psycopg.connect(database_url, autocommit=True) as admin, \
            psycopg.connect(database_url, autocommit=True) as worker:
        # Given a freshly migrated database vacuumed while empty, and a worker connection that
        # cached a generic plan for the inbox lookup then
        admin.execute("VACUUM inbox")
        worker.execute(LOOKUP)
        for _ in range(6):
            worker.execute("EXECUTE seen('m-1')")
        # When the table grows, the cached plan still scans all of it
        grow_inbox(admin, 20_000)
        admin.execute("SELECT pg_stat_force_next_flush()")
        stale_plan = plan(worker)
        # Then a refresh analyses it and the worker's next plan uses the primary key
        with connect(database_url) as conn:
            refreshed = refresh(conn)
        fresh_plan = plan(worker)

    assert "Seq Scan on inbox" in stale_plan
    assert refreshed is not None and "inbox" in refreshed
    assert "Index" in fresh_plan and re.search(r"inbox_\S*pkey", fresh_plan)  # today's partition's key


def test_a_table_that_barely_changed_is_left_alone(database_url):
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute("ANALYZE inbox")
        grow_inbox(admin, 10)
        admin.execute("SELECT pg_stat_force_next_flush()")
        with connect(database_url) as conn:
            refreshed = refresh(conn, min_changes=1_000)
    assert refreshed is not None and "inbox" not in refreshed


def test_only_one_process_refreshes_at_a_time(database_url):
    with psycopg.connect(database_url) as other:  # holds the lock in an open transaction
        other.execute("SELECT pg_advisory_xact_lock(%(key)s)", {"key": STATISTICS_LOCK_KEY})
        with connect(database_url) as conn:
            assert refresh(conn) is None


def test_the_worker_role_may_refresh_but_not_analyze_directly(database_url):
    with psycopg.connect(database_url, autocommit=True) as admin:
        grow_inbox(admin, 2_000)  # committed: its changes reach the statistics
        admin.execute("SELECT pg_stat_force_next_flush()")
    with psycopg.connect(database_url) as conn:
        conn.execute("SET ROLE conveyor_worker")
        refreshed = [r[0] for r in conn.execute("SELECT conveyor_refresh_statistics(1000, 0.2)")]
        estimate = conn.execute("SELECT sum(c.reltuples) FROM pg_partition_tree('inbox') t"
                                " JOIN pg_class c ON c.oid = t.relid WHERE t.isleaf").fetchone()
    # ANALYZE ran: on the day's partition, then on the partitioned inbox
    assert "inbox" in refreshed and estimate is not None and estimate[0] >= 2_000


def test_the_keeper_runs_a_refresh_per_tick(database_url, fresh_amqp_url):
    settings = settings_for(database_url, fresh_amqp_url, analyze_interval=0.1)
    with psycopg.connect(database_url, autocommit=True) as admin:
        grow_inbox(admin, 3_000)
        admin.execute("SELECT pg_stat_force_next_flush()")
    keeper = StatisticsKeeper(settings, stop=threading.Event())

    assert "inbox" in (keeper.tick() or [])
    assert keeper.tick() == []  # nothing changed since
