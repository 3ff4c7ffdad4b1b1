"""Content checksums of rows, computed in the database: ``rows_checksum(conn, query, params)``.

The archive (``db/archive.py``) proves with them that what it wrote to files is what the hot
tables held, that nothing changed between the export and the delete, and that a restore put
back the same rows; ``conveyor db checksum`` (``table_checksums``) compares whole tables, two
copies of a database (the restore drill: the restored database against the checksums taken at
the target time), or a table before and after a migration that moves its data.

How the hash is made, and why it is stable:

- Each row becomes text by the composite type's output function (``ROW(r.*)::text``), then
  its md5; the first 16 hex digits are read as a signed 64-bit integer, and the integers are
  summed exactly (``sum(bigint)`` accumulates in 128 bits and returns ``numeric``: no
  overflow). A sum does not care in which order the rows come, so the hash is the same
  whatever the physical order, the plan, a VACUUM FULL or a restore into other pages; the
  row count travels beside it.
- NULL is safe: inside a composite a NULL field renders as nothing between the commas
  (``(1,,x)``) while an empty string renders as ``""`` (``(1,"",x)``), so NULL and '' hash
  differently; a row is never NULL as a whole (a row of NULLs renders ``(,,)``), and an empty
  set sums to 0 by ``coalesce``.
- A row's text depends on a few session settings (the time zone of ``timestamptz``, the date
  style, ``bytea_output``, float digits): ``pin_output_settings`` fixes them for the rest of
  the transaction, and ``rows_checksum`` calls it, so two sessions, or two servers, agree.
- The query names its columns explicitly (``db/archive.py`` does): a column added later
  does not change the checksum of the columns that were there.

md5 is no defence against someone forging rows to match (the archive files carry a sha256
for that); it detects change, which is all a content checksum is for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import psycopg
from psycopg import sql

from conveyor.db.connection import snapshot

# What a row's text depends on, pinned (SET LOCAL) so every session renders rows alike.
OUTPUT_SETTINGS = {"TimeZone": "UTC", "DateStyle": "ISO, MDY", "IntervalStyle": "postgres",
                   "bytea_output": "hex", "extra_float_digits": "1"}
# What the functions accept as a query: trusted SQL text, or SQL composed with psycopg.sql.
Statement = str | sql.SQL | sql.Composed
PIN_SETTING = "SELECT set_config(%(name)s, %(value)s, true)"
# The first 64 bits of each row's md5 as a signed integer, summed exactly.
AGGREGATE = ("count(*), coalesce(sum(('x' || substr(md5(ROW(checksum_row.*)::text), 1, 16))"
             "::bit(64)::bigint), 0)")
ROWS_CHECKSUM = "SELECT " + AGGREGATE + " FROM ({query}) AS checksum_row"
CHANGED_ROWS_CHECKSUM = "WITH checksum_row AS ({statement}) SELECT " + AGGREGATE + " FROM checksum_row"


def pin_output_settings(conn: psycopg.Connection) -> None:
    """Fix the settings a row's text depends on until the end of the current transaction."""
    for name, value in OUTPUT_SETTINGS.items():
        conn.execute(PIN_SETTING, {"name": name, "value": value})


def rows_checksum(conn: psycopg.Connection, query: Statement,
                  params: Mapping[str, object] | None = None) -> tuple[int, str]:
    """``(row count, order-independent hash as a decimal string)`` of what ``query`` returns.

    ``query`` is a SELECT with named ``%(name)s`` parameters (``params``); identifiers in it
    should come from ``psycopg.sql``. Runs inside a transaction (a savepoint if one is open)
    so the pinned settings hold for it and for whatever the caller's transaction does next.
    """
    return _checksum(conn, sql.SQL(ROWS_CHECKSUM).format(query=_composable(query)), params)


def changed_rows_checksum(conn: psycopg.Connection, statement: Statement,
                          params: Mapping[str, object] | None = None) -> tuple[int, str]:
    """The same checksum over the rows an ``INSERT``/``UPDATE``/``DELETE ... RETURNING`` changed:
    what a DELETE removed is proved equal to what was exported, in the statement that removes it."""
    return _checksum(conn, sql.SQL(CHANGED_ROWS_CHECKSUM).format(statement=_composable(statement)), params)


def _checksum(conn: psycopg.Connection, statement: sql.Composed,
              params: Mapping[str, object] | None) -> tuple[int, str]:
    with conn.transaction():
        pin_output_settings(conn)
        row = conn.execute(statement, params or {}).fetchone()
    assert row is not None  # an aggregate always returns one row
    return int(row[0]), str(row[1])


def _composable(query: Statement) -> sql.SQL | sql.Composed:
    return sql.SQL(query) if isinstance(query, str) else query


# Every table of Conveyor's schemas: ordinary tables, and partitioned tables as their parent
# only (a partition's rows are in its parent's checksum, so moving a row between partitions,
# or a new partition, changes nothing).
CONVEYOR_SCHEMAS = ("orders", "inventory", "messaging", "privacy", "audit", "archive", "maintenance", "public")
ALL_TABLES = """
SELECT format('%%I.%%I', n.nspname, c.relname)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND n.nspname = ANY(%(schemas)s)
ORDER BY n.nspname, c.relname
"""
# A name as the user typed it (qualified or found on the search path) -> the table and its columns.
# A view or materialized view named explicitly is checksummed too (inventory.stock_levels: the
# levels, whatever the ledger behind them looks like).
RESOLVE_TABLE = """
SELECT n.nspname, c.relname, array_agg(a.attname::text ORDER BY a.attnum)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE c.oid = to_regclass(%(name)s) AND c.relkind IN ('r', 'p', 'v', 'm')
GROUP BY n.nspname, c.relname
"""


class UnknownTable(LookupError):
    """A table named for a checksum does not exist (or is not a table)."""


def table_checksums(conn: psycopg.Connection, tables: Sequence[str] | None = None) -> dict[str, tuple[int, str]]:
    """``{schema.table: (row count, hash)}`` for ``tables`` (default: every Conveyor table).

    All of them are read in one REPEATABLE READ snapshot (a transaction of their own), so the
    set is consistent with itself even while workers write. A name that is not a table raises
    ``UnknownTable`` before anything is read. Columns are taken in their table order: two
    copies of the database (a restore, a clone) hash alike.
    """
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise RuntimeError("table_checksums needs a connection outside a transaction (it opens its own snapshot)")
    names = list(tables) if tables else _all_tables(conn)
    resolved = [_resolve(conn, name) for name in names]
    result: dict[str, tuple[int, str]] = {}
    with snapshot(conn):
        for schema, table, columns in resolved:
            query = sql.SQL("SELECT {columns} FROM {table}").format(
                columns=sql.SQL(", ").join(sql.Identifier(c) for c in columns),
                table=sql.Identifier(schema, table))
            result[f"{schema}.{table}"] = rows_checksum(conn, query)
    return result


def _all_tables(conn: psycopg.Connection) -> list[str]:
    return [row[0] for row in conn.execute(ALL_TABLES, {"schemas": list(CONVEYOR_SCHEMAS)}).fetchall()]


def _resolve(conn: psycopg.Connection, name: str) -> tuple[str, str, list[str]]:
    try:
        with conn.transaction():
            row = conn.execute(RESOLVE_TABLE, {"name": name}).fetchone()
    except (psycopg.errors.InvalidName, psycopg.errors.SyntaxError):
        row = None  # to_regclass refuses names that are not names at all ("a.b.c.d", "")
    if row is None:
        raise UnknownTable(f"no table or view {name!r} in the database "
                           "(conveyor db checksum without names lists every table)")
    return row[0], row[1], list(row[2])
