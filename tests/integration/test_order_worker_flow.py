"""The order worker end to end on real RabbitMQ and PostgreSQL, running in-process:
events reach the bus, duplicates have no second effect, bad input lands in the DLQ
intact with its reason, transient failures are retried, and endless ones give up."""

from __future__ import annotations

import json
import uuid

import psycopg
import pytest

from conveyor.db.locks import stock_lock_key
from tests.support.workers import (
    event_tap,
    order_body,
    publish,
    publish_orders,
    queue_depth,
    running_workers,
    scalar,
    set_stock,
    take_all,
    wait_until,
)

# Every test that uses `settings` runs once more through PgBouncer (transaction pooling).
pytestmark = pytest.mark.also_through_pgbouncer

QUEUE, DLQ = "conveyor.orders", "conveyor.orders.dlq"


def orders_decided(database_url: str) -> int:
    return scalar(database_url, "SELECT count(*) FROM orders")


def test_a_reserved_order_is_announced_on_order_events(settings):
    # Given stock and a partner listening on order-events
    set_stock(settings.database_url, "A", 5)
    with event_tap(settings.amqp_url) as tap, running_workers(settings, ["orders", "relay"]):
        body = order_body(("A", 2))

        # When the shop publishes order.created
        publish_orders(settings.amqp_url, [body])

        # Then order.reserved arrives with its own message id and the order id as correlation id
        [(method, properties, payload)] = take_all(settings.amqp_url, tap, expect=1)
    assert method.routing_key == "order.reserved"
    assert properties.correlation_id == body["order_id"]
    assert uuid.UUID(properties.message_id)
    assert json.loads(payload)["lines"][0] == {"line_no": 1, "sku": "A", "quantity": 2, "unit_price": "9.99"}
    assert scalar(settings.database_url, "SELECT count(*) FROM outbox WHERE sent_at IS NULL") == 0


def test_the_same_message_twice_reserves_once(settings):
    set_stock(settings.database_url, "A", 5)
    body = json.dumps(order_body(("A", 2))).encode()
    message_id = str(uuid.uuid4())
    with running_workers(settings, ["orders"]):
        publish(settings.amqp_url, [(body, {"message_id": message_id})] * 3)
        wait_until(lambda: scalar(settings.database_url, "SELECT count(*) FROM inbox") == 1)
        wait_until(lambda: queue_depth(settings.amqp_url, QUEUE) == 0, message="queue drained")
    assert scalar(settings.database_url, "SELECT reserved FROM stock_levels WHERE sku = 'A'") == 2
    assert orders_decided(settings.database_url) == 1
    assert queue_depth(settings.amqp_url, DLQ) == 0


INVALID = [
    ("not_json", b"{not json", {}),
    ("bad_encoding", b"\xff\xfe order", {}),
    ("too_large", b"[" + b"1," * 200_000 + b"1]", {}),
    ("schema_violation", json.dumps({"order_id": "x"}).encode(), {}),
    ("float_number", json.dumps(order_body(("A", 1))).replace('"9.99"', "9.99").encode(), {}),
    ("duplicate_key", b'{"order_id": "a", "order_id": "b"}', {}),
    ("missing_message_id", json.dumps(order_body(("A", 1))).encode(), {"message_id": None}),
    ("wrong_content_type", json.dumps(order_body(("A", 1))).encode(), {"content_type": "text/xml"}),
    ("type_mismatch", json.dumps(order_body(("A", 1))).encode(), {"type": "order.deleted"}),
]


def test_every_kind_of_invalid_message_is_dead_lettered_intact_and_the_worker_goes_on(settings):
    # Given a worker and stock for a good order
    set_stock(settings.database_url, "A", 5)
    with running_workers(settings, ["orders"]):
        # When every kind of bad message is published, then a good one
        publish(settings.amqp_url, [(body, props) for _, body, props in INVALID])
        good = order_body(("A", 1))
        publish_orders(settings.amqp_url, [good])

        # Then each bad one is in the DLQ once, byte for byte, with its reason
        dead = take_all(settings.amqp_url, DLQ, expect=len(INVALID))
        wait_until(lambda: orders_decided(settings.database_url) == 1, message="good order decided")
    by_code = {p.headers["x-conveyor-error-code"]: (p, body) for _, p, body in dead}
    assert sorted(by_code) == sorted(code for code, _, _ in INVALID)
    for code, body, _ in INVALID:
        properties, dead_body = by_code[code]
        assert dead_body == body
        assert properties.headers["x-conveyor-attempts"] == 1
        assert properties.headers["x-conveyor-original-queue"] == QUEUE
        assert properties.headers["x-conveyor-original-routing-key"] == "order.created"
        assert properties.headers["x-conveyor-error-class"] == "InvalidMessage"
        assert properties.headers["x-conveyor-error-message"]
    assert scalar(settings.database_url, "SELECT status FROM orders") == "RESERVED"
    assert queue_depth(settings.amqp_url, QUEUE) == 0


def hold_stock_lock(database_url: str, sku: str) -> psycopg.Connection:
    """Another transaction sits on the SKU's advisory lock: the worker's lock times out (55P03)."""
    conn = psycopg.connect(database_url)
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (stock_lock_key("default", sku),))
    return conn


def test_a_transient_failure_is_retried_later_and_then_succeeds(settings):
    # Given a SKU whose lock is held by someone else
    set_stock(settings.database_url, "A", 5)
    blocker = hold_stock_lock(settings.database_url, "A")
    with running_workers(settings, ["orders"]):
        publish_orders(settings.amqp_url, [order_body(("A", 1))])

        # When the worker has failed once (lock timeout → retry queue) and the lock is released
        wait_until(lambda: _retried(settings), message="message parked in the retry tier")
        blocker.rollback()
        blocker.close()

        # Then the redelivered attempt reserves the stock
        wait_until(lambda: orders_decided(settings.database_url) == 1, message="order decided after retry")
    assert scalar(settings.database_url, "SELECT reserved FROM stock_levels WHERE sku = 'A'") == 1
    assert queue_depth(settings.amqp_url, DLQ) == 0


def _retried(settings) -> bool:
    return queue_depth(settings.amqp_url, "conveyor.orders.retry.1s") > 0


def test_a_failure_that_never_heals_ends_in_the_dlq_after_the_configured_attempts(settings):
    # Given a lock that is never released and max_attempts = 3
    set_stock(settings.database_url, "A", 5)
    blocker = hold_stock_lock(settings.database_url, "A")
    body = json.dumps(order_body(("A", 1))).encode()
    try:
        with running_workers(settings, ["orders"]):
            publish(settings.amqp_url, [(body, {})])

            # Then after 3 attempts the message is in the DLQ with its history
            [(_, properties, dead_body)] = take_all(settings.amqp_url, DLQ, expect=1, timeout=30)
    finally:
        blocker.close()
    assert dead_body == body
    assert properties.headers["x-conveyor-attempts"] == settings.max_attempts
    assert properties.headers["x-conveyor-error-code"] == "55P03"  # lock_timeout
    assert properties.headers["x-conveyor-error-class"] == "TransientDatabaseError"
    assert properties.headers["x-conveyor-first-failure-at"] < properties.headers["x-conveyor-last-failure-at"]
    assert orders_decided(settings.database_url) == 0
    assert scalar(settings.database_url, "SELECT reserved FROM stock_levels WHERE sku = 'A'") == 0
