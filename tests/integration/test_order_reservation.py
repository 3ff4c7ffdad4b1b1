"""The order worker's handler against a real PostgreSQL: all-or-nothing reservation,
rejections with reasons, de-duplication by order id, and no oversell under concurrency."""

from __future__ import annotations

import threading

import psycopg
import pytest

from tests.support.workers import order_body, run_order, scalar, set_stock


def stock(database_url: str, sku: str) -> tuple[int, int]:
    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT on_hand, reserved FROM stock_levels WHERE sku = %s", (sku,)).fetchone()


def outbox_keys(database_url: str) -> list[str]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT routing_key FROM outbox WHERE exchange = 'order-events' ORDER BY id")
        return [r[0] for r in rows]


def test_an_order_with_stock_for_every_line_is_reserved(database_url):
    # Given two SKUs with stock
    set_stock(database_url, "A", 10)
    set_stock(database_url, "B", 5)
    body = order_body(("A", 3), ("B", 5))

    # When the order arrives
    outcome = run_order(database_url, body)

    # Then every line is reserved, the order is RESERVED and order.reserved is in the outbox
    assert outcome == "reserved"
    assert stock(database_url, "A") == (10, 3)
    assert stock(database_url, "B") == (5, 5)
    assert scalar(database_url, "SELECT status FROM orders WHERE order_id = %s", (body["order_id"],)) == "RESERVED"
    assert scalar(database_url, "SELECT count(*) FROM reservations WHERE state = 'HELD'") == 2
    assert outbox_keys(database_url) == ["order.reserved"]


def test_one_short_line_rejects_the_whole_order_and_reserves_nothing(database_url):
    # Given A has plenty and B too little
    set_stock(database_url, "A", 10)
    set_stock(database_url, "B", 1)
    body = order_body(("A", 3), ("B", 2))

    # When
    outcome = run_order(database_url, body)

    # Then nothing is reserved and line 2 says why
    assert outcome == "rejected"
    assert stock(database_url, "A") == (10, 0)
    assert stock(database_url, "B") == (1, 0)
    with psycopg.connect(database_url) as conn:
        lines = conn.execute("SELECT line_no, status, reason FROM order_lines ORDER BY line_no").fetchall()
        payload = conn.execute("SELECT payload FROM outbox WHERE exchange = 'order-events'").fetchone()[0]
    assert lines == [(1, "REJECTED", None), (2, "REJECTED", "insufficient_stock")]
    assert payload["lines"] == [{"line_no": 2, "sku": "B", "requested": 2, "available": 1,
                                 "reason": "insufficient_stock"}]
    assert outbox_keys(database_url) == ["order.rejected"]


def test_an_unknown_sku_rejects_the_order(database_url):
    set_stock(database_url, "A", 10)
    body = order_body(("A", 1), ("GHOST", 1))

    outcome = run_order(database_url, body)

    assert outcome == "rejected"
    assert stock(database_url, "A") == (10, 0)
    assert scalar(database_url, "SELECT status_reason FROM orders") == "line 2 GHOST: unknown_sku"


def test_the_same_order_id_under_a_new_message_id_is_reserved_once(database_url):
    set_stock(database_url, "A", 10)
    body = order_body(("A", 4))

    first = run_order(database_url, body)
    second = run_order(database_url, body)

    assert (first, second) == ("reserved", "duplicate_order")
    assert stock(database_url, "A") == (10, 4)
    assert scalar(database_url, "SELECT count(*) FROM outbox WHERE exchange = 'order-events'") == 1


def test_tenants_have_separate_stock_for_the_same_sku(database_url):
    set_stock(database_url, "A", 1, tenant="shop-1")
    set_stock(database_url, "A", 5, tenant="shop-2")

    assert run_order(database_url, order_body(("A", 3), tenant_id="shop-1")) == "rejected"
    assert run_order(database_url, order_body(("A", 3), tenant_id="shop-2")) == "reserved"
    assert scalar(database_url, "SELECT reserved FROM stock_levels WHERE tenant_id = 'shop-2'") == 3


def test_the_database_refuses_oversell_even_without_the_code(database_url):
    # Given a SKU with 2 units, when someone writes reserved > on_hand by hand
    set_stock(database_url, "A", 2)
    with pytest.raises(psycopg.errors.CheckViolation):
        with psycopg.connect(database_url) as conn:
            conn.execute("UPDATE stock_levels SET reserved = 3 WHERE sku = 'A'")


def test_concurrent_orders_on_one_sku_never_oversell(database_url):
    # Given one SKU with 100 units and 8 threads each placing 50 single-unit orders
    set_stock(database_url, "HOT", 100)
    outcomes: list[str] = []
    lock = threading.Lock()

    def place(count: int) -> None:
        for _ in range(count):
            result = run_order(database_url, order_body(("HOT", 1)))
            with lock:
                outcomes.append(result)

    threads = [threading.Thread(target=place, args=(50,)) for _ in range(8)]

    # When they all run at once
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    # Then exactly 100 units are reserved, 100 orders accepted, 300 rejected
    assert outcomes.count("reserved") == 100
    assert outcomes.count("rejected") == 300
    assert stock(database_url, "HOT") == (100, 100)
    assert scalar(database_url, "SELECT sum(quantity) FROM reservations WHERE sku = 'HOT'") == 100
