"""`conveyor archive run|list|restore` on a real database: old months go to files and come
back the same, byte for byte; unfinished months stay; damaged files restore nothing."""

from __future__ import annotations

import gzip
import hashlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from conveyor import devservices
from conveyor.db import archive
from conveyor.db.checksum import rows_checksum
from conveyor.db.migrate import discover, migrate
from conveyor.db.privacy_subject import subject_hash
from conveyor.workers import cli
from tests.support.workers import set_stock

TENANT = "shop-a"
IN_MONTH = "created_at >= %(lo)s AND created_at < %(hi)s"
OF_ORDERS = f"order_id IN (SELECT order_id FROM orders.order_registry WHERE {IN_MONTH})"
# Every table holding a month's rows: its selection and primary key (the files' order).
MONTH_TABLES = {
    "orders.order_registry": (IN_MONTH, "order_id"),
    "orders.orders": (IN_MONTH, "order_id, created_at"),
    "orders.order_lines": (OF_ORDERS, "order_id, line_no"),
    "inventory.reservations": (OF_ORDERS, "order_id, tenant_id, sku"),
    "orders.payments": (OF_ORDERS, "payment_id"),
    "orders.shipments": (OF_ORDERS, "shipment_id, event"),
    "orders.order_transitions": (OF_ORDERS, "id, occurred_at"),
    "privacy.order_customers": (OF_ORDERS, "order_id"),
}
# The last migration before orders.shipments.tracking_number became tracking_reference (V015-V017).
LAST_BEFORE_RENAME = 14
# Text that COPY must escape and give back unchanged.
AWKWARD = "tab\there, newline\nthere, back\\slash, quote ' \" and ü€"


@dataclass
class Cold:
    url: str
    root: Path
    old: date         # every order finished: archivable
    unfinished: date  # one order PAID: blocked
    current: date
    carol: str        # an order of `old` whose customer is erased later


def at(month: date, day: int, hour: int = 10) -> datetime:
    return datetime(month.year, month.month, day, hour, tzinfo=timezone.utc)


def execute(url: str, statement: str, params: dict | None = None) -> list[tuple]:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(statement, params or {})
        return cur.fetchall() if cur.description else []


def insert_order(conn: psycopg.Connection, month: date, day: int, *, status: str, currency: str, total: str,
                 customer: str, reason: str | None = None) -> str:
    order_id, created = str(uuid.uuid4()), at(month, day)
    values = {"id": order_id, "tenant": TENANT, "created": created, "placed": created - timedelta(minutes=3),
              "customer": customer, "currency": currency, "total": total, "status": status, "reason": reason,
              "msg": f"msg-{order_id}"}
    conn.execute("INSERT INTO orders.order_registry (order_id, tenant_id, placed_at, created_at) "
                 "VALUES (%(id)s, %(tenant)s, %(placed)s, %(created)s)", values)
    conn.execute("INSERT INTO orders.orders (order_id, placed_at, tenant_id, customer_id, currency, total, status, "
                 "status_reason, source_message_id, created_at, updated_at) VALUES (%(id)s, %(placed)s, %(tenant)s, "
                 "%(customer)s, %(currency)s, %(total)s, %(status)s, %(reason)s, %(msg)s, %(created)s, %(created)s)",
                 values)
    conn.execute("INSERT INTO orders.order_lines VALUES (%(id)s, 1, 'A', 2, 4.5, 'RESERVED', NULL), "
                 "(%(id)s, 2, 'B', 1, 1.25, 'REJECTED', %(reason)s)", values)
    conn.execute("INSERT INTO orders.order_transitions (order_id, from_status, to_status, event, message_id, reason, "
                 "occurred_at) VALUES (%(id)s, NULL, 'RESERVED', 'order.created', %(msg)s, NULL, %(created)s), "
                 "(%(id)s, 'RESERVED', %(status)s, 'order.finished', NULL, %(reason)s, %(finished)s)",
                 {**values, "finished": created + timedelta(days=40)})
    conn.execute("INSERT INTO privacy.order_customers VALUES (%(id)s, %(tenant)s, %(customer)s, %(sealed)s, "
                 "%(created)s)", {**values, "sealed": b"\x00\x01sealed\\\n\xff" + customer.encode()})
    return order_id


def tracking_column(conn: psycopg.Connection) -> sql.Identifier:
    """The shipments' tracking column: tracking_reference since V015, tracking_number before
    (one test seeds a database of the release before the rename)."""
    [renamed] = conn.execute("SELECT EXISTS (SELECT FROM pg_attribute WHERE attrelid = 'orders.shipments'::regclass "
                             "AND attname = 'tracking_reference' AND NOT attisdropped)").fetchone()
    return sql.Identifier("tracking_reference" if renamed else "tracking_number")


def seed(url: str) -> tuple[date, date, date, str]:
    """A finished month nine months ago, a blocked one eight months ago (hot_months is 6)."""
    set_stock(url, "A", 100, tenant=TENANT)
    set_stock(url, "B", 100, tenant=TENANT)
    current = datetime.now(timezone.utc).date().replace(day=1)
    old, unfinished = archive.add_months(current, -9), archive.add_months(current, -8)
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        conn.execute("SET LOCAL ROLE conveyor_owner")  # partitions belong to the owner, as `db partitions` makes them
        for month in (old, unfinished):
            conn.execute("SELECT maintenance.conveyor_ensure_partition('orders.orders', %(m)s)", {"m": month})
        for month in (old, archive.add_months(old, 1), archive.add_months(old, 2)):  # transitions end 40 days on
            conn.execute("SELECT maintenance.conveyor_ensure_partition('orders.order_transitions', %(m)s)",
                         {"m": month})
        delivered = insert_order(conn, old, 3, status="DELIVERED", currency="EUR", total="19.9800", customer="alice")
        insert_order(conn, old, 3, status="REJECTED", currency="USD", total="5.0000", customer="bob", reason=AWKWARD)
        carol = insert_order(conn, old, 17, status="CANCELLED", currency="EUR", total="7.5000", customer="carol")
        insert_order(conn, old, 17, status="EXPIRED", currency="EUR", total="2.5000", customer="alice")
        conn.execute("INSERT INTO inventory.reservations VALUES (%(id)s, %(t)s, 'A', 2, 'COMMITTED', %(at)s, %(at)s), "
                     "(%(c)s, %(t)s, 'A', 2, 'RELEASED', %(at)s, NULL)",
                     {"id": delivered, "c": carol, "t": TENANT, "at": at(old, 3)})
        conn.execute("INSERT INTO orders.payments VALUES ('pay-1', %(id)s, 'authorized', 19.98, 'EUR', NULL, %(at)s), "
                     "('pay-2', %(c)s, 'refused', NULL, NULL, %(awkward)s, %(at)s)",
                     {"id": delivered, "c": carol, "at": at(old, 4), "awkward": AWKWARD})
        conn.execute(sql.SQL("INSERT INTO orders.shipments (shipment_id, event, order_id, carrier, {}, received_at) "
                             "VALUES ('ship-1', 'dispatched', %(id)s, 'DHL', NULL, %(at)s), "
                             "('ship-1', 'delivered', %(id)s, 'DHL', 'TRK-1', %(at)s)").format(tracking_column(conn)),
                     {"id": delivered, "at": at(old, 5)})
        insert_order(conn, unfinished, 2, status="PAID", currency="EUR", total="3.0000", customer="dave")
        insert_order(conn, unfinished, 2, status="DELIVERED", currency="EUR", total="3.0000", customer="erin")
    return old, unfinished, current, carol


def archive_settings(monkeypatch: pytest.MonkeyPatch, database_url: str, root: Path) -> None:
    monkeypatch.setenv("CONVEYOR_DATABASE_URL", database_url)
    monkeypatch.setenv("CONVEYOR_ARCHIVE_DIR", str(root))
    monkeypatch.setenv("CONVEYOR_HOT_MONTHS", "6")
    monkeypatch.setenv("CONVEYOR_LOG_FORMAT", "json")
    monkeypatch.setenv("CONVEYOR_OPERATOR", "test-operator")


@pytest.fixture
def cold(database_url, tmp_path, monkeypatch) -> Cold:
    archive_settings(monkeypatch, database_url, tmp_path / "archive")
    old, unfinished, current, carol = seed(database_url)
    return Cold(database_url, tmp_path / "archive", old, unfinished, current, carol)


@pytest.fixture
def before_the_rename(services, tmp_path, monkeypatch) -> Iterator[tuple[str, Path]]:
    """A database of the release before V015 (shipments.tracking_number) and the archive's root."""
    directory = tmp_path / "migrations"
    directory.mkdir()
    for migration in discover():
        if migration.version <= LAST_BEFORE_RENAME:
            (directory / migration.filename).write_text(migration.sql)
    with devservices.fresh_database(services, prefix="conveyor_archive") as url:
        migrate(url, directory=directory)
        archive_settings(monkeypatch, url, tmp_path / "archive")
        yield url, tmp_path / "archive"


def conveyor(capsys, *args: str) -> tuple[int, str, str]:
    try:
        code = cli.main(list(args))
    except SystemExit as exit_:  # argparse refused the arguments
        code = int(exit_.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def month_copies(url: str, month: date) -> dict[str, str]:
    """Each table's rows of the month as COPY text, in primary-key order."""
    copies = {}
    with psycopg.connect(url, autocommit=True) as conn:
        for table, (where, key) in MONTH_TABLES.items():
            out = bytearray()
            with conn.cursor().copy(f"COPY (SELECT * FROM {table} WHERE {where} ORDER BY {key}) TO STDOUT",
                                    archive.bounds(month)) as copy:
                for chunk in copy:
                    out += chunk
            copies[table] = out.decode()
    return copies


def month_checksums(url: str, month: date) -> dict[str, tuple[int, str]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return {table: rows_checksum(conn, f"SELECT * FROM {table} WHERE {where}", archive.bounds(month))
                for table, (where, _) in MONTH_TABLES.items()}


def partition_exists(url: str, month: date) -> bool:
    return execute(url, "SELECT to_regclass(%(name)s) IS NOT NULL", {"name": f"orders.orders_{month:%Y_%m}"})[0][0]


def database_state(url: str) -> list:
    return [execute(url, "SELECT count(*) FROM archive.months"), execute(url, "SELECT * FROM orders.daily_summaries"),
            execute(url, "SELECT count(*) FROM orders.order_registry"),
            execute(url, "SELECT relname FROM pg_class WHERE relname LIKE 'orders\\_2%%' ORDER BY 1")]


def test_dry_run_says_what_would_go_and_changes_nothing(cold, capsys):
    # Given two old months, one finished and one with an unfinished order
    before, copies = database_state(cold.url), month_copies(cold.url, cold.old)

    # When a dry run looks at them
    code, out, _ = conveyor(capsys, "archive", "run", "--dry-run", "--json")

    # Then it names the finished month's rows per table and the blocked month, and changes nothing
    assert code == 0
    months = {m["month"]: m for m in json.loads(out)["months"]}
    assert months[archive.label(cold.old)]["outcome"] == "would archive"
    assert months[archive.label(cold.old)]["rows"] == {
        "orders.order_registry": 4, "orders.orders": 4, "orders.order_lines": 8, "inventory.reservations": 2,
        "orders.payments": 2, "orders.shipments": 2, "orders.order_transitions": 8, "privacy.order_customers": 4}
    assert months[archive.label(cold.unfinished)] | {"line": ""} == {
        "month": archive.label(cold.unfinished), "outcome": "blocked", "unfinished": {"PAID": 1}, "line": ""}
    assert database_state(cold.url) == before and month_copies(cold.url, cold.old) == copies
    assert not cold.root.exists()


def test_run_archives_the_finished_month_and_reports_the_blocked_one(cold, capsys):
    # Given the month's checksums while it is hot
    checksums = month_checksums(cold.url, cold.old)

    # When the archive runs
    code, out, err = conveyor(capsys, "archive", "run", "--json")

    # Then the finished month is archived and the unfinished one is reported blocked, untouched
    assert code == 0, err
    months = {m["month"]: m for m in json.loads(out)["months"]}
    old, blocked = months[archive.label(cold.old)], months[archive.label(cold.unfinished)]
    assert (old["outcome"], blocked["outcome"], blocked["unfinished"]) == ("archived", "blocked", {"PAID": 1})
    assert f"archive {archive.label(cold.old)}: orders.orders 4/4 rows" in err.splitlines()
    # ... the hot tables hold none of its rows and its partition is gone
    assert all(rows == 0 for rows, _ in month_checksums(cold.url, cold.old).values())
    assert not partition_exists(cold.url, cold.old) and partition_exists(cold.url, cold.unfinished)
    assert execute(cold.url, "SELECT count(*) FROM orders.orders WHERE created_at >= %(lo)s AND created_at < %(hi)s",
                   archive.bounds(cold.unfinished)) == [(2,)]
    # ... the files and the manifest describe exactly the rows that were hot
    directory = cold.root / archive.label(cold.old)
    manifest = json.loads((directory / "manifest.json").read_text())
    assert (manifest["month"], manifest["schema_version"], manifest["operator"]) == (
        archive.label(cold.old), execute(cold.url, "SELECT max(version) FROM public.schema_history")[0][0],
        "test-operator")
    for entry in manifest["files"]:
        data = (directory / entry["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
        assert data[4:8] == b"\x00\x00\x00\x00"  # gzip mtime 0: the same rows give the same bytes
        assert (entry["rows"], entry["checksum"]) == checksums[entry["table"]], entry["table"]
    # ... and its daily summaries are final, per day, status and currency
    assert execute(cold.url, "SELECT day, status, currency, orders, amount FROM orders.daily_summaries "
                             "WHERE day >= %(first)s AND day < %(next)s ORDER BY 1, 2, 3",
                   {"first": cold.old, "next": archive.add_months(cold.old, 1)}) == [
        (cold.old.replace(day=3), "DELIVERED", "EUR", 1, Decimal("19.9800")),
        (cold.old.replace(day=3), "REJECTED", "USD", 1, Decimal("5.0000")),
        (cold.old.replace(day=17), "CANCELLED", "EUR", 1, Decimal("7.5000")),
        (cold.old.replace(day=17), "EXPIRED", "EUR", 1, Decimal("2.5000"))]
    assert execute(cold.url, "SELECT state, location, operator FROM archive.months") == [
        ("archived", str(directory.resolve()), "test-operator")]


def test_list_shows_the_archived_month_and_the_hot_ones(cold, capsys):
    assert conveyor(capsys, "archive", "run")[0] == 0

    code, out, _ = conveyor(capsys, "archive", "list", "--json")

    assert code == 0
    listed = json.loads(out)
    [row] = listed["archive"]
    assert (row["month"], row["state"], row["total_rows"], row["rows"]["orders.orders"]) == (
        archive.label(cold.old), "archived", 34, 4)
    hot = {m["month"]: m for m in listed["hot"]}
    assert archive.label(cold.old) not in hot
    assert (hot[archive.label(cold.unfinished)]["verdict"], hot[archive.label(cold.unfinished)]["orders"]) == (
        "blocked", 2)
    assert hot[archive.label(cold.current)]["verdict"] == "recent"
    text = conveyor(capsys, "archive", "list")[1]
    [line] = [ln for ln in text.splitlines() if ln.strip().startswith(archive.label(cold.unfinished))]
    assert line.split() == [archive.label(cold.unfinished), "2", "orders", "blocked", "(PAID", "1)"]


def test_restore_brings_back_the_same_rows_byte_for_byte_and_the_month_can_go_again(cold, capsys):
    # Given the month's rows and checksums before it was archived
    copies, checksums = month_copies(cold.url, cold.old), month_checksums(cold.url, cold.old)
    assert conveyor(capsys, "archive", "run", "--month", archive.label(cold.old))[0] == 0
    manifest = cold.root / archive.label(cold.old) / "manifest.json"
    first = {f["file"]: f["sha256"] for f in json.loads(manifest.read_text())["files"]}

    # When it is restored
    code, out, err = conveyor(capsys, "archive", "restore", archive.label(cold.old))

    # Then the same rows are back, checksums and COPY text alike
    assert code == 0, err
    assert out.startswith(f"restored {archive.label(cold.old)} from ")
    assert month_checksums(cold.url, cold.old) == checksums
    assert month_copies(cold.url, cold.old) == copies
    assert execute(cold.url, "SELECT state, restored_at IS NOT NULL FROM archive.months") == [("restored", True)]
    assert execute(cold.url, "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = to_regclass(%(p)s)",
                   {"p": f"orders.orders_{cold.old:%Y_%m}"}) == [("conveyor_owner",)]  # like every partition
    # ... and archiving it again works (restored -> archived), into the very same bytes
    assert conveyor(capsys, "archive", "run", "--month", archive.label(cold.old))[0] == 0
    assert execute(cold.url, "SELECT state, restored_at FROM archive.months") == [("archived", None)]
    assert {f["file"]: f["sha256"] for f in json.loads(manifest.read_text())["files"]} == first


def test_restore_reapplies_an_erasure_made_while_the_month_was_archived(cold, capsys):
    assert conveyor(capsys, "archive", "run")[0] == 0
    # Given carol asked to be erased while her month was in the archive
    execute(cold.url, "INSERT INTO audit.privacy_requests (action, tenant_id, subject_hash, operator) "
                      "VALUES ('erase', %(t)s, %(h)s, 'dpo')", {"t": TENANT, "h": subject_hash(TENANT, "carol")})

    # When the month is restored
    code, out, err = conveyor(capsys, "archive", "restore", archive.label(cold.old), "--json")

    # Then her personal data is gone again and her order names her by hash only; the others are intact
    assert code == 0, err
    assert json.loads(out)["erased"] == {"personal_data_rows": 1, "orders_pseudonymised": 1}
    assert execute(cold.url, "SELECT count(*) FROM privacy.order_customers WHERE order_id = %(id)s",
                   {"id": cold.carol}) == [(0,)]
    assert execute(cold.url, "SELECT customer_id FROM orders.orders WHERE order_id = %(id)s", {"id": cold.carol}) == [
        ("erased:" + subject_hash(TENANT, "carol")[:12],)]
    assert execute(cold.url, "SELECT customer_id, count(*) FROM privacy.order_customers GROUP BY 1 ORDER BY 1") == [
        ("alice", 2), ("bob", 1), ("dave", 1), ("erin", 1)]


def test_a_tampered_file_fails_the_restore_with_exit_1_and_restores_nothing(cold, capsys):
    # Given an archived month whose orders file was altered (still valid gzip)
    assert conveyor(capsys, "archive", "run")[0] == 0
    path = cold.root / archive.label(cold.old) / "orders.orders.copy.gz"
    text = gzip.decompress(path.read_bytes()).replace(b"19.9800", b"0.9800")
    path.write_bytes(gzip.compress(text, mtime=0))

    # When it is restored
    code, out, err = conveyor(capsys, "archive", "restore", archive.label(cold.old))

    # Then one line names the file, and nothing came back
    assert code == 1
    [line] = err.strip().splitlines()
    assert "orders.orders.copy.gz" in line and "sha256" in line
    assert execute(cold.url, "SELECT count(*) FROM orders.order_registry WHERE created_at >= %(lo)s "
                             "AND created_at < %(hi)s", archive.bounds(cold.old)) == [(0,)]
    assert not partition_exists(cold.url, cold.old)
    assert execute(cold.url, "SELECT state FROM archive.months") == [("archived",)]


def test_missing_files_fail_the_restore_with_exit_1(cold, capsys):
    assert conveyor(capsys, "archive", "run")[0] == 0
    (cold.root / archive.label(cold.old) / "orders.payments.copy.gz").unlink()

    code, _, err = conveyor(capsys, "archive", "restore", archive.label(cold.old))

    assert code == 1
    [line] = err.strip().splitlines()
    assert "orders.payments.copy.gz is missing" in line


def test_a_failed_commit_rolls_back_keeps_the_files_and_a_rerun_archives(cold, capsys, monkeypatch):
    # Given a session holding the month's partition, so the drop cannot get its lock
    monkeypatch.setattr(archive, "LOCK_TIMEOUT_MS", 200)
    with psycopg.connect(cold.url) as holder:
        holder.execute(f"LOCK TABLE orders.orders_{cold.old:%Y_%m} IN ACCESS SHARE MODE")

        # When the archive runs
        code, out, err = conveyor(capsys, "archive", "run", "--month", archive.label(cold.old))

    # Then it says so in one line, removed nothing and kept the files
    assert code == 1
    [line] = out.strip().splitlines()
    assert line.startswith(f"failed {archive.label(cold.old)}: ") and "rolled back" in line and "files kept" in line
    assert month_checksums(cold.url, cold.old)["orders.orders"][0] == 4
    assert (cold.root / archive.label(cold.old) / "manifest.json").is_file()
    assert execute(cold.url, "SELECT count(*) FROM archive.months") == [(0,)]
    # ... and a rerun, with nobody in the way, archives the month
    assert conveyor(capsys, "archive", "run", "--month", archive.label(cold.old))[0] == 0
    assert not partition_exists(cold.url, cold.old)


@pytest.mark.parametrize("archived", ["before V015", "between V016 and V017"])
def test_a_month_archived_before_the_tracking_column_was_renamed_restores_into_the_new_one(
        before_the_rename, capsys, archived):
    # Given a month archived when shipments had tracking_number (alone, or beside tracking_reference)
    url, root = before_the_rename
    old = seed(url)[0]
    if archived == "between V016 and V017":
        migrate(url)  # expand and backfill; the contract step held
    shipments = "SELECT shipment_id, event, {} FROM orders.shipments ORDER BY 1, 2"
    before = execute(url, shipments.format("tracking_number"))
    assert conveyor(capsys, "archive", "run", "--month", archive.label(old))[0] == 0
    files = json.loads((root / archive.label(old) / "manifest.json").read_text())["files"]
    assert "tracking_number" in next(f for f in files if f["table"] == "orders.shipments")["columns"]

    # When the contract step has dropped tracking_number and the month is restored
    migrate(url, contract=True)
    code, _, err = conveyor(capsys, "archive", "restore", archive.label(old))

    # Then it restores (checksums and all), the old column's values in the new one
    assert code == 0, err
    assert execute(url, shipments.format("tracking_reference")) == before
    assert ("TRK-1",) in [row[2:] for row in before]


@pytest.mark.parametrize("args", [("archive", "restore", "2026-13"), ("archive", "restore", "26-01"),
                                  ("archive", "run", "--month", "January")])
def test_a_month_that_is_not_yyyy_mm_exits_2_with_one_line(cold, capsys, args):
    code, _, err = conveyor(capsys, *args)

    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "YYYY-MM" in err


def test_restoring_a_month_that_is_not_archived_exits_4(cold, capsys):
    code, out, err = conveyor(capsys, "archive", "restore", archive.label(cold.unfinished), "--json")

    assert code == 4
    assert json.loads(out)["error"] == "not_found" and "is not archived" in err


def test_an_unreachable_database_exits_3(capsys, monkeypatch):
    monkeypatch.setenv("CONVEYOR_DATABASE_URL", "postgresql://postgres@127.0.0.1:1/none")

    assert conveyor(capsys, "archive", "list")[0] == 3
