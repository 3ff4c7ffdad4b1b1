"""What the database remembers of its migrations: ``public.schema_history`` (one row per
applied file: checksum, when, who — the login, the host, the Conveyor version —, how long it
took and how many times it waited out a lock) and ``public.schema_history_steps`` (the
completed statements of a non-transactional file, so an interrupted run resumes).

Both live in ``public``, outside Conveyor's component schemas, because the runner needs them
before any migration ran. Columns added after the first release are added here, once, when
missing (older runners keep working: they write only the original columns).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

import psycopg

from conveyor.db.errors import MigrationError
from conveyor.db.migrator.files import Migration

OWNER_ROLE = "conveyor_owner"
# Once V005 has handed the schema to conveyor_owner, migrations (and new partitions) are made
# as that role, so whatever they create belongs to it like everything else; the login running
# them only needs to be a member. Before V005, or for a login that is not, nothing changes.
ACT_AS_OWNER = """
SELECT coalesce((SELECT c.relowner = r.oid AND pg_has_role(r.oid, 'MEMBER')
                 FROM pg_class c JOIN pg_roles r ON r.rolname = %(role)s
                 WHERE c.oid = to_regclass('public.schema_history')), false)
"""
HISTORY_EXISTS = "SELECT to_regclass('public.schema_history') IS NOT NULL"
HISTORY_DDL = """
CREATE TABLE IF NOT EXISTS public.schema_history (
    version      integer PRIMARY KEY,
    description  text NOT NULL,
    filename     text NOT NULL,
    checksum     text NOT NULL,
    applied_at   timestamptz NOT NULL DEFAULT now()
)
"""
# Added by the runner of issue 16 (who applied what); NULL on rows older runners wrote.
AUDIT_COLUMNS = {"applied_by": "text", "client_host": "text", "conveyor_version": "text",
                 "execution_ms": "integer", "lock_retries": "integer", "phase": "text",
                 "transactional": "boolean"}
MISSING_COLUMNS = """
SELECT name FROM unnest(%(names)s::text[]) AS name
WHERE NOT EXISTS (SELECT FROM pg_attribute
                  WHERE attrelid = 'public.schema_history'::regclass AND attname = name AND NOT attisdropped)
"""
STEPS_DDL = """
CREATE TABLE IF NOT EXISTS public.schema_history_steps (
    version      integer NOT NULL,
    step         integer NOT NULL,
    checksum     text NOT NULL,
    execution_ms integer NOT NULL,
    lock_retries integer NOT NULL DEFAULT 0,
    applied_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (version, step)
)
"""
STEPS_EXIST = "SELECT to_regclass('public.schema_history_steps') IS NOT NULL"
RECORD = """
INSERT INTO public.schema_history (version, description, filename, checksum, applied_by, client_host,
                                   conveyor_version, execution_ms, lock_retries, phase, transactional)
VALUES (%(version)s, %(description)s, %(filename)s, %(checksum)s, session_user, %(host)s,
        %(conveyor_version)s, %(execution_ms)s, %(lock_retries)s, %(phase)s, %(transactional)s)
"""
RECORD_STEP = """
INSERT INTO public.schema_history_steps (version, step, checksum, execution_ms, lock_retries)
VALUES (%(version)s, %(step)s, %(checksum)s, %(execution_ms)s, %(lock_retries)s)
"""
APPLIED = "SELECT version, filename, checksum, applied_at::text FROM public.schema_history"
AUDIT = f"SELECT version, {', '.join(AUDIT_COLUMNS)} FROM public.schema_history"
STEPS = "SELECT version, step, checksum FROM public.schema_history_steps ORDER BY version, step"


@dataclass(frozen=True)
class Applied:
    """A row of schema_history as the runner reads it."""

    filename: str
    checksum: str
    applied_at: str


def scalar(conn: psycopg.Connection, query: str, params: dict[str, object] | None = None) -> object:
    row = conn.execute(query, params).fetchone()
    if row is None:
        raise MigrationError(f"no row from {query.split()[0]} query")
    return row[0]


def act_as_owner(conn: psycopg.Connection, *, local: bool = True) -> bool:
    """SET [LOCAL] ROLE conveyor_owner once the schema is its; says whether it did."""
    if not scalar(conn, ACT_AS_OWNER, {"role": OWNER_ROLE}):
        return False
    conn.execute(f"SET {'LOCAL ' if local else ''}ROLE {OWNER_ROLE}")
    return True


def ensure_tables(conn: psycopg.Connection) -> None:
    """Create schema_history and the steps table, and add the audit columns that are missing
    (inside the caller's transaction; ALTER only when a column is missing, so a deploy that
    has nothing to add takes no lock that would queue the workers' reads of the table)."""
    conn.execute(HISTORY_DDL)
    act_as_owner(conn)
    rows = conn.execute(MISSING_COLUMNS, {"names": list(AUDIT_COLUMNS)}).fetchall()
    for (name,) in rows:
        conn.execute(f"ALTER TABLE public.schema_history ADD COLUMN {name} {AUDIT_COLUMNS[name]}")
    conn.execute(STEPS_DDL)


def applied(conn: psycopg.Connection) -> dict[int, Applied]:
    if not scalar(conn, HISTORY_EXISTS):
        return {}
    return {v: Applied(f, c, a) for v, f, c, a in conn.execute(APPLIED).fetchall()}


def audit(conn: psycopg.Connection) -> dict[int, dict[str, object]]:
    """Who applied each version, from where, how long it took: {} for a runner-less database;
    columns an older runner's table lacks read as None."""
    if not scalar(conn, HISTORY_EXISTS):
        return {}
    if conn.execute(MISSING_COLUMNS, {"names": list(AUDIT_COLUMNS)}).fetchall():
        return {}
    return {row[0]: dict(zip(AUDIT_COLUMNS, row[1:], strict=True)) for row in conn.execute(AUDIT).fetchall()}


def steps_done(conn: psycopg.Connection) -> dict[int, dict[int, str]]:
    """{version: {step: checksum}} of the statements of non-transactional files already run."""
    if not scalar(conn, STEPS_EXIST):
        return {}
    done: dict[int, dict[int, str]] = {}
    for version, step, checksum in conn.execute(STEPS).fetchall():
        done.setdefault(version, {})[step] = checksum
    return done


def record(conn: psycopg.Connection, migration: Migration, *, execution_ms: int, lock_retries: int) -> None:
    from conveyor import __version__

    conn.execute(RECORD, {"version": migration.version, "description": migration.description,
                          "filename": migration.filename, "checksum": migration.checksum,
                          "host": socket.gethostname(), "conveyor_version": __version__,
                          "execution_ms": execution_ms, "lock_retries": lock_retries,
                          "phase": migration.phase, "transactional": migration.transactional})


def record_step(conn: psycopg.Connection, version: int, step: int, checksum: str, *,
                execution_ms: int, lock_retries: int) -> None:
    conn.execute(RECORD_STEP, {"version": version, "step": step, "checksum": checksum,
                               "execution_ms": execution_ms, "lock_retries": lock_retries})
