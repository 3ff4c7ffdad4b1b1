"""Stock levels as append-only versions (migration V011) on a real PostgreSQL.

The newest version of a (tenant, SKU) in ``stock_movements`` is its level; ``stock_levels``
is a view of them. Under a transaction that pins the xmin horizon, an update-in-place
counter leaves every old version behind for its lookups to walk; the ledger leaves none.
"""

from __future__ import annotations

import shutil
import threading
import time

import psycopg
import pytest
from psycopg import errors as pg_errors

from conveyor import devservices
from conveyor.db.connection import connect, transaction
from conveyor.db.errors import TransientDatabaseError, is_integrity_violation, is_transient
from conveyor.db.migrate import default_directory, migrate
from conveyor.db.reconcile import run_checks
from conveyor.db.stock import StockRepository
from tests.support.workers import scalar, set_stock

NEWEST_LEVEL = """
EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)
SELECT m.on_hand, m.reserved FROM stock_movements m
WHERE m.tenant_id = 'default' AND m.sku = 'HOT' ORDER BY m.version DESC LIMIT 1
"""
IN_PLACE_LOOKUP = "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT reserved FROM in_place WHERE sku = 'HOT'"


def buffers(conn: psycopg.Connection, explain: str) -> int:
    plan = conn.execute(explain).fetchone()[0][0]["Plan"]
    return plan["Shared Hit Blocks"] + plan["Shared Read Blocks"]


def test_a_level_lookup_stays_a_few_pages_under_a_pinned_xmin_where_an_in_place_counter_grows(database_url):
    # Given a SKU, an update-in-place counter beside it (the old shape), and a transaction
    # that holds the xmin horizon for the whole test
    set_stock(database_url, "HOT", 1_000_000)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE in_place (sku text PRIMARY KEY, reserved int) WITH (fillfactor = 50)")
        conn.execute("INSERT INTO in_place VALUES ('HOT', 0)")
    pin = psycopg.connect(database_url)
    pin.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    pin.execute("SELECT pg_current_xact_id()")
    try:
        with psycopg.connect(database_url, autocommit=True) as conn:
            before = buffers(conn, NEWEST_LEVEL), buffers(conn, IN_PLACE_LOOKUP)
            # When the SKU is reserved 1,500 times, one transaction each
            for _ in range(1_500):
                with conn.transaction():
                    conn.execute("UPDATE stock_levels SET reserved = reserved + 1 WHERE sku = 'HOT'")
                    conn.execute("UPDATE in_place SET reserved = reserved + 1 WHERE sku = 'HOT'")
            after = buffers(conn, NEWEST_LEVEL), buffers(conn, IN_PLACE_LOOKUP)
            level = conn.execute("SELECT reserved, version FROM stock_levels WHERE sku = 'HOT'").fetchone()
    finally:
        pin.rollback()
        pin.close()

    # Then the level is right, its lookup still reads a few pages, and the counter's grows with
    # the versions it walks (and their tuples: ~200 a page, each checked for visibility)
    assert level == (1_500, 1_501)
    assert after[0] <= max(before[0], 4) + 2, (before, after)
    assert after[1] >= 3 * max(before[1], 1), (before, after)  # measured: 2 → 8 pages


def test_a_hand_written_change_racing_a_worker_is_applied_to_the_newest_version(database_url):
    # Given a level of 10, and a worker's transaction that reserved 3 and has not committed
    set_stock(database_url, "A", 10)
    worker = connect(database_url)
    worker.execute("BEGIN")
    worker.execute("""INSERT INTO stock_movements (tenant_id, sku, version, delta_on_hand, delta_reserved,
                                                   on_hand, reserved, cause)
                      VALUES ('default', 'A', 2, 0, 3, 10, 3, 'order.reserved:x')""")
    # When an operator adds 5 by hand meanwhile (it waits for the worker's version)
    done = threading.Event()

    def restock() -> None:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("UPDATE stock_levels SET on_hand = on_hand + 5 WHERE sku = 'A'")
        done.set()

    thread = threading.Thread(target=restock)
    thread.start()
    time.sleep(0.5)
    assert not done.is_set(), "the hand-written change waits for the worker's uncommitted version"
    worker.execute("COMMIT")
    thread.join(timeout=10)
    worker.close()

    # Then both changes count: version 3 has the worker's reservation and the restock
    assert done.is_set()
    assert scalar(database_url, "SELECT (on_hand, reserved, version)::text FROM stock_levels WHERE sku = 'A'") \
        == "(15,3,3)"


def test_a_locked_writer_that_loses_the_race_to_an_unlocked_one_gets_a_transient_error(database_url):
    # Given a hand-written version of A, not committed yet (hand-written SQL takes no stock lock)
    set_stock(database_url, "A", 10)
    by_hand = psycopg.connect(database_url)
    by_hand.execute("UPDATE stock_levels SET on_hand = 12 WHERE sku = 'A'")
    outcome: list[BaseException] = []

    def operator_sets_stock() -> None:
        try:
            with connect(database_url) as conn, transaction(conn):
                StockRepository(conn).set_on_hand("default", "A", 20)
        except BaseException as error:  # noqa: BLE001 - the test inspects it
            outcome.append(error)

    # When `stock set` (which locks, then appends the next version) runs meanwhile
    thread = threading.Thread(target=operator_sets_stock)
    thread.start()
    time.sleep(0.5)
    by_hand.commit()
    by_hand.close()
    thread.join(timeout=10)

    # Then the loser is told to try again (a transient error, never an integrity violation)
    [error] = outcome
    assert isinstance(error, TransientDatabaseError) and is_transient(error)
    assert not is_integrity_violation(error.__cause__)
    assert scalar(database_url, "SELECT on_hand FROM stock_levels WHERE sku = 'A'") == 12


def test_no_version_can_oversell_and_no_level_can_be_deleted(database_url):
    set_stock(database_url, "A", 10)
    with psycopg.connect(database_url, autocommit=True) as conn:
        with pytest.raises(pg_errors.CheckViolation):
            conn.execute("""INSERT INTO stock_movements (tenant_id, sku, version, delta_on_hand, delta_reserved,
                                                         on_hand, reserved, cause)
                            VALUES ('default', 'A', 2, 0, 11, 10, 11, 'bug')""")
        with pytest.raises(pg_errors.CheckViolation):
            conn.execute("UPDATE stock_levels SET reserved = 11 WHERE sku = 'A'")
        with pytest.raises(pg_errors.UniqueViolation):
            conn.execute("""INSERT INTO stock_movements (tenant_id, sku, version, delta_on_hand, delta_reserved,
                                                         on_hand, reserved, cause)
                            VALUES ('default', 'A', 1, 0, 1, 10, 1, 'a second version 1')""")
        with pytest.raises(pg_errors.FeatureNotSupported):
            conn.execute("DELETE FROM stock_levels WHERE sku = 'A'")
    assert scalar(database_url, "SELECT (on_hand, reserved, version)::text FROM stock_levels") == "(10,0,1)"


@pytest.fixture
def before_v011(tmp_path):
    """The migrations up to V010: the schema before stock levels became versions."""
    target = tmp_path / "migrations"
    target.mkdir()
    for path in default_directory().glob("V*.sql"):
        if int(path.name[1:4]) <= 10:
            shutil.copy(path, target / path.name)
    return target


def test_v011_keeps_every_level_of_a_populated_database(services, before_v011):
    with devservices.fresh_database(services, prefix="conveyor_v011") as url:
        # Given a database at V010 with levels changed by workers, by hand, and one behind the ledger
        migrate(url, directory=before_v011)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("INSERT INTO products (tenant_id, sku) "
                         "SELECT 'default', 'S-' || g FROM generate_series(1, 50) g")
            conn.execute("INSERT INTO stock_levels (tenant_id, sku, on_hand) "
                         "SELECT 'default', 'S-' || g, g * 10 FROM generate_series(1, 50) g")
            conn.execute("UPDATE stock_levels SET reserved = 3, last_cause = 'order.reserved:o' WHERE sku <= 'S-3'")
            conn.execute("UPDATE stock_levels SET on_hand = on_hand + 1 WHERE sku = 'S-7'")
            with conn.transaction():
                conn.execute("SET LOCAL session_replication_role = replica")  # the ledger misses this one
                conn.execute("UPDATE stock_levels SET on_hand = 999 WHERE sku = 'S-9'")
            levels = conn.execute("SELECT sku, on_hand, reserved FROM stock_levels ORDER BY sku").fetchall()

        # When V011 runs
        assert migrate(url)[0] == "V011__stock_levels_append_only.sql"

        # Then every level reads the same, the ledger agrees with them, and the next change works
        with psycopg.connect(url, autocommit=True) as conn:
            assert conn.execute("SELECT sku, on_hand, reserved FROM stock_levels ORDER BY sku").fetchall() == levels
            assert conn.execute("SELECT cause FROM stock_movements WHERE sku = 'S-9' "
                                "ORDER BY version DESC LIMIT 1").fetchone() == ("migration-V011",)
            assert run_checks(conn)["levels_vs_ledger"] == []
            conn.execute("UPDATE stock_levels SET on_hand = on_hand - 1 WHERE sku = 'S-9'")
            assert conn.execute("SELECT on_hand FROM stock_levels WHERE sku = 'S-9'").fetchone() == (998,)
