"""Applying migration files without queueing the workers behind them.

Every file waits at most ``LockPolicy.timeout_ms`` for each lock it needs (``lock_timeout``):
a long transaction on a table makes the migration give up and try again later (exponential
backoff with jitter, tenacity), instead of making every worker's statement queue behind its
pending ACCESS EXCLUSIVE request. A file runs in one transaction (all or nothing), unless it
says ``-- conveyor:no-transaction``: then each statement runs on its own, is recorded in
``schema_history_steps`` when done, and a later run resumes after the last recorded one.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import ContextManager, Protocol

import psycopg
import structlog
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from conveyor.db.errors import MigrationError
from conveyor.db.migrator import history
from conveyor.db.migrator.files import Migration, statement_checksum

log = structlog.get_logger("conveyor.migrate")

SET_LOCK_TIMEOUT = "SELECT set_config('lock_timeout', %(value)s, %(local)s)"
# A CREATE INDEX CONCURRENTLY that failed (or was killed) leaves an INVALID index behind, which
# its own `IF NOT EXISTS` would then take as done: such a leftover is dropped before a retry.
CONCURRENT_INDEX = re.compile(r"CREATE\s+(?:UNIQUE\s+)?INDEX\s+CONCURRENTLY\s+(?:IF\s+NOT\s+EXISTS\s+)?"
                              r"(?P<name>[\w\"]+)\s+ON\s+(?:ONLY\s+)?(?P<table>[\w.\"]+)", re.IGNORECASE)
INVALID_INDEX = """
SELECT format('%%I.%%I', n.nspname, c.relname)
FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE NOT i.indisvalid AND c.relname = %(name)s AND n.oid = (SELECT relnamespace FROM pg_class
                                                              WHERE oid = to_regclass(%(table)s))
"""


@dataclass(frozen=True)
class LockPolicy:
    """How long a migration waits for a lock, and how often it tries again."""

    timeout_ms: int = 2_000
    attempts: int = 8
    first_wait_s: float = 0.5
    max_wait_s: float = 15.0


@dataclass
class FileReport:
    """What applying one file did."""

    filename: str
    phase: str
    transactional: bool
    execution_ms: int = 0
    lock_retries: int = 0
    steps: int = 0
    resumed_at_step: int | None = None  # a non-transactional file picked up where a run stopped
    locks: list[dict[str, object]] = field(default_factory=list)  # filled by a dry run's observer

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


class Observer(Protocol):
    """Watches a file being applied (the dry run records the locks it takes)."""

    def begin(self, conn: psycopg.Connection, report: FileReport) -> None:
        """Called before anything of the file runs."""

    def in_transaction(self, conn: psycopg.Connection, report: FileReport) -> None:
        """Called inside a transactional file's transaction, after its SQL, before the commit."""

    def statement(self, conn: psycopg.Connection, report: FileReport, statement: str) -> ContextManager[None]:
        """Wraps each statement of a non-transactional file."""


def apply_file(conn: psycopg.Connection, migration: Migration, policy: LockPolicy, *,
               done_steps: dict[int, str], observer: Observer | None = None) -> FileReport:
    """Apply ``migration`` on ``conn`` (autocommit; the caller holds the migration lock)."""
    report = FileReport(migration.filename, migration.phase, migration.transactional)
    started = time.monotonic()
    if observer is not None:
        observer.begin(conn, report)
    if migration.transactional:
        _apply_in_one_transaction(conn, migration, policy, report, observer)
    else:
        _apply_statement_by_statement(conn, migration, policy, report, observer, done_steps)
    report.execution_ms = round((time.monotonic() - started) * 1000)
    return report


def _apply_in_one_transaction(conn: psycopg.Connection, migration: Migration, policy: LockPolicy,
                              report: FileReport, observer: Observer | None) -> None:
    for attempt in _retrying(policy, migration.filename, report, "nothing of it was applied"):
        with attempt, conn.transaction():
            started = time.monotonic()
            history.act_as_owner(conn)
            conn.execute(SET_LOCK_TIMEOUT, {"value": f"{policy.timeout_ms}ms", "local": True})
            conn.execute(migration.sql)
            if observer is not None:
                observer.in_transaction(conn, report)
            history.record(conn, migration, execution_ms=round((time.monotonic() - started) * 1000),
                           lock_retries=report.lock_retries)


def _apply_statement_by_statement(conn: psycopg.Connection, migration: Migration, policy: LockPolicy,
                                  report: FileReport, observer: Observer | None, done: dict[int, str]) -> None:
    statements = migration.statements()
    report.steps = len(statements)
    started_file = time.monotonic()
    for step, statement in enumerate(statements, start=1):
        checksum = statement_checksum(statement)
        if step in done:
            if done[step] != checksum:
                raise MigrationError(f"{migration.filename} statement {step} was edited after it ran "
                                     "(an interrupted non-transactional migration must be resumed as it was)")
            continue
        if done and report.resumed_at_step is None:
            report.resumed_at_step = step
            log.info("migration_resumed", file=migration.filename, step=step, of=len(statements))
        before = report.lock_retries
        started = time.monotonic()
        _run_statement(conn, migration, statement, policy, report, observer)
        with conn.transaction():
            history.record_step(conn, migration.version, step, checksum,
                                execution_ms=round((time.monotonic() - started) * 1000),
                                lock_retries=report.lock_retries - before)
    with conn.transaction():  # this run's time (an interrupted run's steps have theirs in the steps table)
        history.record(conn, migration, execution_ms=round((time.monotonic() - started_file) * 1000),
                       lock_retries=report.lock_retries)


def _run_statement(conn: psycopg.Connection, migration: Migration, statement: str, policy: LockPolicy,
                   report: FileReport, observer: Observer | None) -> None:
    index = CONCURRENT_INDEX.search(statement)
    with _session(conn, policy):
        unapplied = "the statements before this one are recorded and the next run resumes with it"
        for attempt in _retrying(policy, migration.filename, report, unapplied):
            with attempt:
                if index:
                    _drop_invalid_index(conn, index["name"], index["table"])
                with observer.statement(conn, report, statement) if observer else nullcontext():
                    conn.execute(statement)
        if index:
            _drop_invalid_index(conn, index["name"], index["table"], refuse=True)


@contextmanager
def _session(conn: psycopg.Connection, policy: LockPolicy) -> Iterator[None]:
    """The lock timeout and the owner role for statements outside a transaction."""
    owner = history.act_as_owner(conn, local=False)
    conn.execute(SET_LOCK_TIMEOUT, {"value": f"{policy.timeout_ms}ms", "local": False})
    try:
        yield
    finally:
        if not conn.closed:
            conn.execute("RESET lock_timeout")
            if owner:
                conn.execute("RESET ROLE")


def _drop_invalid_index(conn: psycopg.Connection, name: str, table: str, *, refuse: bool = False) -> None:
    row = conn.execute(INVALID_INDEX, {"name": name.strip('"'), "table": table}).fetchone()
    if row is None:
        return
    if refuse:
        raise MigrationError(f"index {row[0]} is INVALID after its CREATE INDEX CONCURRENTLY; run migrate again")
    log.warning("migration_invalid_index_dropped", index=row[0])
    conn.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {row[0]}")


def _retrying(policy: LockPolicy, filename: str, report: FileReport, unapplied: str) -> Retrying:
    def busy(state: RetryCallState) -> None:
        report.lock_retries += 1
        wait = state.next_action.sleep if state.next_action else 0.0
        log.warning("migration_lock_busy", file=filename, attempt=state.attempt_number,
                    of=policy.attempts, lock_timeout_ms=policy.timeout_ms, retry_in_s=round(wait, 2))

    def give_up(state: RetryCallState) -> None:
        raise MigrationError(
            f"{filename} could not take its locks within {policy.timeout_ms} ms in {policy.attempts} attempts "
            f"(a long transaction holds a table it changes: see `conveyor db locks`); {unapplied}; "
            "run migrate again later") from state.outcome.exception() if state.outcome else None

    return Retrying(retry=retry_if_exception_type(psycopg.errors.LockNotAvailable),
                    stop=stop_after_attempt(policy.attempts),
                    wait=wait_exponential(multiplier=policy.first_wait_s, max=policy.max_wait_s)
                    + wait_random(0, policy.first_wait_s),
                    before_sleep=busy, retry_error_callback=give_up, reraise=False)
