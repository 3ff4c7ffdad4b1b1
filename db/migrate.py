"""Versioned SQL migrations: status, the schema check of ``conveyor run``, and applying what is
pending (``conveyor db migrate``). The parts live in ``conveyor.db.migrator``.

Files in ``db/migrations`` follow Flyway's naming (``V001__create_inventory.sql``). A pending
file runs in its own transaction under a ``lock_timeout``, retried with backoff
(``migrator/apply.py``), or statement by statement when it says ``-- conveyor:no-transaction``;
it is recorded in ``schema_history`` with its checksum, who applied it, from where, and how long
it took. A session advisory lock (polled) serialises concurrent deploys, and an applied file whose
checksum changed stops everything before anything runs. Contract steps
(``-- conveyor:contract``) wait for ``contract=True``, except on a fresh database.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import psycopg
import structlog
from psycopg.conninfo import conninfo_to_dict

from conveyor.db.connection import SEARCH_PATH
from conveyor.db.errors import MigrationError, wrap_exceptions
from conveyor.db.migrator import history
from conveyor.db.migrator.apply import FileReport, LockPolicy, Observer, apply_file
from conveyor.db.migrator.dryrun import DryRun, LockRecorder, clone_database, drop_clone
from conveyor.db.migrator.files import FILENAME, Migration, default_directory, discover
from conveyor.db.migrator.history import ACT_AS_OWNER, OWNER_ROLE

__all__ = ["ACT_AS_OWNER", "FILENAME", "FILE_MISSING", "OWNER_ROLE", "LockPolicy", "Migration", "MigrationRun",
           "MigrationState", "SchemaCheck", "apply_pending", "check_schema", "default_directory", "discover", "dry_run",
           "ensure_partitions", "migrate", "status"]

# Constant key for the advisory lock: "conveyor migrations" (older runners take it per transaction).
MIGRATION_LOCK_KEY = 0x636F6E766D6967
TRY_LOCK = "SELECT pg_try_advisory_lock(%(key)s)"
LOCK_POLL_S = 0.2
UNLOCK = "SELECT pg_advisory_unlock(%(key)s)"
CREATE_PARTITIONS = "SELECT maintenance.conveyor_maintain_partitions(%(months_ahead)s, %(days_ahead)s, 30000)"

log = structlog.get_logger("conveyor.migrate")

# The description of a version the database applied but this code has no file for.
FILE_MISSING = "(file missing)"


@dataclass(frozen=True)
class MigrationState:
    migration: Migration
    applied_at: str | None
    applied_checksum: str | None
    steps_done: int = 0
    audit: dict[str, object] = field(default_factory=dict)
    fresh: bool = False  # nothing applied yet: a contract step would be applied too

    @property
    def status(self) -> str:
        """applied, modified (edited after it was applied), pending, partial (a non-transactional
        file that stopped part way: migrate resumes it) or held (a contract step waiting)."""
        if self.applied_at is not None:
            return "applied" if self.applied_checksum == self.migration.checksum else "modified"
        if self.steps_done:
            return "partial"
        return "held" if self.migration.phase == "contract" and not self.fresh else "pending"


@dataclass
class MigrationRun:
    """What ``apply_pending`` did: the files applied (with their reports) and those held back."""

    applied: list[FileReport] = field(default_factory=list)
    held: list[str] = field(default_factory=list)


def status(database_url: str, *, directory: Path | None = None, details: bool = True) -> list[MigrationState]:
    """Every migration's state; with ``details`` who applied it and a partial file's progress
    (what the workers' login may not read: ``check_schema`` goes without)."""
    migrations = discover(directory or default_directory())
    with _reader(database_url) as conn:
        applied = history.applied(conn)
        audit = history.audit(conn) if details else {}
        steps = history.steps_done(conn) if details else {}
    states = [_state(m, applied.get(m.version), len(steps.get(m.version, {})), audit.get(m.version, {}),
                     fresh=not applied) for m in migrations]
    known = {m.version for m in migrations}
    for version, record in sorted(applied.items()):
        if version not in known:
            missing = Migration(version, FILE_MISSING, record.filename, "")
            states.append(MigrationState(missing, record.applied_at, None, 0, audit.get(version, {})))
    return states


@dataclass(frozen=True)
class SchemaCheck:
    """Whether the database's schema is what this code needs (``conveyor run`` checks first)."""

    pending: list[str]    # files this code has that the database has not applied
    modified: list[str]   # applied files whose text changed since
    ahead: list[str]      # applied versions this code does not know: a newer release migrated

    @property
    def ready(self) -> bool:
        """A database ahead of the code is fine (expand/contract deploys run old code on a
        newer schema); one behind it, or with an edited migration, is not. A contract step
        not applied yet is not "behind": the code it ships with works before and after it."""
        return not self.pending and not self.modified


def check_schema(database_url: str, *, directory: Path | None = None) -> SchemaCheck:
    """Compare the database's schema_history with this code's migrations. Driver errors
    leave as Conveyor's error family (``conveyor.db.errors``)."""
    with wrap_exceptions():
        states = status(database_url, directory=directory, details=False)
    by_status: dict[str, list[str]] = {"pending": [], "modified": [], "applied": [], "held": [], "partial": []}
    ahead = []
    for state in states:
        if state.migration.description == FILE_MISSING:
            ahead.append(state.migration.filename)
        else:
            by_status[state.status].append(state.migration.filename)
    return SchemaCheck(by_status["pending"] + by_status["partial"], by_status["modified"], ahead)


def migrate(database_url: str, *, directory: Path | None = None, contract: bool = False,
            policy: LockPolicy | None = None) -> list[str]:
    """Apply pending migrations; returns the file names applied (empty when up to date)."""
    return [r.filename for r in apply_pending(database_url, directory=directory, contract=contract,
                                              policy=policy).applied]


def apply_pending(database_url: str, *, directory: Path | None = None, contract: bool = False,
                  policy: LockPolicy | None = None, observer: Observer | None = None) -> MigrationRun:
    """Apply every pending file in version order (contract steps only with ``contract``, or on a
    fresh database: nothing can run an older release against it)."""
    migrations = discover(directory or default_directory())
    run = MigrationRun()
    with _connect(database_url) as conn:
        _take_migration_lock(conn)
        with conn.transaction():
            history.ensure_tables(conn)
        applied = history.applied(conn)
        refuse_edited(migrations, applied)
        steps = history.steps_done(conn)
        contract = contract or not applied  # a fresh database has no workers of an older release
        for migration in migrations:
            if migration.version in applied:
                continue
            if migration.phase == "contract" and not contract:
                run.held.append(migration.filename)
                continue
            run.applied.append(apply_file(conn, migration, policy or LockPolicy(),
                                          done_steps=steps.get(migration.version, {}), observer=observer))
        conn.execute(UNLOCK, {"key": MIGRATION_LOCK_KEY})
    return run


def dry_run(database_url: str, *, directory: Path | None = None, contract: bool = False,
            policy: LockPolicy | None = None, copy: Literal["template", "dump"] = "template") -> DryRun:
    """What ``apply_pending`` would do, done on a copy of the database (``migrator/dryrun.py``)."""
    migrations = discover(directory or default_directory())
    with _connect(database_url) as conn:
        applied = history.applied(conn)
    refuse_edited(migrations, applied)
    result = DryRun(copy)
    for migration in migrations:
        if migration.version not in applied:
            held = migration.phase == "contract" and not contract
            (result.held if held else result.pending).append(migration.filename)
    if not result.pending:
        return result
    started = time.monotonic()
    clone_url = clone_database(database_url, copy)
    try:
        run = apply_pending(clone_url, directory=directory, contract=contract, policy=policy,
                            observer=LockRecorder(clone_url))
    finally:
        drop_clone(database_url, str(conninfo_to_dict(clone_url)["dbname"]))
    result.files = run.applied
    result.total_ms = round((time.monotonic() - started) * 1000)
    return result


def _take_migration_lock(conn: psycopg.Connection) -> None:
    """The deploy lock, polled rather than waited for: a session blocked in pg_advisory_lock
    has a snapshot open, and the CREATE INDEX CONCURRENTLY of the deploy holding the lock
    waits for every such snapshot to end: a deadlock between two deploys."""
    waited = False
    while not history.scalar(conn, TRY_LOCK, {"key": MIGRATION_LOCK_KEY}):
        if not waited:
            log.info("migration_waits_for_another_deploy")
            waited = True
        time.sleep(LOCK_POLL_S)


def ensure_partitions(database_url: str, *, months_ahead: int = 3, days_ahead: int = 7) -> list[str]:
    """Create the partitions of every partition set (V013): monthly ones for this month and
    the next ``months_ahead``, weekly ones (the inbox) until ``days_ahead`` days ahead; returns the
    ones created. Rows the default partitions took for those ranges move in first."""
    with _connect(database_url) as conn, conn.transaction():
        history.act_as_owner(conn)
        ahead = {"months_ahead": months_ahead, "days_ahead": days_ahead}
        rows = conn.execute(CREATE_PARTITIONS, ahead).fetchall()
    return [r[0] for r in rows]


def refuse_edited(migrations: list[Migration], applied: dict[int, history.Applied]) -> None:
    for migration in migrations:
        record = applied.get(migration.version)
        if record and record.checksum != migration.checksum:
            raise MigrationError(
                f"{migration.filename} was edited after it was applied "
                f"(checksum {record.checksum[:12]} in the database, {migration.checksum[:12]} on disk); "
                "add a new migration instead of changing an applied one"
            )


DIRECT_ONLY = ("migrations need a direct connection to PostgreSQL, not a transaction-pooling PgBouncer "
               "(the deploy lock and the owner role last a session): point CONVEYOR_DATABASE_URL at the "
               "server for the migrate job")


def _reader(database_url: str) -> psycopg.Connection:
    """A connection that only reads schema_history (names qualified, no session state): the
    schema check of ``conveyor run`` and ``db status`` work through a pooler as well."""
    return psycopg.connect(database_url, autocommit=True, prepare_threshold=None)


def _connect(database_url: str) -> psycopg.Connection:
    """The runner's connection: autocommit, and Conveyor's search path (V013's schemas), straight
    to the server (a pooler refuses the startup options, or drops them: both are refused here)."""
    try:
        conn = psycopg.connect(database_url, autocommit=True, options=f"-c search_path={SEARCH_PATH}")
    except psycopg.OperationalError as error:
        if "unsupported startup parameter" in str(error):
            raise MigrationError(DIRECT_ONLY) from error
        raise
    if history.scalar(conn, "SELECT current_setting('search_path')") != SEARCH_PATH:  # options dropped
        conn.close()
        raise MigrationError(DIRECT_ONLY)
    return conn


def _state(migration: Migration, record: history.Applied | None, steps_done: int,
           audit: dict[str, object], *, fresh: bool) -> MigrationState:
    if record is None:
        return MigrationState(migration, None, None, steps_done, audit, fresh)
    return MigrationState(migration, record.applied_at, record.checksum, steps_done, audit)
