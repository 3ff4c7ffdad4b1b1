"""Conveyor behind a real PgBouncer (transaction pooling) and beside a real standby: the pooler
is detected whether it refuses the startup options or drops them, the session settings then
hold per transaction, prepared statements stay off, work that needs a session of its own is
refused with a clear error, reads go to a standby (never a primary), and a write that reaches
a read-only server closes the connection so the next one can find the primary.

The intake, lifecycle and relay tests run a second time through PgBouncer as well
(``also_through_pgbouncer``, tests/support/services.py)."""

from __future__ import annotations

import psycopg
import pytest

from conveyor.db import sessions
from conveyor.db.connection import connect, connect_reader, make_pool, require_direct, transaction
from conveyor.db.errors import DatabaseUnavailable, MigrationError, PoolerRefused, ReadUrlNotReplica
from conveyor.db.migrate import check_schema, migrate, status
from conveyor.devservices.pgbouncer import PgBouncer
from tests.integration.test_cli import conveyor
from tests.support.replica import primary_and_standby, wait_replayed
from tests.support.workers import settings_for

SHOW = "SELECT current_setting('lock_timeout'), current_setting('statement_timeout'), current_setting('search_path')"


@pytest.fixture(params=["refuses-options", "drops-options"])
def bouncer(request, services):
    with PgBouncer(services.database_url, ignore_options=request.param == "drops-options") as running:
        yield running


def test_behind_pgbouncer_the_session_settings_hold_in_every_transaction(bouncer, database_url):
    url = bouncer.url_for(database_url)
    with connect(url, lock_timeout_ms=1234, statement_timeout_ms=5678) as conn:
        inside = []
        for _ in range(12):  # past psycopg's prepare threshold: prepared statements must be off
            with conn.transaction():
                inside.append(conn.execute(SHOW).fetchone())

    assert sessions.pooled(url)
    assert set(inside) == {("1234ms", "5678ms", "orders,inventory,messaging,privacy,audit,archive,maintenance,public")}


def test_a_pool_behind_pgbouncer_sets_them_too(bouncer, database_url):
    url = bouncer.url_for(database_url)
    pool = make_pool(url, size=2, lock_timeout_ms=777)
    try:
        with pool.connection() as conn, conn.transaction():
            shown = conn.execute(SHOW).fetchone()
    finally:
        pool.close()

    assert shown is not None and shown[0] == "777ms"


def test_straight_to_postgres_nothing_is_added_per_transaction(database_url):
    with connect(database_url, lock_timeout_ms=1234) as conn:
        shown = conn.execute(SHOW).fetchone()

        assert sessions.local_settings_of(conn) is None
    assert not sessions.pooled(database_url)
    assert shown is not None and shown[0] == "1234ms"


def test_the_workers_safe_start_check_and_db_status_work_through_pgbouncer(bouncer, database_url):
    url = bouncer.url_for(database_url)

    check = check_schema(url)
    states = status(url)

    assert check.ready and not check.pending
    assert states and {s.status for s in states} == {"applied"}


def test_migrations_and_the_archive_refuse_a_pooled_connection(bouncer, database_url, amqp_url):
    url = bouncer.url_for(database_url)

    with pytest.raises(MigrationError, match="direct connection"):
        migrate(url)
    with connect(url) as conn, pytest.raises(PoolerRefused, match="conveyor archive"):
        require_direct(conn, "conveyor archive")
    cli = conveyor(settings_for(url, amqp_url), "db", "migrate")

    assert cli.returncode == 1 and "direct connection" in cli.stderr


@pytest.fixture(scope="module")
def replication():
    with primary_and_standby() as servers:
        yield servers


def test_reads_go_to_a_standby_and_a_primary_there_is_refused(replication, amqp_url):
    primary, standby = replication
    with psycopg.connect(primary.database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS public.replicated (id int)")
        conn.execute("INSERT INTO public.replicated VALUES (1)")
    wait_replayed(primary, standby)

    with connect_reader(standby.database_url, primary.database_url) as reader:
        seen = reader.execute("SELECT count(*) FROM public.replicated").fetchone()
        in_recovery = reader.execute("SELECT pg_is_in_recovery()").fetchone()
    with pytest.raises(ReadUrlNotReplica, match="points at a primary"):
        connect_reader(primary.database_url, primary.database_url)
    refused = conveyor(settings_for(primary.database_url, amqp_url), "stock", "show", "A",
                       CONVEYOR_DATABASE_READ_URL=primary.database_url)

    assert seen is not None and seen[0] >= 1 and in_recovery == (True,)
    assert refused.returncode == 2 and "CONVEYOR_DATABASE_READ_URL points at a primary" in refused.stderr


def test_a_write_on_a_read_only_server_is_an_outage_and_closes_the_connection(replication):
    _, standby = replication
    conn = connect(standby.database_url)
    try:
        with pytest.raises(DatabaseUnavailable, match="read-only") as raised, transaction(conn):
            conn.execute("CREATE TABLE public.nope (id int)")
    finally:
        closed = conn.closed
        conn.close()

    assert closed, "the next connection (a multi-host URL) must be able to find the primary"
    assert raised.value.connection_broken
