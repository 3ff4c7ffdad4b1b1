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

Connection = psycopg.Connection  # for type hints outside db/

# Where Conveyor's objects live (V013: one schema per component, docs/database.md). Every
# connection Conveyor opens sets it, so the SQL names objects without their schema; the
# database sets it too, for psql and hand-written SQL. Before V013 only `public` exists.
SEARCH_PATH = "orders,inventory,messaging,privacy,audit,archive,maintenance,public"


def connection_kwargs(*, lock_timeout_ms: int = 2_000, statement_timeout_ms: int = 30_000,
                      application_name: str = "conveyor") -> dict:
    # Autocommit: every transaction is an explicit `with conn.transaction()` block.
    options = f"-c lock_timeout={lock_timeout_ms} -c statement_timeout={statement_timeout_ms}"
    options += f" -c search_path={SEARCH_PATH}"
    # The rows Conveyor touches per message (stock levels, recent orders) are in memory: at
    # the default random_page_cost of 4 the planner hashes all of stock_levels rather than
    # probe its primary key 60 times for a batch (EXPLAIN ANALYZE on 5,000 SKUs: 6.6 ms
    # against 1.8 ms for the batch's UPDATE). 1.1 is the usual value for SSDs and cached data.
    options += " -c random_page_cost=1.1"
    # TCP keepalives: a black-holed network surfaces as a broken connection in ~25 s
    # instead of a statement waiting forever (statement_timeout needs the server to answer).
    return {"autocommit": True, "options": options, "application_name": application_name,
            "connect_timeout": 5, "keepalives": 1, "keepalives_idle": 10,
            "keepalives_interval": 5, "keepalives_count": 3}


def connect(url: str, **kwargs: Any) -> psycopg.Connection:
    """An autocommit connection; a failure to connect is translated (``DatabaseUnavailable``
    when the server is out of reach)."""
    with wrap_exceptions():
        return psycopg.connect(url, **connection_kwargs(**kwargs))


def make_pool(url: str, *, size: int = 2, name: str = "conveyor", **kwargs: Any) -> ConnectionPool:
    """A pool whose connections are checked before use, so a server restart is survived."""
    return ConnectionPool(
        url, min_size=1, max_size=size, kwargs=connection_kwargs(application_name=name, **kwargs),
        check=ConnectionPool.check_connection, open=True, name=name, timeout=10,
    )


@contextmanager
def transaction(conn: psycopg.Connection) -> Iterator[psycopg.Connection]:
    """``conn.transaction()`` (a savepoint when one is open already) with driver errors,
    the commit's and rollback's included, translated; says whether the connection broke."""
    with wrap_exceptions(conn), conn.transaction():
        yield conn


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
