"""Database connections: autocommit connections with timeouts, and a health-checked pool.

``connect``, ``transaction(conn)`` and ``DedicatedConnection.get()`` translate driver errors into
Conveyor's family (``conveyor.db.errors``): code that runs work through them catches only
those.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from conveyor.db.errors import wrap_exceptions
from conveyor.db.sessions import ConveyorConnection, configure_pooled, open_connection, pool_kwargs

Connection = psycopg.Connection  # for type hints outside db/

# Where Conveyor's objects live (V013: one schema per component, docs/database.md). Every
# connection Conveyor opens sets it, so the SQL names objects without their schema; the
# database sets it too, for psql and hand-written SQL. Before V013 only `public` exists.
SEARCH_PATH = "orders,inventory,messaging,privacy,audit,archive,maintenance,public"


def session_settings(*, lock_timeout_ms: int = 2_000, statement_timeout_ms: int = 30_000) -> dict[str, str]:
    """What every Conveyor session runs with: as startup ``options`` straight to the server,
    per transaction behind a pooler (``conveyor.db.sessions``)."""
    # The rows Conveyor touches per message (stock levels, recent orders) are in memory: at
    # the default random_page_cost of 4 the planner hashes all of stock_levels rather than
    # probe its primary key 60 times for a batch (EXPLAIN ANALYZE on 5,000 SKUs: 6.6 ms
    # against 1.8 ms for the batch's UPDATE). 1.1 is the usual value for SSDs and cached data.
    return {"lock_timeout": f"{lock_timeout_ms}ms", "statement_timeout": f"{statement_timeout_ms}ms",
            "search_path": SEARCH_PATH, "random_page_cost": "1.1"}


def connection_kwargs(*, lock_timeout_ms: int = 2_000, statement_timeout_ms: int = 30_000,
                      application_name: str = "conveyor") -> dict:
    # Autocommit: every transaction is an explicit `with conn.transaction()` block.
    values = session_settings(lock_timeout_ms=lock_timeout_ms, statement_timeout_ms=statement_timeout_ms)
    options = " ".join(f"-c {name}={value.removesuffix('ms') if name.endswith('timeout') else value}"
                       for name, value in values.items())
    # TCP keepalives: a black-holed network surfaces as a broken connection in ~25 s
    # instead of a statement waiting forever (statement_timeout needs the server to answer).
    return {"autocommit": True, "options": options, "application_name": application_name,
            "connect_timeout": 5, "keepalives": 1, "keepalives_idle": 10,
            "keepalives_interval": 5, "keepalives_count": 3}


def connect(url: str, **kwargs: Any) -> psycopg.Connection:
    """An autocommit connection; a failure to connect is translated (``DatabaseUnavailable``
    when the server is out of reach). Behind PgBouncer it sets its session settings per
    transaction (``conveyor.db.sessions``)."""
    timeouts = {k: v for k, v in kwargs.items() if k in ("lock_timeout_ms", "statement_timeout_ms")}
    with wrap_exceptions():
        return open_connection(url, connection_kwargs(**kwargs), session_settings(**timeouts))


def make_pool(url: str, *, size: int = 2, name: str = "conveyor", **kwargs: Any) -> ConnectionPool:
    """A pool whose connections are checked before use, so a server restart is survived."""
    timeouts = {k: v for k, v in kwargs.items() if k in ("lock_timeout_ms", "statement_timeout_ms")}
    values = session_settings(**timeouts)
    with wrap_exceptions():
        pool_args = pool_kwargs(url, connection_kwargs(application_name=name, **kwargs), values)
    return ConnectionPool(
        url, min_size=1, max_size=size, kwargs=pool_args, connection_class=ConveyorConnection,
        configure=configure_pooled(url, values),
        check=ConnectionPool.check_connection, open=True, name=name, timeout=10,
    )


@contextmanager
def transaction(conn: psycopg.Connection) -> Iterator[psycopg.Connection]:
    """``conn.transaction()`` (a savepoint when one is open already) with driver errors,
    the commit's and rollback's included, translated; says whether the connection broke."""
    with wrap_exceptions(conn), conn.transaction():
        yield conn


def connect_reader(read_url: str | None, database_url: str, **kwargs: Any) -> psycopg.Connection:
    """A connection for read-only work: to ``read_url`` (a replica) when set, which must be a
    standby (``ReadUrlNotReplica`` otherwise: a primary there would take the reads the setting
    exists to move away), else to ``database_url``."""
    from conveyor.db.errors import ReadUrlNotReplica

    if not read_url:
        return connect(database_url, **kwargs)
    conn = connect(read_url, **kwargs)
    with wrap_exceptions(conn):
        row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
    if not (row and row[0]):
        conn.close()
        raise ReadUrlNotReplica("CONVEYOR_DATABASE_READ_URL points at a primary (pg_is_in_recovery() is false): "
                                "set it to a standby, or unset it to read from CONVEYOR_DATABASE_URL")
    conn.read_only = True
    return conn


@contextmanager
def snapshot(conn: psycopg.Connection) -> Iterator[psycopg.Connection]:
    """A REPEATABLE READ, READ ONLY transaction (one consistent snapshot), begun as such by
    psycopg (``BEGIN ISOLATION LEVEL ...``), so nothing runs before it takes its snapshot,
    behind a pooler too; driver errors translated as in ``transaction``."""
    level, read_only = conn.isolation_level, conn.read_only
    conn.isolation_level, conn.read_only = psycopg.IsolationLevel.REPEATABLE_READ, True
    try:
        with wrap_exceptions(conn), conn.transaction():
            yield conn
    finally:
        if not conn.closed:
            conn.isolation_level, conn.read_only = level, read_only


def require_direct(conn: psycopg.Connection, what: str) -> None:
    """Refuse work that needs a session of its own (a session advisory lock) behind a pooler."""
    from conveyor.db.errors import PoolerRefused
    from conveyor.db.sessions import local_settings_of

    if local_settings_of(conn) is not None:
        raise PoolerRefused(f"{what} needs a direct connection to PostgreSQL, not a transaction-pooling "
                            "PgBouncer (it holds a session lock): point CONVEYOR_DATABASE_URL at the server "
                            "for this command")


class DedicatedConnection:
    """One connection for one thread, reopened on the next use after it broke.

    The batch processor uses it instead of the pool: a pool's health check costs a round
    trip on every checkout, and a single thread has nothing to share.
    """

    def __init__(self, url: str, **kwargs: Any) -> None:
        self._url = url
        self._kwargs = kwargs
        self._conn: psycopg.Connection | None = None

    def get(self) -> psycopg.Connection:
        """The connection, (re)opened if needed (``connect``: a failure is translated)."""
        if self._conn is None or self._conn.closed or self._conn.broken:
            self.close()
            self._conn = connect(self._url, **self._kwargs)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
