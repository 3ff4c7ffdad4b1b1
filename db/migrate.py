"""Versioned SQL migrations: discovery, checksums, status and applying what is pending.

Files in ``db/migrations`` follow Flyway's naming (``V001__create_inventory.sql``).
Each pending file runs in its own transaction and is recorded with its checksum in
``schema_history``. A transaction-level advisory lock serialises concurrent deploys,
and an applied file whose checksum changed stops everything.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import psycopg

from conveyor.db.connection import SEARCH_PATH
from conveyor.db.errors import MigrationError, wrap_exceptions

FILENAME = re.compile(r"^V(?P<version>\d+)__(?P<description>[A-Za-z0-9_]+)\.sql$")
# Constant key for pg_advisory_xact_lock: "conveyor migrations".
MIGRATION_LOCK_KEY = 0x636F6E766D6967

# Once V005 has handed the schema to conveyor_owner, migrations (and new partitions) are made
# as that role, so whatever they create belongs to it like everything else; the login running
# them only needs to be a member. Before V005, or for a login that is not, nothing changes.
OWNER_ROLE = "conveyor_owner"
ACT_AS_OWNER = """
SELECT coalesce((SELECT c.relowner = r.oid AND pg_has_role(r.oid, 'MEMBER')
                 FROM pg_class c JOIN pg_roles r ON r.rolname = %(role)s
                 WHERE c.oid = to_regclass('public.schema_history')), false)
"""

# The description of a version the database applied but this code has no file for.
FILE_MISSING = "(file missing)"

LOCK = "SELECT pg_advisory_xact_lock(%(key)s)"
RECORD = """
INSERT INTO public.schema_history (version, description, filename, checksum)
VALUES (%(version)s, %(description)s, %(filename)s, %(checksum)s)
"""
CREATE_PARTITIONS = "SELECT maintenance.conveyor_maintain_partitions(%(months_ahead)s, %(days_ahead)s, 30000)"
HISTORY_EXISTS = "SELECT to_regclass('public.schema_history') IS NOT NULL"
APPLIED = "SELECT version, filename, checksum, applied_at::text FROM public.schema_history"

HISTORY_DDL = """
CREATE TABLE IF NOT EXISTS public.schema_history (
    version      integer PRIMARY KEY,
    description  text NOT NULL,
    filename     text NOT NULL,
    checksum     text NOT NULL,
    applied_at   timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    filename: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


@dataclass(frozen=True)
class MigrationState:
    migration: Migration
    applied_at: str | None
    applied_checksum: str | None

    @property
    def status(self) -> str:
        if self.applied_at is None:
            return "pending"
        return "applied" if self.applied_checksum == self.migration.checksum else "modified"


def default_directory() -> Path:
    return Path(str(resources.files("conveyor.db") / "migrations"))


def discover(directory: Path | None = None) -> list[Migration]:
    """Every migration file in version order; a malformed name or a duplicate version is an error."""
    directory = directory or default_directory()
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = FILENAME.match(path.name)
        if not match:
            raise MigrationError(f"migration file {path.name!r} does not match V<version>__<description>.sql")
        version = int(match["version"])
        if version in found:
            raise MigrationError(f"two migration files share version {version}: {found[version].filename}, {path.name}")
        found[version] = Migration(version, match["description"].replace("_", " "), path.name, path.read_text())
    return [found[v] for v in sorted(found)]


def status(database_url: str, *, directory: Path | None = None) -> list[MigrationState]:
    migrations = discover(directory)
    with _connect(database_url) as conn:
        applied = _applied(conn)
    states = [_state(m, applied.get(m.version)) for m in migrations]
    known = {m.version for m in migrations}
    for version, (filename, _checksum, applied_at) in sorted(applied.items()):
        if version not in known:
            missing = Migration(version, FILE_MISSING, filename, "")
            states.append(MigrationState(missing, applied_at, None))
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
        newer schema); one behind it, or with an edited migration, is not."""
        return not self.pending and not self.modified


def check_schema(database_url: str, *, directory: Path | None = None) -> SchemaCheck:
    """Compare the database's schema_history with this code's migrations. Driver errors
    leave as Conveyor's error family (``conveyor.db.errors``)."""
    with wrap_exceptions():
        states = status(database_url, directory=directory)
    by_status: dict[str, list[str]] = {"pending": [], "modified": [], "applied": []}
    ahead = []
    for state in states:
        if state.migration.description == FILE_MISSING:
            ahead.append(state.migration.filename)
        else:
            by_status[state.status].append(state.migration.filename)
    return SchemaCheck(by_status["pending"], by_status["modified"], ahead)


def migrate(database_url: str, *, directory: Path | None = None) -> list[str]:
    """Apply pending migrations; returns the file names applied (empty when up to date)."""
    migrations = discover(directory)
    applied_now: list[str] = []
    with _connect(database_url) as conn:
        with conn.transaction():
            conn.execute(LOCK, {"key": MIGRATION_LOCK_KEY})
            conn.execute(HISTORY_DDL)
        for migration in migrations:
            with conn.transaction():
                conn.execute(LOCK, {"key": MIGRATION_LOCK_KEY})
                applied = _applied(conn)
                _refuse_edited(migrations, applied)
                if migration.version in applied:
                    continue
                _act_as_owner(conn)
                conn.execute(migration.sql)
                conn.execute(RECORD, {"version": migration.version, "description": migration.description,
                                      "filename": migration.filename, "checksum": migration.checksum})
                applied_now.append(migration.filename)
    return applied_now


def ensure_partitions(database_url: str, *, months_ahead: int = 3, days_ahead: int = 7) -> list[str]:
    """Create the partitions of every partition set (V013): monthly ones for this month and
    the next ``months_ahead``, weekly ones (the inbox) until ``days_ahead`` days ahead; returns the
    ones created. Rows the default partitions took for those ranges move in first."""
    with _connect(database_url) as conn, conn.transaction():
        _act_as_owner(conn)
        ahead = {"months_ahead": months_ahead, "days_ahead": days_ahead}
        rows = conn.execute(CREATE_PARTITIONS, ahead).fetchall()
    return [r[0] for r in rows]


def _connect(database_url: str) -> psycopg.Connection:
    """The runner's connection: autocommit, and Conveyor's search path (V013's schemas)."""
    return psycopg.connect(database_url, autocommit=True, options=f"-c search_path={SEARCH_PATH}")


def _act_as_owner(conn: psycopg.Connection) -> None:
    """SET LOCAL ROLE conveyor_owner for the current transaction, once the schema is its."""
    if _scalar(conn, ACT_AS_OWNER, {"role": OWNER_ROLE}):
        conn.execute(f"SET LOCAL ROLE {OWNER_ROLE}")


def _scalar(conn: psycopg.Connection, query: str, params: dict[str, object] | None = None) -> object:
    row = conn.execute(query, params).fetchone()
    if row is None:
        raise MigrationError(f"no row from {query.split()[0]} query")
    return row[0]


def _applied(conn: psycopg.Connection) -> dict[int, tuple[str, str, str]]:
    if not _scalar(conn, HISTORY_EXISTS):
        return {}
    rows = conn.execute(APPLIED).fetchall()
    return {v: (f, c, a) for v, f, c, a in rows}


def _refuse_edited(migrations: list[Migration], applied: dict[int, tuple[str, str, str]]) -> None:
    for migration in migrations:
        record = applied.get(migration.version)
        if record and record[1] != migration.checksum:
            raise MigrationError(
                f"{migration.filename} was edited after it was applied "
                f"(checksum {record[1][:12]} in the database, {migration.checksum[:12]} on disk); "
                "add a new migration instead of changing an applied one"
            )


def _state(migration: Migration, record: tuple[str, str, str] | None) -> MigrationState:
    if record is None:
        return MigrationState(migration, None, None)
    return MigrationState(migration, record[2], record[1])
