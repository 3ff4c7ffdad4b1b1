"""Real `conveyor run orders` processes: competing consumers never oversell, and a stop —
graceful (SIGTERM) or brutal (SIGKILL) — loses nothing and doubles nothing."""

from __future__ import annotations

import signal
import time

import pytest

from tests.support.workers import (
    consumers_on,
    declare_topology,
    order_body,
    publish_orders,
    queue_depth,
    scalar,
    set_stock,
    stop_process,
    wait_until,
    worker_process,
)

QUEUE = "conveyor.orders"
pytestmark = pytest.mark.slow


def decided(settings) -> int:
    return scalar(settings.database_url, "SELECT count(*) FROM orders")


def assert_each_order_decided_once(settings, expected: int) -> None:
    db = settings.database_url
    assert scalar(db, "SELECT count(*) FROM orders") == expected
    assert scalar(db, "SELECT count(DISTINCT order_id) FROM orders") == expected
    assert scalar(db, "SELECT count(*) FROM inbox") == expected
    # reserved equals what the RESERVED orders hold, per SKU
    assert scalar(db, """
        SELECT count(*) FROM stock_levels s
        LEFT JOIN (SELECT sku, sum(quantity) q FROM reservations GROUP BY sku) r USING (sku)
        WHERE s.reserved <> coalesce(r.q, 0)""") == 0


def test_competing_worker_processes_reserve_exactly_the_stock_there_is(settings, tmp_path):
    # Given 100 units of one SKU and 400 single-unit orders waiting in the queue
    set_stock(settings.database_url, "HOT", 100)
    workers = [worker_process(settings, "orders", log_path=str(tmp_path / f"w{i}.log")) for i in range(3)]
    try:
        wait_until(lambda: consumers_on(settings.amqp_url, QUEUE) == 3, message="3 consumers")
        publish_orders(settings.amqp_url, [order_body(("HOT", 1)) for _ in range(400)])

        # When three processes compete for them
        wait_until(lambda: decided(settings) == 400, timeout=60, message="400 orders decided")
    finally:
        codes = [stop_process(w) for w in workers]

    # Then exactly 100 were reserved, the rest rejected, and stock never went negative
    db = settings.database_url
    assert scalar(db, "SELECT count(*) FROM orders WHERE status = 'RESERVED'") == 100
    assert scalar(db, "SELECT count(*) FROM orders WHERE status = 'REJECTED'") == 300
    assert scalar(db, "SELECT reserved FROM stock_levels WHERE sku = 'HOT'") == 100
    assert_each_order_decided_once(settings, 400)
    assert codes == [0, 0, 0]


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_a_worker_stopped_mid_stream_loses_and_doubles_nothing(settings, tmp_path, stop_signal):
    # Given 600 orders across 30 SKUs and a worker chewing through them
    declare_topology(settings)
    for i in range(30):
        set_stock(settings.database_url, f"S{i}", 1000)
    publish_orders(settings.amqp_url, [order_body((f"S{i % 30}", 1), (f"S{(i + 7) % 30}", 2))
                                       for i in range(600)])
    first = worker_process(settings, "orders", log_path=str(tmp_path / "first.log"))

    # When it is stopped part-way
    wait_until(lambda: decided(settings) >= 50, timeout=30, message="some progress")
    code = stop_process(first, stop_signal)
    at_stop = decided(settings)

    # and a new worker takes over
    second = worker_process(settings, "orders", log_path=str(tmp_path / "second.log"))
    try:
        wait_until(lambda: decided(settings) == 600 and queue_depth(settings.amqp_url, QUEUE) == 0,
                   timeout=60, message="all 600 decided")
        time.sleep(0.5)  # anything doubled would show up now
    finally:
        assert stop_process(second) == 0

    # Then every order was decided exactly once and nothing was dead-lettered
    assert 0 < at_stop < 600, "the stop should have happened mid-stream"
    assert code == (0 if stop_signal == signal.SIGTERM else -signal.SIGKILL)
    assert_each_order_decided_once(settings, 600)
    assert queue_depth(settings.amqp_url, "conveyor.orders.dlq") == 0
    assert scalar(settings.database_url, "SELECT sum(reserved) FROM stock_levels") == 600 * 3


def test_run_with_processes_starts_competing_copies_and_stops_them_cleanly(settings, tmp_path):
    # Given `conveyor run orders --processes 2`
    parent = worker_process(settings, "orders", "--processes", "2", log_path=str(tmp_path / "run.log"))
    try:
        # Then two consumers compete on the queue and share the work
        wait_until(lambda: consumers_on(settings.amqp_url, QUEUE) == 2, message="2 consumers")
        set_stock(settings.database_url, "A", 1000)
        publish_orders(settings.amqp_url, [order_body(("A", 1)) for _ in range(200)])
        wait_until(lambda: decided(settings) == 200, timeout=30, message="200 orders decided")
    finally:
        # And SIGTERM to the parent stops both copies cleanly
        code = stop_process(parent)
    assert code == 0
    assert consumers_on(settings.amqp_url, QUEUE) == 0
    assert_each_order_decided_once(settings, 200)
