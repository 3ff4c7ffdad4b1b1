"""Partitions that look after themselves (V013) on a real PostgreSQL: the shop's timestamp
never picks a partition, the default partition never blocks a new one, lookups prune, the
inbox finds a duplicate across its days, retention drops whole partitions (and waits for
nobody), and the maintenance pass does it all as the worker role."""

from __future__ import annotations

import json
import re
import uuid
from datetime import date, datetime, timedelta, timezone

import psycopg
import pytest

from conveyor.db.connection import connect
from conveyor.db.inbox import CLAIM_MANY, Inbox
from conveyor.db.maintenance import Plan, run_pass
from conveyor.db.migrate import ensure_partitions
from conveyor.db.orders import LOCK_ORDER
from conveyor.db.outbox import EventContext
from conveyor.db.views import SHOW_ORDER
from conveyor.workers import cli
from tests.support.security import login_role, url_as
from tests.support.workers import order_body, run_order, set_stock


@pytest.fixture
def worker_login(admin_database_url, migrated_template):
    with login_role(admin_database_url, "conveyor_worker") as login:
        yield login


def monday(day: date) -> date:
    return day - timedelta(days=day.weekday())


def inbox_partition(day: date) -> str:
    """The inbox's partitions are weekly, named after their Monday."""
    return f"inbox_{monday(day):%Y_%m_%d}"


def utc_today() -> date:
    return datetime.now(timezone.utc).date()


def partition_of(conn: psycopg.Connection, order_id: str) -> str:
    return conn.execute("SELECT c.relnamespace::regnamespace || '.' || c.relname FROM orders o"
                        " JOIN pg_class c ON c.oid = o.tableoid WHERE o.order_id = %s", (order_id,)).fetchone()[0]


def test_an_order_dated_far_ahead_lands_in_this_months_partition_and_partitions_can_still_be_made(database_url):
    # Given an order whose shop timestamp is in 2027-09 (the latent outage of issue 14)
    set_stock(database_url, "A", 5)
    body = order_body(("A", 1))
    body["placed_at"] = "2027-09-15T10:00:00+00:00"
    assert run_order(database_url, body) == "reserved"

    # Then it sits in the partition of the month Conveyor recorded it, not in the default one
    this_month = datetime.now(timezone.utc).strftime("%Y_%m")
    with psycopg.connect(database_url) as conn:
        assert partition_of(conn, body["order_id"]) == f"orders.orders_{this_month}"
        assert conn.execute("SELECT count(*) FROM orders.orders_default").fetchone()[0] == 0
        assert conn.execute("SELECT placed_at FROM orders").fetchone()[0].year == 2027  # kept as data
    # And partitions a year ahead (2027-09 included) can be created, twice
    assert ensure_partitions(database_url, months_ahead=12)
    assert ensure_partitions(database_url, months_ahead=12) == []


def test_rows_in_the_default_partition_move_into_the_partition_made_for_them(database_url):
    # Given rows that reached the default partitions (a maintenance loop stopped for months;
    # written by hand here with a recorded time beyond the partitions)
    ahead = date.today().replace(day=1) + timedelta(days=32 * 20)
    month = ahead.replace(day=1)
    with psycopg.connect(database_url) as conn:
        order_id = uuid.uuid4()
        conn.execute("INSERT INTO order_registry (order_id, tenant_id, placed_at, created_at)"
                     " VALUES (%s, 'default', now(), %s)", (order_id, month))
        conn.execute("INSERT INTO orders (order_id, placed_at, tenant_id, customer_id, currency, total, status,"
                     " source_message_id, created_at)"
                     " VALUES (%s, now(), 'default', 'c', 'EUR', 1, 'REJECTED', 'm', %s)",
                     (order_id, month))
        conn.execute("INSERT INTO inbox (message_id, handler, processed_on) VALUES ('far', 'orders', %s)", (month,))
        assert partition_of(conn, str(order_id)) == "orders.orders_default"

    # When the partitions up to that month are made (the failure issue 14 reproduced: a
    # CheckViolation on the default partition)
    created = ensure_partitions(database_url, months_ahead=21, days_ahead=1)

    # Then they were, and the rows moved out of the default partition into theirs
    with psycopg.connect(database_url) as conn:
        assert partition_of(conn, str(order_id)) == f"orders.orders_{month:%Y_%m}"
        assert conn.execute("SELECT count(*) FROM orders.orders_default").fetchone()[0] == 0
        rows = dict(conn.execute("SELECT parent, row_count FROM maintenance.conveyor_default_rows()").fetchall())
    assert f"orders.orders_{month:%Y_%m}" in created
    assert rows["orders.orders"] == 0 and rows["messaging.inbox"] == 1  # its day is not made yet
    made = ensure_partitions(database_url, months_ahead=1, days_ahead=(month - date.today()).days + 1)
    assert f"messaging.{inbox_partition(month)}" in made
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM messaging.inbox_default").fetchone()[0] == 0


def scanned_partitions(conn: psycopg.Connection, statement: str, params: dict) -> tuple[list[str], str]:
    """The order partitions EXPLAIN ANALYZE shows scanned (pruned ones say "never executed")."""
    rows = conn.execute(f"EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) {statement}", params).fetchall()
    plan = "\n".join(r[0] for r in rows)
    return [line for line in plan.splitlines()
            if "Scan" in line and "orders_" in line and "never executed" not in line], plan


def test_the_workers_order_lookups_scan_one_partition(database_url):
    set_stock(database_url, "A", 5)
    body = order_body(("A", 1))
    run_order(database_url, body)
    ensure_partitions(database_url, months_ahead=6)
    with connect(database_url) as conn, conn.transaction():
        scanned, plan = scanned_partitions(conn, LOCK_ORDER, {"order_id": body["order_id"]})
    assert len(scanned) == 1, plan  # the state machine's lock: the registry names the partition
    this_month = datetime.now(timezone.utc).strftime("%Y_%m")
    assert f"orders_{this_month}" in scanned[0]
    with connect(database_url) as conn:
        scanned, plan = scanned_partitions(conn, SHOW_ORDER, {"order_id": body["order_id"]})
    assert len(scanned) == 1, plan  # `conveyor order show`


def test_the_inbox_finds_a_message_processed_on_an_earlier_day(database_url):
    with psycopg.connect(database_url) as conn:
        conn.execute("INSERT INTO inbox (message_id, handler, processed_on) VALUES"
                     " ('seen-yesterday', 'orders', (now() AT TIME ZONE 'UTC')::date - 1)")
    with connect(database_url) as conn, conn.transaction():
        fresh = Inbox(conn).claim_many(["seen-yesterday", "new-today"], handler="orders")
        again = Inbox(conn).claim("new-today", handler="orders")
    assert fresh == {"new-today"} and again is False


def fill_inbox_days(database_url: str, days_ago: range) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        for n in days_ago:
            day = datetime.now(timezone.utc).date() - timedelta(days=n)
            conn.execute("SELECT maintenance.conveyor_ensure_partition('messaging.inbox', %s)", (day,))
            conn.execute("INSERT INTO inbox (message_id, handler, processed_on)"
                         " SELECT %s || '-' || g, 'orders', %s FROM generate_series(1, 100) g", (f"d{n}", day))


def test_retention_drops_whole_weeks_whose_last_day_is_older_than_the_setting(database_url):
    fill_inbox_days(database_url, range(0, 22))
    with connect(database_url) as conn:
        report = run_pass(conn, Plan(inbox_retention_s=7 * 86_400))
    ages = {n for (n,) in psycopg.connect(database_url).execute(
        "SELECT DISTINCT (now() AT TIME ZONE 'UTC')::date - processed_on FROM inbox")}
    cutoff = utc_today() - timedelta(days=7)
    dropped_weeks = {monday(utc_today() - timedelta(days=n)) for n in range(0, 22)
                     if monday(utc_today() - timedelta(days=n)) + timedelta(days=7) <= cutoff}
    assert {d["table"] for d in report.dropped} == {"messaging.inbox"}
    assert sorted(d["partition"] for d in report.dropped) == sorted(
        f"messaging.inbox_{week:%Y_%m_%d}" for week in dropped_weeks)
    assert set(range(0, 8)) <= ages  # the retention's days are all kept ...
    assert max(ages) < 14  # ... and nothing older than its week allows


def test_retention_gives_up_rather_than_queue_the_writers_behind_it(database_url):
    fill_inbox_days(database_url, range(15, 16))
    holder = psycopg.connect(database_url)
    holder.execute("SELECT count(*) FROM inbox")  # a long transaction reading the inbox
    try:
        with connect(database_url) as conn:
            report = run_pass(conn, Plan(inbox_retention_s=7 * 86_400, lock_wait_ms=200, days_ahead=15))
        assert report.dropped == [] and report.busy == ["messaging.inbox"]
    finally:
        holder.rollback()
        holder.close()
    with connect(database_url) as conn:
        assert len(run_pass(conn, Plan(inbox_retention_s=7 * 86_400)).dropped) == 1


def test_a_maintenance_pass_runs_as_the_worker_role(database_url, worker_login, monkeypatch, capsys):
    fill_inbox_days(database_url, range(15, 16))  # a week whose last day is 9 to 15 days old
    monkeypatch.setenv("CONVEYOR_DATABASE_URL", url_as(database_url, *worker_login))
    monkeypatch.setenv("CONVEYOR_PII_RETENTION", "30d")
    monkeypatch.setenv("CONVEYOR_LEDGER_RETENTION", "400d")
    capsys.readouterr()
    code = cli.main(["db", "maintain", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    assert [d["partition"] for d in report["dropped"]] == [
        f"messaging.{inbox_partition(utc_today() - timedelta(days=15))}"]
    assert set(report["removed"]) == {"inventory.stock_movements", "audit.dlq_audit_runs", "privacy.order_customers"}
    assert report["default_rows"] == {"messaging.inbox": 0, "orders.order_transitions": 0, "orders.orders": 0}


@pytest.mark.parametrize("setting, value", [("CONVEYOR_INBOX_RETENTION", "2h"), ("CONVEYOR_PII_RETENTION", "soon")])
def test_bad_retention_settings_are_refused_with_one_line(monkeypatch, capsys, setting, value):
    monkeypatch.setenv(setting, value)
    assert cli.main(["db", "maintain"]) == 2
    assert setting in capsys.readouterr().err


def test_the_inbox_claim_probes_only_the_days_before_today(database_url):
    fill_inbox_days(database_url, range(1, 15))
    with connect(database_url) as conn, conn.transaction():
        rows = conn.execute("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) " + CLAIM_MANY,
                            {"ids": "{a,b}", "handler": "orders", **EventContext().params()}).fetchall()
    probed = sorted({part for (line,) in rows for part in re.findall(r"on (inbox_\w+) i", line)})
    past_weeks = {inbox_partition(utc_today() - timedelta(days=n)) for n in range(1, 15)}
    assert probed == sorted(past_weeks | {"inbox_default"})  # never the weeks made ahead
    assert len(past_weeks) in (2, 3)
