"""The read side (conveyor.db.views) on a real database: plain values out, Conveyor's errors on failure."""

from __future__ import annotations

import uuid

import pytest

from conveyor.db import views
from conveyor.db.connection import connect
from conveyor.db.errors import DatabaseUnavailable
from tests.support.workers import order_body, run_order, set_stock


def test_views_read_orders_stock_relay_and_demo_counts(database_url):
    # Given one SKU and one reserved order
    set_stock(database_url, "A", 10)
    run_order(database_url, order_body(("A", 3)))

    with connect(database_url) as conn:
        # When the read side is asked
        views.ping(conn)
        stock = views.stock(conn, "default", "A")
        counts = views.demo_counts(conn, seeded_stock=10)
        stats = views.outbox_stats(conn)
        lease = views.lease_state(conn)
        missing = views.order(conn, uuid.uuid4())

    # Then each answers with plain values
    assert stock is not None and (stock["on_hand"], stock["reserved"], stock["available"]) == (10, 3, 7)
    assert counts.by_status == {"RESERVED": 1} and counts.oversold_skus == 0 and counts.duplicate_orders == 0
    assert [(s.sku, s.matches) for s in counts.stock] == [("A", True)]
    assert stats.pending >= 1 and sum(stats.pending_by_exchange.values()) == stats.pending
    assert lease is None or lease.sent_total == 0
    assert missing is None


def test_an_unreachable_database_is_database_unavailable():
    with pytest.raises(DatabaseUnavailable):
        connect("postgresql://nobody@127.0.0.1:1/none")  # nothing listens on port 1
