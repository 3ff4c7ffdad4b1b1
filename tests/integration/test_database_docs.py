"""docs/database.md is what the catalog of a freshly migrated database says (``make docs-db``);
the rendering is the same however often and in whatever order the catalog is read, and it
names no partition. A small schema of the test's own shows the generic rules: partitions and
their clones folded into the partitioned table, extension members left out, grants summarised."""

from __future__ import annotations

import difflib
import random
import re

import psycopg
import pytest

from conveyor import devservices
from conveyor.db.catalog import describe, render_markdown
from conveyor.workers import cli
from tests.support.database_docs import DOCS_PATH, render

DIFF_LINES = 60


@pytest.fixture
def description(database_url):
    with psycopg.connect(database_url, autocommit=True) as conn:
        return describe(conn)


def test_the_committed_document_is_what_a_freshly_migrated_database_gives(database_url):
    # Given the committed document; When the suite's migrated database is described
    committed = DOCS_PATH.read_text() if DOCS_PATH.exists() else ""
    generated = render(database_url)

    # Then they are the same, byte for byte
    if committed != generated:
        diff = difflib.unified_diff(committed.splitlines(), generated.splitlines(),
                                    "docs/database.md (committed)", "migrated database", lineterm="")
        shown = "\n".join(list(diff)[:DIFF_LINES])
        pytest.fail(f"docs/database.md does not match the migrations: run `make docs-db` and commit the file\n"
                    f"{shown}", pytrace=False)


def test_rendering_is_deterministic_whatever_the_order_of_the_rows(database_url, description):
    # Given the catalog read twice, and once more with every list shuffled
    with psycopg.connect(database_url, autocommit=True) as conn:
        again = describe(conn)
    shuffled = {key: random.Random(7).sample(rows, len(rows)) for key, rows in description.items()}

    # Then every rendering is the same text
    assert render_markdown(description) == render_markdown(description)
    assert render_markdown(again) == render_markdown(description)
    assert render_markdown(shuffled) == render_markdown(description)


def test_no_partition_is_named_anywhere(database_url, description):
    # Given the partitions the migrations made (the months', the outbox's slots)
    with psycopg.connect(database_url, autocommit=True) as conn:
        partitions = [name for (name,) in conn.execute("SELECT relname FROM pg_class WHERE relispartition")]
    assert partitions, "the migrations made no partition: this test checks nothing"

    # When the document is rendered
    text = render_markdown(description)

    # Then none of them appears, nor anything named like a month's or a day's partition
    assert [name for name in partitions if re.search(rf"\b{re.escape(name)}\b", text)] == []
    assert re.findall(r"\b\w+_\d{4}_\d{2}(?:_\d{2})?\b", text) == []
    assert "relispartition" not in text


def test_db_docs_writes_the_document_and_check_says_whether_a_file_is_stale(database_url, tmp_path, monkeypatch,
                                                                              capsys):
    # Given the command pointed at the migrated database, a file it wrote, and a stale copy
    monkeypatch.setenv("CONVEYOR_DATABASE_URL", database_url)
    written, stale = tmp_path / "database.md", tmp_path / "stale.md"
    assert cli.main(["db", "docs", "--output", str(written)]) == 0
    stale.write_text(written.read_text().replace("## Privileges\n", "## Privileges (old)\n"))
    capsys.readouterr()

    # When each file is checked
    fresh_code = cli.main(["db", "docs", "--check", str(written)])
    stale_code = cli.main(["db", "docs", "--check", str(stale)])

    # Then the written one is what render() gives and passes; the stale one fails with a diff
    out = capsys.readouterr().out
    assert written.read_text() == render(database_url)
    assert (fresh_code, stale_code) == (0, 1)
    assert "1 line(s) to add, 1 to remove" in out and "make docs-db" in out
    assert "-## Privileges (old)" in out and "+## Privileges" in out


# -- the generic rules, on a schema of the test's own ---------------------------------------

SHOP = """
CREATE SCHEMA shop;
COMMENT ON SCHEMA shop IS 'A shop | for the test';
CREATE TABLE shop.customers (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, email text);
COMMENT ON TABLE shop.customers IS 'who buys';
CREATE TABLE shop.events (customer_id bigint REFERENCES shop.customers, at date NOT NULL) PARTITION BY RANGE (at);
CREATE TABLE shop.events_2026_01 PARTITION OF shop.events FOR VALUES FROM ('2026-01-01') TO ('2026-02-01');
CREATE TABLE shop.events_2026_02 PARTITION OF shop.events FOR VALUES FROM ('2026-02-01') TO ('2026-03-01');
CREATE INDEX events_at_idx ON shop.events (at);
CREATE FUNCTION shop.stamp() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$ BEGIN RETURN NEW; END $$;
CREATE TRIGGER events_stamp BEFORE INSERT ON shop.events FOR EACH ROW EXECUTE FUNCTION shop.stamp();
CREATE VIEW shop.january AS SELECT * FROM shop.events_2026_01;
CREATE TEMP TABLE scratch (x integer);
GRANT USAGE ON SCHEMA shop TO conveyor_readonly;
GRANT SELECT (id, email) ON shop.customers TO conveyor_readonly;
ALTER TABLE shop.customers ENABLE ROW LEVEL SECURITY;
CREATE POLICY own ON shop.customers FOR SELECT TO conveyor_readonly USING (true);
"""


@pytest.fixture(scope="module")
def shop(services, migrated_template):  # the template made the (cluster-wide) conveyor_* roles
    with devservices.fresh_database(services, prefix="conveyor_catalog") as url:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(SHOP)
            has_citext = conn.execute("SELECT EXISTS (SELECT FROM pg_available_extensions "
                                      "WHERE name = %(name)s)", {"name": "citext"}).fetchone()[0]
            if has_citext:
                conn.execute("CREATE EXTENSION citext SCHEMA shop")
            yield {"text": render_markdown(describe(conn)), "has_citext": has_citext}


def test_a_partitioned_table_shows_its_key_and_stands_for_its_partitions(shop):
    text = shop["text"]

    assert "| `events` | partitioned table | RANGE (at) |  |" in text
    assert "events_2026" not in text
    assert "| `shop.january` (view) | `shop.events` (partitioned table) | view reads |" in text
    # the foreign key and the trigger are cloned onto every partition: each is shown once
    foreign_key = "| `shop.events` (partitioned table) | `shop.customers` (table) | foreign key (customer_id) |"
    assert text.count(foreign_key) == 1
    assert text.count("| `events` | `events_stamp` | BEFORE INSERT FOR EACH ROW | `shop.stamp()` |") == 1


def test_comments_security_definer_and_owned_sequences(shop):
    text = shop["text"]

    assert "A shop \\| for the test" in text
    assert "| `customers` | table |  | who buys |" in text
    assert "| `stamp()` | function | trigger | plpgsql | SECURITY DEFINER |  |" in text
    assert "Sequences (not owned by a column)" not in text  # the identity's sequence is the column's
    assert "| `shop.customers_id_seq` (sequence) | `shop.customers` (table) | identity of column id |" in text


def test_grants_are_summarised_per_role_with_column_grants_and_policies(shop):
    text = shop["text"]

    assert "| `shop` | `conveyor_readonly` | USAGE | 1 | 0 |" in text
    assert "| `customers` | table | `conveyor_readonly` | SELECT (id, email) |" in text
    assert "| `shop.customers` | on | `own` | SELECT | conveyor_readonly |" in text
    assert "pg_temp" not in text and "scratch" not in text


def test_extension_members_are_left_out(shop):
    if not shop["has_citext"]:
        pytest.skip("the citext extension is not installed on this server")

    assert "citext" not in shop["text"]
