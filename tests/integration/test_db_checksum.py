"""``conveyor db checksum``: per-table row counts and order-independent hashes, against a real
database: stable across physical order and rewrites, NULL-safe, sensitive to any change, one
snapshot, and a ``--json`` that compares as it is between two runs."""

from __future__ import annotations

import json

import psycopg
import pytest

from conveyor.db.checksum import UnknownTable, table_checksums
from tests.integration.test_cli import conveyor
from tests.support.workers import settings_for

SCRATCH = """
CREATE TABLE public.checksum_probe (id int PRIMARY KEY, label text, amount numeric(12, 2),
                                    seen timestamptz, tags text[], payload jsonb)
"""
ROWS = [(1, "a", 1.50, "2026-12-01T10:00:00Z", ["x", "y"], '{"k": 1}'),
        (2, None, None, None, None, None),
        (3, "", 0, "2026-12-02T00:00:00+05:00", [], "null"),
        (4, "quote \"and\" comma, here", -3.25, "1999-01-01T00:00:00Z", ["a,b"], '{"z": [1, 2]}')]
INSERT = "INSERT INTO public.checksum_probe VALUES (%s, %s, %s, %s, %s, %s)"


def probe(database_url: str, rows=ROWS, order=None) -> psycopg.Connection:
    conn = psycopg.connect(database_url, autocommit=True)
    conn.execute("DROP TABLE IF EXISTS public.checksum_probe")
    conn.execute(SCRATCH)
    conn.cursor().executemany(INSERT, [rows[i] for i in (order or range(len(rows)))])
    return conn


def checksum(conn: psycopg.Connection) -> tuple[int, str]:
    return table_checksums(conn, ["public.checksum_probe"])["public.checksum_probe"]


def test_the_hash_does_not_depend_on_physical_order_or_a_rewrite(database_url):
    with probe(database_url) as conn:
        forwards = checksum(conn)
    with probe(database_url, order=[3, 1, 0, 2]) as conn:
        backwards = checksum(conn)
        conn.execute("UPDATE public.checksum_probe SET label = label")  # new row versions elsewhere
        conn.execute("VACUUM FULL public.checksum_probe")
        rewritten = checksum(conn)
        conn.execute("SET TimeZone = 'Asia/Tokyo'")  # the session's zone does not leak into the text
        other_zone = checksum(conn)

    assert forwards[0] == 4
    assert forwards == backwards == rewritten == other_zone


@pytest.mark.parametrize("change", [
    "UPDATE public.checksum_probe SET label = '' WHERE id = 2",       # NULL -> ''
    "UPDATE public.checksum_probe SET label = NULL WHERE id = 3",     # '' -> NULL
    "UPDATE public.checksum_probe SET amount = 1.51 WHERE id = 1",
    "UPDATE public.checksum_probe SET tags = '{y,x}' WHERE id = 1",
    "DELETE FROM public.checksum_probe WHERE id = 2",
    "INSERT INTO public.checksum_probe (id) VALUES (5)",
])
def test_any_change_of_content_changes_the_hash(database_url, change):
    with probe(database_url) as conn:
        before = checksum(conn)
        conn.execute(change)
        after = checksum(conn)

    assert after != before


def test_swapping_values_between_rows_changes_the_hash(database_url):
    # A sum of per-column hashes would miss this; a hash of the whole row does not.
    swapped = [(1, "b", *ROWS[0][2:]), (2, "a", *ROWS[1][2:])]
    with probe(database_url, rows=[(1, "a", *ROWS[0][2:]), (2, "b", *ROWS[1][2:])]) as conn:
        before = checksum(conn)
    with probe(database_url, rows=swapped) as conn:
        after = checksum(conn)

    assert before != after


def test_every_conveyor_table_by_default_with_partitions_inside_their_parent(database_url):
    with psycopg.connect(database_url, autocommit=True) as conn:
        sums = table_checksums(conn)

    assert {"orders.orders", "inventory.stock_movements", "messaging.inbox", "messaging.outbox",
            "public.schema_history"} <= set(sums)
    assert not [name for name in sums if "orders_default" in name or "outbox_slot" in name]
    rows, _ = sums["public.schema_history"]
    assert rows >= 14


def test_an_unknown_table_is_refused_before_anything_is_read(database_url):
    with psycopg.connect(database_url, autocommit=True) as conn:
        with pytest.raises(UnknownTable, match="nope"):
            table_checksums(conn, ["orders.orders", "nope"])
        with pytest.raises(UnknownTable):
            table_checksums(conn, ["a.b.c.d"])


def test_cli_json_holds_only_counts_and_hashes_and_compares_as_it_is(database_url, amqp_url):
    settings = settings_for(database_url, amqp_url)
    probe(database_url).close()

    first = conveyor(settings, "db", "checksum", "--json")
    second = conveyor(settings, "db", "checksum", "--json")
    named = conveyor(settings, "db", "checksum", "checksum_probe", "inventory.stock_levels", "--json")
    missing = conveyor(settings, "db", "checksum", "orders.orders", "no_such_table")

    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout
    data = json.loads(first.stdout)
    assert list(data) == ["tables"]
    assert data["tables"]["public.checksum_probe"]["rows"] == 4
    assert all(set(v) == {"rows", "hash"} for v in data["tables"].values())
    assert list(json.loads(named.stdout)["tables"]) == ["public.checksum_probe", "inventory.stock_levels"]
    assert missing.returncode == 4 and "no_such_table" in missing.stderr and not missing.stdout
