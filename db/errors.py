"""Conveyor's database error family: driver errors translated at the db/ edge.

Callers catch these, never psycopg's classes: ``TransientDatabaseError`` means "try
again" (the connection dropped, a deadlock, a serialization failure, a lock timeout),
``DatabaseUnavailable`` (a transient error too) means the database as a whole is out of
reach, ``PermanentDatabaseError`` (``IntegrityViolation``) is never retried, and anything
else derived from ``DatabaseError`` is a bug or a broken invariant.

Translation happens in db/: ``wrap_exceptions`` (a context manager) turns any driver
error raised inside it into the matching class; ``conveyor.db.connection`` uses it for
connecting and for transactions (``transaction(conn)``), the repositories that callers
reach outside a transaction use it per statement.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import errors as pg_errors

# SQLSTATEs worth a retry: serialization failure, deadlock, lock timeout,
# query canceled (statement_timeout), admin shutdown / crash / cannot connect now.
TRANSIENT_SQLSTATES = frozenset({"40001", "40P01", "55P03", "57014", "57P01", "57P02", "57P03"})
# The database as a whole is unreachable (not one transaction's contention): the connection
# was lost or refused (no SQLSTATE), the server is shutting down or starting, or it reported
# a connection exception.
OUTAGE_SQLSTATES = frozenset({None, "57P01", "57P02", "57P03", "08000", "08003", "08006", "08001", "08004"})
# Two writers created the same version of a stock level (V011's unique key on the ledger):
# one of them wrote without the stock lock (hand-written SQL) and won; the loser re-reads.
STOCK_VERSION_KEY = "stock_movements_tenant_id_sku_version_key"
# The server ended a session left idle inside a transaction (the relay's fence).
IDLE_IN_TRANSACTION_TIMEOUT = "25P03"
# A write reached a read-only server: a standby, or a primary a failover demoted while the
# connection stayed open. The connection is closed, so the next one finds the primary (a
# multi-host URL with target_session_attrs=read-write); the work is an outage, waited out.
READ_ONLY_SERVER = "25006"


class DatabaseError(Exception):
    """Base of every error raised by Conveyor's persistence code; ``code`` is the SQLSTATE
    (``"connection"`` when there is none).

    ``connection_broken``: the connection the error came from is unusable afterwards.
    ``operational``: the driver classed the error as operational (the connection or the
    server's state failed the work, not the statement: lost connection, timeouts,
    contention, resources), or the server ended an idle-in-transaction session.
    """

    code = "database"
    connection_broken = False
    operational = False


class TransientDatabaseError(DatabaseError):
    """The same work may succeed if tried again."""


class DatabaseUnavailable(TransientDatabaseError):
    """The database as a whole is unreachable: the connection was lost or refused, or the
    server is shutting down or starting up. Waited out, not retried at once."""


class ConnectionFailure(DatabaseError):
    """The server reported a connection exception (SQLSTATE class 08): an outage like
    ``DatabaseUnavailable``, but not a transient error of the work itself."""


class PermanentDatabaseError(DatabaseError):
    """The database refused the work for good: retrying cannot help."""


class IntegrityViolation(PermanentDatabaseError):
    """A constraint refused a change: a bug upstream of the database, never retried."""


class MigrationError(DatabaseError):
    """A migration cannot be applied or an applied one was edited."""


class PoolerRefused(DatabaseError):
    """Work that needs a session of its own was asked of a connection through a pooler."""


class ReadUrlNotReplica(DatabaseError):
    """CONVEYOR_DATABASE_READ_URL points at a primary."""


def is_transient(error: BaseException) -> bool:
    if isinstance(error, TransientDatabaseError):
        return True
    if isinstance(error, DatabaseError):
        return False
    if isinstance(error, psycopg.OperationalError) and getattr(error, "sqlstate", None) is None:
        return True  # connection lost or refused
    return getattr(error, "sqlstate", None) in TRANSIENT_SQLSTATES or _lost_stock_race(error)


def _lost_stock_race(error: BaseException) -> bool:
    diag = getattr(error, "diag", None)
    return (getattr(error, "sqlstate", None) == "23505" and diag is not None
            and diag.constraint_name == STOCK_VERSION_KEY)


def is_outage(error: BaseException) -> bool:
    """The database as a whole is unreachable (not one transaction's contention)."""
    if isinstance(error, (DatabaseUnavailable, ConnectionFailure)):
        return True
    return _driver_outage(error)


def is_integrity_violation(error: BaseException) -> bool:
    return isinstance(error, (IntegrityViolation, pg_errors.IntegrityError)) and not _lost_stock_race(error)


def translate(error: psycopg.Error, *, connection_broken: bool = False) -> DatabaseError:
    """Wrap a driver error in the matching Conveyor error (the original is the cause)."""
    description = _describe(error)
    translated: DatabaseError
    if getattr(error, "sqlstate", None) == READ_ONLY_SERVER:
        translated = DatabaseUnavailable(f"{description} (the server is read-only: a standby, or a primary "
                                         "demoted by a failover; reconnecting to find the primary)")
    elif _driver_outage(error) and is_transient(error):
        translated = DatabaseUnavailable(description)
    elif is_transient(error):
        translated = TransientDatabaseError(description)
    elif _driver_outage(error):
        translated = ConnectionFailure(description)
    elif isinstance(error, pg_errors.IntegrityError):
        translated = IntegrityViolation(description)
    else:
        translated = DatabaseError(description)
    state = getattr(error, "sqlstate", None)
    translated.code = state or "connection"
    translated.connection_broken = connection_broken
    translated.operational = (isinstance(error, psycopg.OperationalError)
                              or state in (IDLE_IN_TRANSACTION_TIMEOUT, READ_ONLY_SERVER))
    translated.__cause__ = error
    return translated


@contextmanager
def wrap_exceptions(conn: psycopg.Connection | None = None) -> Iterator[None]:
    """Translate any driver error raised inside the block; ``conn``, when given, tells
    whether the connection survived it."""
    try:
        yield
    except psycopg.Error as error:
        if conn is not None and getattr(error, "sqlstate", None) == READ_ONLY_SERVER and not conn.closed:
            conn.close()  # the next connection finds the primary
        raise translate(error, connection_broken=conn is not None and (conn.broken or conn.closed)) from error


def _driver_outage(error: BaseException) -> bool:
    return isinstance(error, psycopg.OperationalError) and getattr(error, "sqlstate", None) in OUTAGE_SQLSTATES


def _describe(error: psycopg.Error) -> str:
    state = getattr(error, "sqlstate", None)
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return f"{state}: {text}" if state else text
