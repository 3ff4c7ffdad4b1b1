"""The migration runner without downtime, on a real PostgreSQL: a lock_timeout retried with
backoff (the workers never queue behind a migration for long), non-transactional files applied
statement by statement and resumed, INVALID index leftovers, contract steps held back, the
audit columns of schema_history, and ``--dry-run`` on a copy with the locks it took."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import psycopg
import pytest

from conveyor import devservices
from conveyor.db.errors import MigrationError
from conveyor.db.migrate import LockPolicy, apply_pending, check_schema, default_directory, dry_run, migrate, status
from conveyor.workers import cli

FAST = LockPolicy(timeout_ms=100, attempts=3, first_wait_s=0.05, max_wait_s=0.2)


@pytest.fixture
def empty_database(services):
    with devservices.fresh_database(services, prefix="conveyor_run") as url:
        yield url


@pytest.fixture
def baseline(tmp_path: Path) -> Path:
    """V001 alone, then the test adds files of its own after it."""
    target = tmp_path / "migrations"
    target.mkdir()
    shutil.copy(next(default_directory().glob("V001__*.sql")), target)
    return target


def write(directory: Path, name: str, sql: str) -> None:
    (directory / name).write_text(sql)


def scalar(url: str, query: str) -> object:
    with psycopg.connect(url) as conn:
        row = conn.execute(query).fetchone()
    return row[0] if row else None


def hold_lock(url: str, table: str, release: threading.Event) -> threading.Thread:
    """A long read transaction on ``table`` (what a report or a stuck worker does)."""
    started = threading.Event()

    def run() -> None:
        with psycopg.connect(url) as conn:
            conn.execute(f"SELECT count(*) FROM {table}")
            started.set()
            release.wait(30)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(10)
    return thread


def test_a_migration_behind_a_long_transaction_gives_up_and_the_workers_never_queue(empty_database, baseline):
    migrate(empty_database, directory=baseline)
    write(baseline, "V002__add_column.sql", "-- a column\nALTER TABLE tenants ADD COLUMN note text;\n")
    release = threading.Event()
    blocker = hold_lock(empty_database, "tenants", release)
    worker_reads: list[float] = []
    stop = threading.Event()

    def worker() -> None:  # the workers' statements, with their own lock_timeout
        with psycopg.connect(empty_database, autocommit=True, options="-c lock_timeout=1000") as conn:
            while not stop.is_set():
                started = time.monotonic()
                conn.execute("SELECT count(*) FROM tenants")
                worker_reads.append(time.monotonic() - started)

    reader = threading.Thread(target=worker, daemon=True)
    reader.start()
    try:
        with pytest.raises(MigrationError, match=r"could not take its locks within 100 ms in 3 attempts.*nothing"):
            apply_pending(empty_database, directory=baseline, policy=FAST)
    finally:
        stop.set()
        reader.join(10)
        release.set()
        blocker.join(10)

    assert worker_reads, "the worker's reads ran meanwhile"
    assert scalar(empty_database, "SELECT count(*) FROM schema_history WHERE version = 2") == 0
    assert scalar(empty_database, "SELECT count(*) FROM pg_attribute WHERE attrelid = 'tenants'::regclass "
                                  "AND attname = 'note'") == 0


def test_the_migration_is_retried_with_backoff_until_the_lock_is_free_and_says_so(empty_database, baseline):
    migrate(empty_database, directory=baseline)
    write(baseline, "V002__add_column.sql", "ALTER TABLE tenants ADD COLUMN note text;\n")
    release = threading.Event()
    blocker = hold_lock(empty_database, "tenants", release)
    threading.Timer(0.6, release.set).start()

    run = apply_pending(empty_database, directory=baseline,
                        policy=LockPolicy(timeout_ms=100, attempts=30, first_wait_s=0.05, max_wait_s=0.2))
    blocker.join(10)

    [report] = run.applied
    assert report.filename == "V002__add_column.sql" and report.lock_retries >= 1
    assert scalar(empty_database, "SELECT lock_retries FROM schema_history WHERE version = 2") == report.lock_retries


NON_TRANSACTIONAL = """-- conveyor:no-transaction
-- Step by step: a counter that must not count twice, a statement that fails until a flag is set,
-- an index built concurrently.
INSERT INTO public.step_counter VALUES ('one');
SELECT 1 / (SELECT count(*) FROM public.step_flag)::int;
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS tenants_name_key ON tenants (name);
"""
SETUP = """
CREATE TABLE public.step_counter (step text);
CREATE TABLE public.step_flag (ok boolean);
"""


def interrupt_at_the_second_statement(url: str, baseline: Path) -> None:
    """Apply NON_TRANSACTIONAL until its second statement fails (the flag is not set yet)."""
    write(baseline, "V002__setup.sql", SETUP)
    migrate(url, directory=baseline)
    write(baseline, "V003__step_by_step.sql", NON_TRANSACTIONAL)
    with pytest.raises(psycopg.errors.DivisionByZero):
        migrate(url, directory=baseline)


def test_a_non_transactional_file_resumes_after_the_last_statement_that_completed(empty_database, baseline):
    interrupt_at_the_second_statement(empty_database, baseline)
    partial = status(empty_database, directory=baseline)[-1]
    waiting = check_schema(empty_database, directory=baseline).pending
    with psycopg.connect(empty_database, autocommit=True) as conn:
        conn.execute("INSERT INTO public.step_flag VALUES (true)")
    run = apply_pending(empty_database, directory=baseline)

    assert (partial.status, partial.steps_done) == ("partial", 1)
    assert waiting == ["V003__step_by_step.sql"]  # workers wait for a half-applied file
    [report] = run.applied
    assert (report.steps, report.resumed_at_step) == (3, 2)
    assert scalar(empty_database, "SELECT count(*) FROM public.step_counter") == 1  # step 1 ran once
    assert scalar(empty_database, "SELECT indisvalid FROM pg_index "
                                  "WHERE indexrelid = 'tenants_name_key'::regclass") is True
    assert status(empty_database, directory=baseline)[-1].status == "applied"


def test_an_invalid_index_left_by_a_failed_concurrent_build_is_rebuilt_on_the_next_run(empty_database, baseline):
    migrate(empty_database, directory=baseline)
    with psycopg.connect(empty_database, autocommit=True) as conn:
        conn.execute("INSERT INTO tenants (tenant_id, name) VALUES ('a', 'same'), ('b', 'same')")
    write(baseline, "V002__unique_names.sql", "-- conveyor:no-transaction\n"
          "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS tenants_name_key ON tenants (name);\n")

    with pytest.raises(psycopg.errors.UniqueViolation):
        migrate(empty_database, directory=baseline)
    left_invalid = scalar(empty_database, "SELECT NOT indisvalid FROM pg_index "
                                          "WHERE indexrelid = 'tenants_name_key'::regclass")
    with psycopg.connect(empty_database, autocommit=True) as conn:
        conn.execute("UPDATE tenants SET name = 'other' WHERE tenant_id = 'b'")
    migrate(empty_database, directory=baseline)

    assert left_invalid is True  # what IF NOT EXISTS alone would have taken as done
    assert scalar(empty_database, "SELECT indisvalid FROM pg_index "
                                  "WHERE indexrelid = 'tenants_name_key'::regclass") is True


def test_an_edited_statement_of_an_interrupted_file_is_refused(empty_database, baseline):
    interrupt_at_the_second_statement(empty_database, baseline)

    write(baseline, "V003__step_by_step.sql", NON_TRANSACTIONAL.replace("'one'", "'uno'"))
    with pytest.raises(MigrationError, match="statement 1 was edited"):
        migrate(empty_database, directory=baseline)


def test_a_contract_step_waits_for_contract_and_does_not_hold_the_workers(empty_database, baseline):
    migrate(empty_database, directory=baseline)
    write(baseline, "V002__contract.sql", "-- conveyor:contract\n-- the old column goes\n"
                                          "ALTER TABLE tenants DROP COLUMN name;\n")
    write(baseline, "V003__later.sql", "CREATE TABLE public.later (id int);\n")

    first = apply_pending(empty_database, directory=baseline)
    held = status(empty_database, directory=baseline)
    ready = check_schema(empty_database, directory=baseline).ready
    second = apply_pending(empty_database, directory=baseline, contract=True)

    assert ([r.filename for r in first.applied], first.held) == (["V003__later.sql"], ["V002__contract.sql"])
    assert [s.status for s in held] == ["applied", "held", "applied"] and ready
    assert held[1].migration.purpose == "the old column goes"
    assert [r.filename for r in second.applied] == ["V002__contract.sql"]


def test_an_unknown_directive_is_refused_before_anything_runs(empty_database, baseline):
    write(baseline, "V002__typo.sql", "-- conveyor:no-transactions\nSELECT 1;\n")

    with pytest.raises(MigrationError, match="unknown directive 'conveyor:no-transactions'"):
        migrate(empty_database, directory=baseline)
    assert scalar(empty_database, "SELECT to_regclass('public.schema_history') IS NULL") is True


def test_status_json_says_who_applied_what_when_from_where(empty_database, baseline, monkeypatch, capsys):
    migrate(empty_database, directory=baseline)
    monkeypatch.setenv("CONVEYOR_DATABASE_URL", empty_database)
    monkeypatch.setattr("conveyor.db.migrate.default_directory", lambda: baseline)

    code = cli.main(["db", "status", "--json"])

    [row] = json.loads(capsys.readouterr().out)
    assert code == 0
    assert row["applied_by"] == "postgres" and row["client_host"] and row["conveyor_version"]
    assert row["status"] == "applied" and row["phase"] == "expand" and row["transactional"] is True
    assert isinstance(row["execution_ms"], int) and row["lock_retries"] == 0 and row["purpose"].startswith("Schema v1")


def databases(url: str, prefix: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", [prefix + "%"])]


def test_dry_run_applies_to_a_copy_reports_time_and_locks_and_changes_nothing(empty_database, baseline):
    migrate(empty_database, directory=baseline)
    write(baseline, "V002__rewrite.sql", "ALTER TABLE tenants ADD COLUMN note text;\n"
                                         "CREATE TABLE public.fresh (id int);\nINSERT INTO public.fresh VALUES (1);\n")
    write(baseline, "V003__index.sql", "-- conveyor:no-transaction\n"
                                       "CREATE INDEX CONCURRENTLY IF NOT EXISTS tenants_note_idx ON tenants (note);\n")

    result = dry_run(empty_database, directory=baseline)

    assert result.pending == ["V002__rewrite.sql", "V003__index.sql"]
    rewrite, index = result.files
    assert {"relation": "public.tenants", "mode": "AccessExclusiveLock",
            "blocks": "reads and writes"} in rewrite.locks
    assert not [lock for lock in rewrite.locks if lock["relation"] == "public.fresh"]  # new: blocks nobody
    index_modes = [lock["mode"] for lock in index.locks if lock["relation"] == "public.tenants"]
    assert index_modes == ["ShareUpdateExclusiveLock"]
    assert rewrite.execution_ms >= 0 and result.total_ms >= rewrite.execution_ms
    assert [s.status for s in status(empty_database, directory=baseline)] == ["applied", "pending", "pending"]
    assert databases(empty_database, "conveyor_dryrun_") == []


def test_a_template_copy_of_a_busy_database_is_refused_and_a_dump_copy_works(empty_database, baseline):
    migrate(empty_database, directory=baseline)
    write(baseline, "V002__add_column.sql", "ALTER TABLE tenants ADD COLUMN note text;\n")
    with psycopg.connect(empty_database, application_name="a-worker"):
        with pytest.raises(MigrationError, match=r"other session.*a-worker.*--copy dump"):
            dry_run(empty_database, directory=baseline)
        result = dry_run(empty_database, directory=baseline, copy="dump")

    assert [f.filename for f in result.files] == ["V002__add_column.sql"]
    assert databases(empty_database, "conveyor_dryrun_") == []


def test_a_dry_run_on_a_database_with_an_edited_migration_is_refused_before_any_copy(
        empty_database, baseline, monkeypatch, capsys):
    migrate(empty_database, directory=baseline)
    first = next(baseline.glob("V001__*.sql"))
    first.write_text(first.read_text() + "\n-- edited\n")
    write(baseline, "V002__add_column.sql", "ALTER TABLE tenants ADD COLUMN note text;\n")
    monkeypatch.setenv("CONVEYOR_DATABASE_URL", empty_database)
    monkeypatch.setattr("conveyor.db.migrate.default_directory", lambda: baseline)

    code = cli.main(["db", "migrate", "--dry-run", "--json"])

    assert code == 1
    assert "edited after it was applied" in capsys.readouterr().err
    assert databases(empty_database, "conveyor_dryrun_") == []
