"""`conveyor reconcile` on a real database: silent when consistent, loud when stock drifted."""

from __future__ import annotations

import json

import psycopg

from support import order_body, run_order, set_stock
from workers import cli


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


def test_on_hand_changed_behind_the_ledger_shows_as_drift(database_url, monkeypatch, capsys):
    set_stock(database_url, "A", 10)
    with psycopg.connect(database_url) as conn:
        conn.execute("SET session_replication_role = replica")  # triggers off: the ledger misses it
        conn.execute("UPDATE stock_levels SET on_hand = 7 WHERE sku = 'A'")

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
