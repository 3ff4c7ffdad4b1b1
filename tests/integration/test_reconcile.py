"""`conveyor reconcile` on a real database: silent when consistent, loud when stock drifted."""

from __future__ import annotations

import json

import psycopg

from conveyor.workers import cli
from tests.support.workers import order_body, run_order, set_stock


def reconcile_json(database_url: str, monkeypatch, capsys) -> tuple[int, dict]:
    monkeypatch.setenv("CONVEYOR_DATABASE_URL", database_url)
    code = cli.main(["reconcile", "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_a_consistent_database_reconciles_with_exit_0(database_url, monkeypatch, capsys):
    set_stock(database_url, "A", 10)
    run_order(database_url, order_body(("A", 3)))

    code, report = reconcile_json(database_url, monkeypatch, capsys)

    assert code == 0 and report["ok"] is True
    assert report["totals"] == {"skus": 1, "on_hand": 10, "reserved": 3}


def test_reserved_changed_by_hand_shows_as_drift_with_exit_1(database_url, monkeypatch, capsys):
    set_stock(database_url, "A", 10)
    run_order(database_url, order_body(("A", 3)))
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE stock_levels SET reserved = reserved + 2 WHERE sku = 'A'")

    code, report = reconcile_json(database_url, monkeypatch, capsys)

    assert code == 1 and report["ok"] is False
    [row] = report["drift"]["reserved_vs_reservations"]
    assert (row["sku"], row["actual"], row["expected"]) == ("A", 5, 3)
    assert report["drift"]["levels_vs_ledger"] == []  # the ledger saw the hand-made change


def test_a_version_whose_delta_disagrees_with_its_level_shows_as_drift(database_url, monkeypatch, capsys):
    # Given a level of 10, and a version written by hand whose delta does not add up to it
    set_stock(database_url, "A", 10)
    with psycopg.connect(database_url) as conn:
        conn.execute("""INSERT INTO stock_movements (tenant_id, sku, version, delta_on_hand, delta_reserved,
                                                     on_hand, reserved, cause)
                        VALUES ('default', 'A', 2, 0, 0, 7, 0, 'by-hand')""")

    code, report = reconcile_json(database_url, monkeypatch, capsys)

    assert code == 1
    [row] = report["drift"]["levels_vs_ledger"]
    assert (row["actual"], row["expected"]) == (7, 10)


def test_direct_sql_changes_are_in_the_ledger_with_their_cause(database_url):
    set_stock(database_url, "A", 10)
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE stock_levels SET on_hand = on_hand + 5 WHERE sku = 'A'")
        rows = conn.execute("SELECT version, delta_on_hand, cause FROM stock_movements ORDER BY version").fetchall()
    assert [(v, d) for v, d, _ in rows] == [(1, 10), (2, 5)]
    assert rows[0][2].startswith("stock-set:") and rows[1][2] == "direct-sql"


def test_one_statement_over_many_skus_records_each_change_once_and_skips_the_unchanged(database_url):
    # Given three SKUs (V007 records stock changes per statement, from its transition tables)
    for sku, units in (("A", 10), ("B", 20), ("C", 30)):
        set_stock(database_url, sku, units)
    with psycopg.connect(database_url) as conn:
        before = conn.execute("SELECT coalesce(max(id), 0) FROM outbox").fetchone()[0]
        # When one UPDATE changes A and B, and touches C without changing its stock
        conn.execute("""UPDATE stock_levels SET reserved = CASE sku WHEN 'C' THEN reserved ELSE reserved + 2 END
                        WHERE sku IN ('A', 'B', 'C')""")
        ledger = conn.execute("""SELECT sku, version, delta_on_hand, delta_reserved, on_hand, reserved, cause
                                 FROM stock_movements WHERE version > 1 ORDER BY sku""").fetchall()
        partner = conn.execute("""SELECT routing_key, payload->>'version', payload->>'reserved', payload->>'available'
                                  FROM outbox WHERE exchange = 'inventory' AND id > %s ORDER BY routing_key""",
                               (before,)).fetchall()
        versions = dict(conn.execute("SELECT sku, version FROM stock_levels").fetchall())

    # Then A and B each have one ledger row and one partner message, with deltas and levels; C none
    assert ledger == [("A", 2, 0, 2, 10, 2, "direct-sql"), ("B", 2, 0, 2, 20, 2, "direct-sql")]
    assert partner == [("stock.changed.default.A", "2", "2", "8"), ("stock.changed.default.B", "2", "2", "18")]
    assert versions == {"A": 2, "B": 2, "C": 1}
