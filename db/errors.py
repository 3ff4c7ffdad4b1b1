"""Conveyor's database error family: driver errors translated at the db/ edge.

Callers catch these, never psycopg's classes: ``TransientDatabaseError`` means "try
again" (the connection dropped, a deadlock, a serialization failure, a lock timeout),
anything else derived from ``DatabaseError`` is a bug or a broken invariant.
"""

from __future__ import annotations

import psycopg
from psycopg import errors as pg_errors

# SQLSTATEs worth a retry: serialization failure, deadlock, lock timeout,
# query canceled (statement_timeout), admin shutdown / crash / cannot connect now.
TRANSIENT_SQLSTATES = frozenset({"40001", "40P01", "55P03", "57014", "57P01", "57P02", "57P03"})


class DatabaseError(Exception):
    """Base of every error raised by Conveyor's persistence code; ``code`` is the SQLSTATE."""

    code = "database"


class TransientDatabaseError(DatabaseError):
    """The same work may succeed if tried again."""


class IntegrityViolation(DatabaseError):
    """A constraint refused a change: a bug upstream of the database, never retried."""


class MigrationError(DatabaseError):
    """A migration cannot be applied or an applied one was edited."""


def is_transient(error: BaseException) -> bool:
    if isinstance(error, TransientDatabaseError):
        return True
    if isinstance(error, psycopg.OperationalError) and getattr(error, "sqlstate", None) is None:
        return True  # connection lost or refused
    return getattr(error, "sqlstate", None) in TRANSIENT_SQLSTATES


def is_integrity_violation(error: BaseException) -> bool:
    return isinstance(error, (IntegrityViolation, pg_errors.IntegrityError))


def translate(error: psycopg.Error) -> DatabaseError:
    """Wrap a driver error in the matching Conveyor error (the original is the cause)."""
    if is_transient(error):
        translated: DatabaseError = TransientDatabaseError(_describe(error))
    elif isinstance(error, pg_errors.IntegrityError):
        translated = IntegrityViolation(_describe(error))
    else:
        translated = DatabaseError(_describe(error))
    translated.code = getattr(error, "sqlstate", None) or "connection"
    translated.__cause__ = error
    return translated


def _describe(error: psycopg.Error) -> str:
    state = getattr(error, "sqlstate", None)
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return f"{state}: {text}" if state else text
