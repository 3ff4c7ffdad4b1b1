"""Cold months: exported to compressed files with checksums, then dropped from the hot tables
(docs/data-lifecycle.md, "Cold data"; the catalogue is V013's ``archive.months``).

A month M is the orders Conveyor *recorded* in M (``order_registry.created_at``, the partition
key of ``orders.orders``), with every row of theirs in the tables of ``TABLES``. Archiving it:

1. ``export_month``: in one REPEATABLE READ snapshot, each table's rows of M as
   ``COPY (SELECT <columns> ... ORDER BY <primary key>) TO STDOUT`` (text) into
   ``<dir>/<YYYY-MM>/<schema>.<table>.copy.gz`` (gzip with mtime 0: the same rows give the same
   bytes), and ``manifest.json``: per file its sha256, row count and content checksum
   (``db/checksum.py``). Written to a temporary directory, fsynced, then renamed into place.
2. ``commit_archive``: one transaction that recomputes M's daily summaries (final: the
   maintenance refresh skips archived months), records the month in ``archive.months``,
   deletes the children (each DELETE's own checksum must equal the manifest's: what goes is
   what was exported), detaches and drops M's orders partition (its rows checked first,
   under its lock) and deletes the registry rows. Any difference rolls it all back.

``restore_month`` does the reverse in one transaction and re-applies privacy erasures made
since. A file names the columns of its day: a column renamed since by an expand/contract
migration (``RENAMED_COLUMNS``) is loaded into its new name, and of a file made while both
existed (a trigger kept them equal) the value is loaded once; the checksum proves it either way.
Functions that take a ``progress`` call it as ``progress(table, rows_done, rows_total)``.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from conveyor.db.checksum import changed_rows_checksum, pin_output_settings, rows_checksum
from conveyor.db.connection import require_direct, snapshot, transaction
from conveyor.db.crypto import fsync_directory
from conveyor.db.migrate import ACT_AS_OWNER, OWNER_ROLE
from conveyor.db.privacy_subject import ERASED_HASH_CHARS, ERASED_PREFIX, SUBJECT_HASH_SQL

Progress = Callable[[str, int, int], None]
FINISHED = ("REJECTED", "DELIVERED", "CANCELLED", "EXPIRED")
MANIFEST, MANIFEST_FORMAT = "manifest.json", 1
LOCK_TIMEOUT_MS = 5_000  # DDL waits this long for the writers, then gives up (rolled back; rerun later)
ARCHIVE_LOCK_KEY = 0x636F6E7661726368  # "convarch": one archive command at a time
CHUNK = 64 * 1024
PROGRESS_ROWS = 1_000


@dataclass(frozen=True)
class Table:
    name: str                # schema.table
    key: tuple[str, ...]     # the primary key: the order rows are written in
    by_order: bool = True    # rows of M's orders (order_id IN M's registry ids); else created_at in M

    @property
    def identifier(self) -> sql.Identifier:
        return sql.Identifier(*self.name.split("."))

    @property
    def file(self) -> str:
        return f"{self.name}.copy.gz"


# Restored in this order (the registry first, its children last), deleted in the reverse.
TABLES = (
    Table("orders.order_registry", ("order_id",), by_order=False),
    Table("orders.orders", ("order_id", "created_at"), by_order=False),
    Table("orders.order_lines", ("order_id", "line_no")),
    Table("inventory.reservations", ("order_id", "tenant_id", "sku")),
    Table("orders.payments", ("payment_id",)),
    Table("orders.shipments", ("shipment_id", "event")),
    Table("orders.order_transitions", ("id", "occurred_at")),
    Table("privacy.order_customers", ("order_id",)),
)
# Columns renamed by an expand/contract migration, per table: old name -> new name (V015-V017).
RENAMED_COLUMNS = {"orders.shipments": {"tracking_number": "tracking_reference"}}
IN_MONTH = sql.SQL("created_at >= %(lo)s AND created_at < %(hi)s")
OF_MONTH_ORDERS = sql.SQL("order_id IN (SELECT order_id FROM orders.order_registry "
                          "WHERE created_at >= %(lo)s AND created_at < %(hi)s)")

COLUMNS = """
SELECT attname FROM pg_attribute
WHERE attrelid = %(table)s::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum
"""
# The monthly partitions of orders.orders with their [lower, upper) bounds as UTC dates.
ORDER_PARTITIONS = r"""
SELECT n.nspname, c.relname, b.lower_bound, b.upper_bound
FROM pg_inherits i
JOIN pg_class c ON c.oid = i.inhrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
CROSS JOIN LATERAL (SELECT pg_get_expr(c.relpartbound, c.oid) AS bound) e
CROSS JOIN LATERAL (
    SELECT ((substring(e.bound FROM 'FROM \(''([^'']+)''\)'))::timestamptz AT TIME ZONE 'UTC')::date AS lower_bound,
           ((substring(e.bound FROM 'TO \(''([^'']+)''\)'))::timestamptz AT TIME ZONE 'UTC')::date AS upper_bound
) b
WHERE i.inhparent = 'orders.orders'::regclass AND b.lower_bound IS NOT NULL
ORDER BY b.lower_bound
"""
STATUS_COUNTS = """
SELECT status, count(*) FROM orders.orders WHERE created_at >= %(lo)s AND created_at < %(hi)s
GROUP BY status ORDER BY status
"""
TODAY = "SELECT (now() AT TIME ZONE 'UTC')::date"
SCHEMA_VERSION = "SELECT max(version) FROM public.schema_history"
CATALOGUE = """
SELECT month, state, location, manifest, archived_at, restored_at, operator FROM archive.months
WHERE %(month)s::date IS NULL OR month = %(month)s ORDER BY month
"""
RECORD_ARCHIVED = """
INSERT INTO archive.months AS a (month, state, location, manifest, operator)
VALUES (%(month)s, 'archived', %(location)s, %(manifest)s, %(operator)s)
ON CONFLICT (month) DO UPDATE
    SET state = 'archived', location = excluded.location, manifest = excluded.manifest,
        archived_at = now(), restored_at = NULL, operator = excluded.operator
    WHERE a.state = 'restored'
"""
RECORD_RESTORED = """
UPDATE archive.months SET state = 'restored', restored_at = now(), operator = %(operator)s
WHERE month = %(month)s AND state = 'archived'
"""
CLEAR_SUMMARIES = "DELETE FROM orders.daily_summaries WHERE day >= %(first)s AND day < %(next)s"
MONTH_SUMMARIES = """
INSERT INTO orders.daily_summaries (tenant_id, day, status, currency, orders, amount)
SELECT tenant_id, (created_at AT TIME ZONE 'UTC')::date, status, currency, count(*), sum(total)
FROM orders.orders WHERE created_at >= %(lo)s AND created_at < %(hi)s
GROUP BY 1, 2, 3, 4
"""
LOCK_REGISTRY = """
SELECT count(*) FROM (SELECT 1 FROM orders.order_registry
                      WHERE created_at >= %(lo)s AND created_at < %(hi)s FOR UPDATE) locked
"""
SET_LOCK_TIMEOUT = "SELECT set_config('lock_timeout', %(ms)s, true)"
ENSURE_PARTITION = "SELECT maintenance.conveyor_ensure_partition('orders.orders', %(first)s)"
TRY_LOCK = "SELECT pg_try_advisory_lock(%(key)s)"  # held by the session until it closes
# Customers erased since the month was archived: their personal data goes again, and the
# orders kept name them by hash only (db/privacy_subject.py has the definition; its columns
# are the deleted or updated row's: `erased` has none of that name).
ERASE_AGAIN = f"""
WITH erased AS (
    SELECT DISTINCT subject_hash FROM audit.privacy_requests WHERE action = 'erase' AND subject_hash IS NOT NULL
), personal AS (
    DELETE FROM privacy.order_customers c USING erased e
    WHERE c.order_id IN (SELECT order_id FROM orders.order_registry WHERE created_at >= %(lo)s AND created_at < %(hi)s)
      AND {SUBJECT_HASH_SQL} = e.subject_hash
    RETURNING c.order_id
), kept AS (
    UPDATE orders.orders o SET customer_id = %(prefix)s || left(e.subject_hash, %(chars)s)
    FROM erased e
    WHERE o.created_at >= %(lo)s AND o.created_at < %(hi)s
      AND {SUBJECT_HASH_SQL} = e.subject_hash
    RETURNING o.order_id
)
SELECT (SELECT count(*) FROM personal), (SELECT count(*) FROM kept)
"""


class ArchiveError(Exception):
    """The archive refused or failed; the message is one line for the operator."""


@dataclass(frozen=True)
class MonthStatus:
    """A month still in the hot tables: its orders per status, and whether it may go."""

    month: date
    partition: tuple[str, str]  # schema and name of its orders partition
    by_status: dict[str, int]
    old_enough: bool

    @property
    def orders(self) -> int:
        return sum(self.by_status.values())

    @property
    def unfinished(self) -> dict[str, int]:
        return {s: n for s, n in self.by_status.items() if s not in FINISHED}

    @property
    def verdict(self) -> str:
        return "recent" if not self.old_enough else "blocked" if self.unfinished else "archivable"


# -- months ---------------------------------------------------------------------------------

def parse_month(text: str) -> date:
    """``YYYY-MM`` as the month's first day; ValueError otherwise."""
    parts = text.split("-")
    if (len(parts) != 2 or len(parts[0]) != 4 or len(parts[1]) != 2 or not all(p.isdigit() for p in parts)
            or not 1 <= int(parts[1]) <= 12 or int(parts[0]) < 1):
        raise ValueError(f"a month is YYYY-MM, not {text!r}")
    return date(int(parts[0]), int(parts[1]), 1)


def label(month: date) -> str:
    return month.strftime("%Y-%m")


def add_months(month: date, count: int) -> date:
    index = month.year * 12 + month.month - 1 + count
    return date(index // 12, index % 12 + 1, 1)


def bounds(month: date) -> dict[str, datetime]:
    """The month's [lo, hi) as UTC timestamps: the statements' parameters."""
    start, end = (datetime(d.year, d.month, 1, tzinfo=timezone.utc) for d in (month, add_months(month, 1)))
    return {"lo": start, "hi": end}


def hot_months(conn: psycopg.Connection, *, hot: int, today: date | None = None) -> list[MonthStatus]:
    """Every month with an orders partition up to the current one, oldest first."""
    current = (today or _scalar(conn, TODAY)).replace(day=1)
    cutoff = add_months(current, -hot)
    months = [(lower, (schema, name)) for schema, name, lower, upper in conn.execute(ORDER_PARTITIONS).fetchall()
              if lower <= current and upper == add_months(lower, 1)]
    return [MonthStatus(m, part, _status_counts(conn, m), add_months(m, 1) <= cutoff) for m, part in months]


def _status_counts(conn: psycopg.Connection, month: date) -> dict[str, int]:
    return {status: int(n) for status, n in conn.execute(STATUS_COUNTS, bounds(month)).fetchall()}


def catalogue(conn: psycopg.Connection, month: date | None = None) -> list[dict]:
    """The rows of ``archive.months`` (one month's, when given)."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(CATALOGUE, {"month": month}).fetchall()


def table_counts(conn: psycopg.Connection, month: date) -> dict[str, int]:
    """Rows per table the month holds, in one snapshot (what ``--dry-run`` reports)."""
    with snapshot(conn):
        return {t.name: _scalar(conn, sql.SQL("SELECT count(*) FROM {} WHERE {}").format(t.identifier, _where(t)),
                                bounds(month)) for t in TABLES}


# -- export ---------------------------------------------------------------------------------

def export_month(conn: psycopg.Connection, month: date, root: Path, *, operator: str,
                 progress: Progress) -> tuple[Path, dict]:
    """Write the month's files and manifest under ``root/<YYYY-MM>``; return the directory and
    the manifest. An earlier export of the month there is replaced."""
    temporary = root / f".{label(month)}.tmp-{secrets.token_hex(4)}"
    temporary.mkdir(parents=True)
    try:
        with snapshot(conn):
            pin_output_settings(conn)
            files = [_export_table(conn, t, month, temporary, progress) for t in TABLES]
            version = _scalar(conn, SCHEMA_VERSION)
        manifest = {"format": MANIFEST_FORMAT, "month": label(month),
                    "range": [b.isoformat() for b in bounds(month).values()],
                    "created_at": datetime.now(timezone.utc).isoformat(), "schema_version": version,
                    "operator": operator, "files": files}
        _write_durably(temporary / MANIFEST, json.dumps(manifest, indent=2).encode() + b"\n")
        return _install(temporary, root / label(month)), manifest
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def _export_table(conn: psycopg.Connection, table: Table, month: date, directory: Path,
                  progress: Progress) -> dict:
    columns = table_columns(conn, table)
    rows, checksum = rows_checksum(conn, _select(table, columns, ordered=False), bounds(month))
    path = directory / table.file
    copy = sql.SQL("COPY ({}) TO STDOUT").format(_select(table, columns, ordered=True))
    with open(path, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as packed:
            _copy_out(conn, copy, bounds(month), packed, lambda done: progress(table.name, done, rows))
        raw.flush()
        os.fsync(raw.fileno())
    progress(table.name, rows, rows)
    return {"table": table.name, "file": table.file, "columns": columns, "rows": rows, "checksum": checksum,
            "sha256": file_sha256(path)}


def _copy_out(conn: psycopg.Connection, statement: sql.Composed, params: dict, out: gzip.GzipFile,
              tick: Callable[[int], None]) -> None:
    done = 0
    with conn.cursor() as cur, cur.copy(statement, params) as copy:
        for chunk in copy:
            out.write(chunk)
            done += 1  # the text format yields one row per chunk
            if done % PROGRESS_ROWS == 0:
                tick(done)


def table_columns(conn: psycopg.Connection, table: Table) -> list[str]:
    return [name for (name,) in conn.execute(COLUMNS, {"table": table.name}).fetchall()]


def _where(table: Table) -> sql.Composable:
    return OF_MONTH_ORDERS if table.by_order else IN_MONTH


def _select(table: Table, columns: list[str], *, ordered: bool) -> sql.Composed:
    statement = sql.SQL("SELECT {} FROM {} WHERE {}").format(
        sql.SQL(", ").join(map(sql.Identifier, columns)), table.identifier, _where(table))
    if ordered:
        statement += sql.SQL(" ORDER BY {}").format(sql.SQL(", ").join(map(sql.Identifier, table.key)))
    return statement


# -- the files --------------------------------------------------------------------------------

def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _write_durably(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _install(temporary: Path, final: Path) -> Path:
    """Rename the finished directory into place (replacing an earlier one), fsyncing both levels."""
    fsync_directory(temporary)
    previous = final.with_name(f".{final.name}.old-{secrets.token_hex(4)}")
    if final.exists():
        final.rename(previous)
    temporary.rename(final)
    fsync_directory(final.parent)
    shutil.rmtree(previous, ignore_errors=True)
    return final


def read_manifest(directory: Path, expected: dict) -> dict:
    """``manifest.json`` of ``directory``, which must list the catalogue's files, each present
    with its sha256 (ArchiveError naming the first file that is missing or differs)."""
    path = directory / MANIFEST
    if not path.is_file():
        raise ArchiveError(f"{path} is missing")
    manifest = json.loads(path.read_text())
    if manifest.get("files") != expected["files"]:
        raise ArchiveError(f"{path} does not describe the archived month (archive.months differs)")
    for entry in manifest["files"]:
        file = directory / entry["file"]
        if not file.is_file():
            raise ArchiveError(f"{file} is missing")
        if file_sha256(file) != entry["sha256"]:
            raise ArchiveError(f"{file}: sha256 differs from the manifest (file damaged or altered)")
    return manifest


# -- the transactions -------------------------------------------------------------------------

def commit_archive(conn: psycopg.Connection, month: date, manifest: dict, *, location: Path, operator: str,
                   partition: tuple[str, str], progress: Progress, lock_timeout_ms: int | None = None) -> None:
    """Summaries, catalogue row, deletes and the partition's drop, in one transaction."""
    params, expected = bounds(month), {f["table"]: f for f in manifest["files"]}
    part, registry, orders = sql.Identifier(*partition), TABLES[0], TABLES[1]
    with transaction(conn):
        conn.execute(SET_LOCK_TIMEOUT, {"ms": str(lock_timeout_ms or LOCK_TIMEOUT_MS)})
        conn.execute(LOCK_REGISTRY, params)
        conn.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(part))
        for table in (registry, orders):  # locked: nothing changes them until the commit
            select = _select(table, expected[table.name]["columns"], ordered=False)
            _check(expected[table.name], rows_checksum(conn, select, params), progress, "checked")
        refresh_summaries(conn, month)
        if conn.execute(RECORD_ARCHIVED, {"month": month, "location": str(location), "manifest": Jsonb(manifest),
                                          "operator": operator}).rowcount != 1:
            raise ArchiveError(f"{label(month)} is archived already (archive.months)")
        for table in reversed(TABLES[2:]):
            _check(expected[table.name], changed_rows_checksum(conn, _delete(table, expected), params), progress,
                   "removed")
        conn.execute(sql.SQL("ALTER TABLE orders.orders DETACH PARTITION {}").format(part))
        conn.execute(sql.SQL("DROP TABLE {}").format(part))
        progress(f"removed {orders.name}", expected[orders.name]["rows"], expected[orders.name]["rows"])  # checked
        _check(expected[registry.name], changed_rows_checksum(conn, _delete(registry, expected), params), progress,
               "removed")


def _delete(table: Table, expected: dict) -> sql.Composed:
    columns = sql.SQL(", ").join(map(sql.Identifier, expected[table.name]["columns"]))
    return sql.SQL("DELETE FROM {} WHERE {} RETURNING {}").format(table.identifier, _where(table), columns)


def _check(entry: dict, found: tuple[int, str], progress: Progress, verb: str) -> None:
    """Rows and checksum found must be the manifest's (ArchiveError, so the transaction rolls back)."""
    if found != (entry["rows"], entry["checksum"]):
        raise ArchiveError(f"{entry['table']}: {found[0]} rows with checksum {found[1]} in the database, "
                           f"{entry['rows']} with {entry['checksum']} in the manifest (rows changed since)")
    progress(f"{verb} {entry['table']}", entry["rows"], entry["rows"])


def refresh_summaries(conn: psycopg.Connection, month: date) -> int:
    """Recompute exactly the month's daily summaries from its hot orders; returns the rows written."""
    conn.execute(CLEAR_SUMMARIES, {"first": month, "next": add_months(month, 1)})
    return conn.execute(MONTH_SUMMARIES, bounds(month)).rowcount


def restore_month(conn: psycopg.Connection, month: date, directory: Path, manifest: dict, *, operator: str,
                  progress: Progress, lock_timeout_ms: int | None = None) -> dict[str, int]:
    """Load the verified files back, check the rows, re-erase; returns what the erasure removed."""
    params = bounds(month)
    with transaction(conn):
        conn.execute(SET_LOCK_TIMEOUT, {"ms": str(lock_timeout_ms or LOCK_TIMEOUT_MS)})
        _create_partition(conn, month)
        pin_output_settings(conn)
        for entry in manifest["files"]:
            table = next(t for t in TABLES if t.name == entry["table"])
            columns = restored_columns(table, entry["columns"], table_columns(conn, table))
            _copy_in(conn, table, entry, columns, directory / entry["file"], progress)
            _check(entry, rows_checksum(conn, _select(table, columns, ordered=False), params), progress,
                   "checked")
        personal, kept = _scalar_row(conn, ERASE_AGAIN, {**params, "prefix": ERASED_PREFIX,
                                                          "chars": ERASED_HASH_CHARS})
        if conn.execute(RECORD_RESTORED, {"month": month, "operator": operator}).rowcount != 1:
            raise ArchiveError(f"{label(month)} is not archived (archive.months)")
    return {"personal_data_rows": personal, "orders_pseudonymised": kept}


def _create_partition(conn: psycopg.Connection, month: date) -> None:
    """The month's orders partition, made as conveyor_owner like every other (db/migrate.py)."""
    as_owner = bool(_scalar(conn, ACT_AS_OWNER, {"role": OWNER_ROLE}))
    if as_owner:
        conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(OWNER_ROLE)))
    conn.execute(ENSURE_PARTITION, {"first": month})
    if as_owner:
        conn.execute("RESET ROLE")


def restored_columns(table: Table, archived: list[str], present: list[str]) -> list[str]:
    """Where each archived column's values go now, in the file's order: its own name, or the
    new name of a column renamed since (``RENAMED_COLUMNS``). A name may come twice (a file made
    while both columns existed): the checksum reads it twice, as the file has the value twice."""
    renamed = RENAMED_COLUMNS.get(table.name, {})
    return [renamed[name] if name in renamed and name not in present else name for name in archived]


def _copy_in(conn: psycopg.Connection, table: Table, entry: dict, columns: list[str], path: Path,
             progress: Progress) -> None:
    """COPY the file into ``columns`` (``restored_columns``); a column named twice is loaded once."""
    keep = [i for i, name in enumerate(columns) if name not in columns[:i]]
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        table.identifier, sql.SQL(", ").join(sql.Identifier(columns[i]) for i in keep))
    done = 0
    with conn.cursor() as cur, cur.copy(statement) as copy, gzip.open(path, "rb") as packed:
        for block in _blocks(packed, keep if len(keep) < len(columns) else None):
            copy.write(block)
            done += block.count(b"\n")
            progress(table.name, done, entry["rows"])
    progress(table.name, entry["rows"], entry["rows"])


def _blocks(packed: gzip.GzipFile, keep: list[int] | None) -> Iterator[bytes]:
    """The file's bytes in chunks; with ``keep``, line by line with only those fields (COPY's
    text format escapes tabs and newlines inside values, so splitting on them is exact)."""
    if keep is None:
        while block := packed.read(CHUNK):
            yield block
        return
    for line in packed:
        fields = line.rstrip(b"\n").split(b"\t")
        yield b"\t".join(fields[i] for i in keep) + b"\n"


# -- one archive command at a time ----------------------------------------------------------

def try_lock(conn: psycopg.Connection) -> bool:
    """The session lock every ``conveyor archive run|restore`` holds while it works (released
    when its connection closes): two runs would race for the same month's files."""
    require_direct(conn, "conveyor archive")
    return bool(_scalar(conn, TRY_LOCK, {"key": ARCHIVE_LOCK_KEY}))


def _scalar(conn: psycopg.Connection, query: str | sql.SQL | sql.Composed, params: dict | None = None) -> Any:
    return _scalar_row(conn, query, params)[0]


def _scalar_row(conn: psycopg.Connection, query: str | sql.SQL | sql.Composed, params: dict | None = None) -> tuple:
    row = conn.execute(query, params or {}).fetchone()
    if row is None:
        raise ArchiveError("the database returned no row")
    return tuple(row)
