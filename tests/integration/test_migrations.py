"""Migrations on a real PostgreSQL: fresh apply, idempotent re-run, edited files refused,
concurrent deploys serialised, monthly order partitions."""

from __future__ import annotations

import shutil
import threading

import psycopg
import pytest

from conveyor import devservices
from conveyor.db.errors import MigrationError
from conveyor.db.migrate import default_directory, discover, ensure_partitions, migrate, status
from conveyor.workers import cli


@pytest.fixture
def empty_database(services):
    with devservices.fresh_database(services, prefix="conveyor_mig") as url:
        yield url


@pytest.fixture
def migrations_copy(tmp_path):
    target = tmp_path / "migrations"
    shutil.copytree(default_directory(), target)
    return target


def tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        return {r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')")}


def test_a_fresh_database_gets_every_migration_and_a_rerun_changes_nothing(empty_database):
    applied = migrate(empty_database)
    again = migrate(empty_database)

    assert applied[0] == "V001__create_inventory.sql"
    assert again == []
    assert {"tenants", "products", "stock_items", "stock_movements", "orders", "order_lines", "reservations",
            "inbox", "outbox", "order_registry", "schema_history"} <= tables(empty_database)
    assert {s.status for s in status(empty_database)} == {"applied"}


def test_status_lists_pending_migrations_before_they_run(empty_database, migrations_copy):
    states = status(empty_database, directory=migrations_copy)

    assert [s.status for s in states] == ["pending"] * len(states)


def test_an_edited_applied_migration_is_refused(empty_database, migrations_copy):
    # Given the migrations were applied
    migrate(empty_database, directory=migrations_copy)
    # When someone edits an applied file
    first = sorted(migrations_copy.glob("V001__*.sql"))[0]
    first.write_text(first.read_text() + "\n-- edited\n")
    (migrations_copy / "V999__later.sql").write_text("CREATE TABLE later (id int);")

    # Then migrate refuses, applies nothing new, and status marks the file
    with pytest.raises(MigrationError, match="edited after it was applied"):
        migrate(empty_database, directory=migrations_copy)
    assert "later" not in tables(empty_database)
    assert status(empty_database, directory=migrations_copy)[0].status == "modified"


def test_the_cli_exits_non_zero_with_one_clear_line_on_an_edited_file(
        empty_database, migrations_copy, monkeypatch, capsys):
    migrate(empty_database, directory=migrations_copy)
    first = sorted(migrations_copy.glob("V001__*.sql"))[0]
    first.write_text(first.read_text() + "\n-- edited\n")
    monkeypatch.setenv("CONVEYOR_DATABASE_URL", empty_database)
    monkeypatch.setattr("conveyor.db.migrate.default_directory", lambda: migrations_copy)

    code = cli.main(["db", "migrate"])

    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert len(err) == 1 and "V001__create_inventory.sql was edited" in err[0]


def test_a_failing_migration_is_rolled_back_and_not_recorded(empty_database, migrations_copy):
    (migrations_copy / "V900__broken.sql").write_text("CREATE TABLE half (id int); SELECT 1/0;")

    with pytest.raises(psycopg.errors.DivisionByZero):
        migrate(empty_database, directory=migrations_copy)

    assert "half" not in tables(empty_database)
    assert [s.status for s in status(empty_database, directory=migrations_copy)][-1] == "pending"


def test_two_concurrent_deploys_apply_each_migration_once(empty_database):
    # Given four deploys starting at once on an empty database
    results, errors = [], []

    def deploy() -> None:
        try:
            results.append(migrate(empty_database))
        except Exception as error:  # noqa: BLE001
            errors.append(error)

    threads = [threading.Thread(target=deploy) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    # Then no deploy failed and, between them, each file was applied exactly once
    assert errors == []
    assert sum(len(r) for r in results) == len(discover())
    with psycopg.connect(empty_database) as conn:
        assert conn.execute("SELECT count(*) FROM schema_history").fetchone()[0] == len(discover())


def test_after_v005_everything_migrations_and_partitions_create_belongs_to_the_owner_role(
        empty_database, migrations_copy):
    # Given the migrations up to V005 (which hands the schema to conveyor_owner), then a later one
    (migrations_copy / "V999__later.sql").write_text("CREATE TABLE later (id int); CREATE SEQUENCE later_seq;")

    # When it is applied by a superuser login and new monthly partitions are created
    migrate(empty_database, directory=migrations_copy)
    created = ensure_partitions(empty_database, months_ahead=14)

    # Then the new table, sequence and partitions are conveyor_owner's like everything else
    with psycopg.connect(empty_database) as conn:
        owners = dict(conn.execute(
            "SELECT n.nspname || '.' || c.relname, pg_get_userbyid(c.relowner) FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname NOT LIKE 'pg_%' AND n.nspname <> 'information_schema'"
            " AND c.relkind IN ('r', 'p', 'S', 'v')").fetchall())
    assert created and all(owners[name] == "conveyor_owner" for name in created)
    # (an unqualified name lands in the first schema of the search path: migrations name theirs)
    assert (owners["orders.later"], owners["orders.later_seq"], owners["public.schema_history"]) == (
        "conveyor_owner",) * 3
    assert set(owners.values()) == {"conveyor_owner"}
