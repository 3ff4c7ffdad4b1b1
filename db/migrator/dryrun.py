"""``conveyor db migrate --dry-run``: the pending files applied to a copy of the database, each
timed, with the locks it took and what those locks would have blocked.

The copy is a template clone (``CREATE DATABASE ... TEMPLATE``: a file copy, fast, but
PostgreSQL allows it only while nobody else is connected to the source) or, with
``copy="dump"``, a ``pg_dump | pg_restore`` of a consistent snapshot (works under live
traffic; slower on a big database). The copy is dropped afterwards, whatever happened. The
real database is only read: which files are pending, and whether an applied one was edited
(then nothing is copied and the dry run fails like the migration would).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from conveyor.db.errors import MigrationError
from conveyor.db.migrator.apply import CONCURRENT_INDEX, FileReport

# Locks on the tables (and views) of the database, not the catalogs, with their names: a lock
# on an index or a sequence goes with one on its table.
OWN_LOCKS = """
SELECT l.relation::oid, format('%%I.%%I', n.nspname, c.relname), l.mode
FROM pg_locks l JOIN pg_class c ON c.oid = l.relation JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE l.pid = %(pid)s AND l.locktype = 'relation' AND l.granted
  AND c.relkind IN ('r', 'p', 'v', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
"""
RELATIONS = "SELECT oid::oid FROM pg_class"
KNOWN_TABLE = """
SELECT c.oid::oid, format('%%I.%%I', n.nspname, c.relname)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass(%(table)s)
"""
OTHER_SESSIONS = """
SELECT count(*), string_agg(DISTINCT coalesce(nullif(application_name, ''), usename::text, '?'), ', ')
FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()
"""
# What a lock mode held on a table the workers use stops them from doing, weakest first.
BLOCKS = {"AccessShareLock": "nothing the workers do", "RowShareLock": "nothing the workers do",
          "RowExclusiveLock": "nothing the workers do", "ShareUpdateExclusiveLock": "other DDL and VACUUM only",
          "ShareLock": "writes", "ShareRowExclusiveLock": "writes", "ExclusiveLock": "writes",
          "AccessExclusiveLock": "reads and writes"}
MODE_ORDER = list(BLOCKS)


@dataclass
class DryRun:
    """The files a real migrate would apply, and what applying them to the copy showed."""

    copy: str
    pending: list[str] = field(default_factory=list)
    held: list[str] = field(default_factory=list)
    files: list[FileReport] = field(default_factory=list)
    total_ms: int = 0


class LockRecorder:
    """The dry run's observer: the locks a file took on relations that existed before it.

    In a transaction, every lock is held until the commit, so one look before it sees them all.
    Outside one, a second connection samples the statement's locks as often as it can, which
    can miss a statement of a few milliseconds (it held its locks for no longer than that);
    a CREATE INDEX CONCURRENTLY is known to hold SHARE UPDATE EXCLUSIVE on its table."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._existing: set[int] = set()

    def begin(self, conn: psycopg.Connection, report: FileReport) -> None:
        self._existing = {row[0] for row in conn.execute(RELATIONS).fetchall()}

    def in_transaction(self, conn: psycopg.Connection, report: FileReport) -> None:
        rows = conn.execute(OWN_LOCKS, {"pid": conn.info.backend_pid}).fetchall()
        self._add(report, rows)

    @contextmanager
    def statement(self, conn: psycopg.Connection, report: FileReport, statement: str) -> Iterator[None]:
        seen: set[tuple[int, str, str]] = set()
        stop, ready = threading.Event(), threading.Event()
        pid = conn.info.backend_pid

        def sample() -> None:
            with psycopg.connect(self._url, autocommit=True) as watcher:
                ready.set()
                while not stop.is_set():  # as often as it can: a statement may take milliseconds
                    seen.update(watcher.execute(OWN_LOCKS, {"pid": pid}).fetchall())

        thread = threading.Thread(target=sample, name="dry-run-locks", daemon=True)
        thread.start()
        ready.wait(10)
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=5)
            self._add(report, list(seen) + self._known(conn, statement))

    def _known(self, conn: psycopg.Connection, statement: str) -> list[tuple[int, str, str]]:
        """What a statement takes whatever its duration: sampling can miss a build of a few ms."""
        index = CONCURRENT_INDEX.search(statement)
        if not index:
            return []
        row = conn.execute(KNOWN_TABLE, {"table": index["table"]}).fetchone()
        return [(row[0], row[1], "ShareUpdateExclusiveLock")] if row else []

    def _add(self, report: FileReport, rows: list[tuple[int, str, str]]) -> None:
        strongest: dict[str, str] = {}
        for oid, name, mode in rows:
            if oid in self._existing and mode in BLOCKS:
                known = strongest.get(name)
                if known is None or MODE_ORDER.index(mode) > MODE_ORDER.index(known):
                    strongest[name] = mode
        for name, mode in sorted(strongest.items()):
            entry: dict[str, object] = {"relation": name, "mode": mode, "blocks": BLOCKS[mode]}
            if entry not in report.locks:
                report.locks.append(entry)


def clone_database(url: str, copy: Literal["template", "dump"]) -> str:
    """A copy of the database at ``url``; returns the copy's URL (drop it with ``drop_clone``)."""
    source = str(conninfo_to_dict(url).get("dbname") or "postgres")
    clone = f"conveyor_dryrun_{os.getpid()}_{secrets.token_hex(3)}"
    clone_url = make_conninfo(url, dbname=clone)
    with psycopg.connect(url, autocommit=True) as conn:
        if copy == "template":
            _refuse_busy(conn)
            statement = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(clone), sql.Identifier(source))
        else:
            statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(clone))
        try:
            conn.execute(statement)
        except psycopg.errors.ObjectInUse as error:
            raise MigrationError(_busy_message(str(error).splitlines()[0])) from error
        except psycopg.errors.InsufficientPrivilege as error:
            raise MigrationError("a dry run creates a scratch database: the login needs CREATEDB") from error
    if copy == "dump":
        try:
            _dump_into(url, clone_url)
        except BaseException:
            drop_clone(url, clone)
            raise
    return clone_url


def drop_clone(url: str, clone: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(clone)))


def _refuse_busy(conn: psycopg.Connection) -> None:
    row = conn.execute(OTHER_SESSIONS).fetchone()
    if row and row[0]:
        raise MigrationError(_busy_message(f"{row[0]} other session(s) are connected ({row[1]})"))


def _busy_message(why: str) -> str:
    return (f"cannot clone the database as a template: {why}; PostgreSQL copies a template only while "
            "nobody else is connected. Use --copy dump (a pg_dump snapshot: no need to stop the workers), "
            "or run the dry run while the workers are stopped")


def _dump_into(source_url: str, clone_url: str) -> None:
    pg_dump, pg_restore = _binary("pg_dump"), _binary("pg_restore")
    dump = subprocess.Popen([pg_dump, "--format=custom", "--dbname", source_url], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    restore = subprocess.run([pg_restore, "--exit-on-error", "--dbname", clone_url], stdin=dump.stdout,
                             capture_output=True, text=True, check=False)
    if dump.stdout:
        dump.stdout.close()
    dump_error = dump.stderr.read().decode() if dump.stderr else ""
    if dump.wait() != 0 or restore.returncode != 0:
        detail = (dump_error or restore.stderr).strip()[-400:]
        raise MigrationError(f"copying the database for the dry run failed: {detail}")


def _binary(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(candidate)
    raise MigrationError(f"--copy dump needs {name} (PostgreSQL's client programs) on PATH")
