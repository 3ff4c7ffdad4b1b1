"""Migration discovery from a directory: naming rules, duplicate versions, order, checksums."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.db.errors import MigrationError
from conveyor.db.migrate import discover


def write(directory: Path, name: str, sql: str = "SELECT 1;\n") -> Path:
    path = directory / name
    path.write_text(sql)
    return path


def test_migrations_are_ordered_by_numeric_version(tmp_path: Path) -> None:
    # Given files whose names sort differently as text and as numbers
    for name in ("V10__ten.sql", "V2__two.sql", "V001__one.sql"):
        write(tmp_path, name)

    # When they are discovered
    migrations = discover(tmp_path)

    # Then they come in version order, described from their names
    assert [m.version for m in migrations] == [1, 2, 10]
    assert [m.filename for m in migrations] == ["V001__one.sql", "V2__two.sql", "V10__ten.sql"]


def test_description_and_sql_come_from_the_file(tmp_path: Path) -> None:
    write(tmp_path, "V003__create_order_lines.sql", "CREATE TABLE t (id int);\n")
    [migration] = discover(tmp_path)
    assert migration.version == 3
    assert migration.description == "create order lines"
    assert migration.sql == "CREATE TABLE t (id int);\n"


def test_files_that_are_not_sql_are_ignored(tmp_path: Path) -> None:
    write(tmp_path, "V001__one.sql")
    write(tmp_path, "README.md", "notes")
    write(tmp_path, "V002__draft.sql.bak")
    assert [m.filename for m in discover(tmp_path)] == ["V001__one.sql"]


def test_an_empty_directory_has_no_migrations(tmp_path: Path) -> None:
    assert discover(tmp_path) == []


@pytest.mark.parametrize(
    "name",
    [
        "001__no_prefix.sql",
        "v001__lowercase_prefix.sql",
        "V001_single_underscore.sql",
        "V001__has-dash.sql",
        "V001__has space.sql",
        "V__no_version.sql",
        "Vx1__letters.sql",
        "V001__.sql",
        "R__repeatable.sql",
    ],
)
def test_a_malformed_name_is_an_error(tmp_path: Path, name: str) -> None:
    # Given a well-named file and a malformed one
    write(tmp_path, "V001__ok.sql")
    write(tmp_path, name)

    # When the directory is discovered
    # Then discovery refuses, naming the file
    with pytest.raises(MigrationError) as caught:
        discover(tmp_path)
    assert name in str(caught.value)


@pytest.mark.parametrize(("first", "second"), [("V1__a.sql", "V001__b.sql"), ("V2__a.sql", "V2__b.sql")])
def test_two_files_with_the_same_version_are_an_error(tmp_path: Path, first: str, second: str) -> None:
    # Given two files whose versions are numerically equal
    write(tmp_path, first)
    write(tmp_path, second)

    # When the directory is discovered
    # Then discovery refuses, naming both files
    with pytest.raises(MigrationError) as caught:
        discover(tmp_path)
    assert first in str(caught.value) and second in str(caught.value)


def test_checksum_is_stable_for_the_same_content(tmp_path: Path) -> None:
    # Given the same SQL in two directories under different names
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    write(one, "V001__a.sql", "CREATE TABLE t (id int);\n")
    write(two, "V001__renamed.sql", "CREATE TABLE t (id int);\n")

    # When both are discovered (and discovered again)
    [a] = discover(one)
    [b] = discover(two)
    [a_again] = discover(one)

    # Then the checksum depends on the content only, and is a SHA-256 hex digest
    assert a.checksum == b.checksum == a_again.checksum
    assert len(a.checksum) == 64 and int(a.checksum, 16) >= 0


def test_checksum_changes_when_the_content_changes(tmp_path: Path) -> None:
    path = write(tmp_path, "V001__a.sql", "CREATE TABLE t (id int);\n")
    [before] = discover(tmp_path)
    path.write_text("CREATE TABLE t (id bigint);\n")
    [after] = discover(tmp_path)
    assert before.checksum != after.checksum


def test_the_shipped_migrations_are_discoverable() -> None:
    # Given the package's own migrations directory
    migrations = discover()

    # Then it is well-formed, starting at version 1 with unique versions
    assert migrations
    assert migrations[0].version == 1
    assert len({m.version for m in migrations}) == len(migrations)


def test_directives_purpose_and_phase_come_from_the_first_lines(tmp_path: Path) -> None:
    write(tmp_path, "V001__plain.sql", "-- Adds a table.\n-- Second line.\n\n-- not the purpose\nSELECT 1;\n")
    write(tmp_path, "V002__step.sql", "-- conveyor:no-transaction\n-- conveyor:contract\n-- Drops it.\nSELECT 1;\n")
    plain, step = discover(tmp_path)

    assert (plain.transactional, plain.phase, plain.purpose) == (True, "expand", "Adds a table. Second line.")
    assert (step.transactional, step.phase, step.purpose) == (False, "contract", "Drops it.")


def test_a_directive_after_the_first_statement_is_only_a_comment(tmp_path: Path) -> None:
    write(tmp_path, "V001__late.sql", "SELECT 1;\n-- conveyor:no-transaction\n")
    [late] = discover(tmp_path)
    assert late.transactional


def test_an_unknown_directive_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "V001__typo.sql", "-- conveyor:notransaction\nSELECT 1;\n")
    with pytest.raises(MigrationError, match="unknown directive 'conveyor:notransaction'"):
        discover(tmp_path)


def test_statements_keep_dollar_quoted_bodies_and_quoted_semicolons_whole(tmp_path: Path) -> None:
    write(tmp_path, "V001__steps.sql", "-- conveyor:no-transaction\n-- purpose\n"
          "DO $$ BEGIN PERFORM 1; COMMIT; END $$;\n"
          "CREATE INDEX CONCURRENTLY IF NOT EXISTS i ON t (a);  -- trailing\n"
          "-- a comment on its own\n"
          "SELECT ';' AS semicolon;\n")
    [migration] = discover(tmp_path)
    statements = migration.statements()

    assert len(statements) == 3
    assert statements[0].endswith("DO $$ BEGIN PERFORM 1; COMMIT; END $$;")
    assert statements[1].startswith("CREATE INDEX CONCURRENTLY")
    assert statements[2].endswith("SELECT ';' AS semicolon;")
