"""Causation and trace context on real RabbitMQ and PostgreSQL (V014): every event Conveyor
publishes names the consumed message that caused it (`x-conveyor-causation-id`) and passes on
its W3C `traceparent` / `tracestate`; order events, partner stock changes, and the retry and
DLQ copies alike."""

from __future__ import annotations

import json
import uuid

import pika

from tests.support.lifecycle import ROUTES, authorized
from tests.support.workers import (
    event_tap,
    order_body,
    queue_depth,
    running_workers,
    set_stock,
    take_all,
    wait_until,
)

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
TRACESTATE = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"


def publish(amqp_url: str, routing_key: str, body: dict, *, message_id: str, headers: dict | None = None) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        properties = pika.BasicProperties(message_id=message_id, content_type="application/json", type=routing_key,
                                          delivery_mode=2, headers=headers)
        channel.basic_publish(ROUTES[routing_key], routing_key, json.dumps(body).encode(), properties,
                              mandatory=True)
    finally:
        connection.close()


def test_order_and_stock_events_name_their_cause_and_carry_its_trace(settings):
    set_stock(settings.database_url, "A", 5)
    order = order_body(("A", 2))
    created_id, paid_id = f"created-{uuid.uuid4()}", f"paid-{uuid.uuid4()}"
    with event_tap(settings.amqp_url) as orders_tap, \
            event_tap(settings.amqp_url, exchange="inventory") as stock_tap, \
            running_workers(settings, ["orders", "payments", "relay"]):
        # Given set_stock's own change reached the partners first (no cause: an operator's)
        [(_, operator_change, _)] = take_all(settings.amqp_url, stock_tap, expect=1)
        # When a shop publishes order.created with a trace context, then its payment comes
        publish(settings.amqp_url, "order.created", order, message_id=created_id,
                headers={"traceparent": TRACEPARENT, "tracestate": TRACESTATE})
        [(_, reserved, _)] = take_all(settings.amqp_url, orders_tap, expect=1)
        [(_, stock_changed, _)] = take_all(settings.amqp_url, stock_tap, expect=1)
        _, body, _ = authorized(order)
        publish(settings.amqp_url, "payment.authorized", json.loads(body), message_id=paid_id)
        [(_, paid, _)] = take_all(settings.amqp_url, orders_tap, expect=1)

    assert reserved.headers == {"x-conveyor-causation-id": created_id, "traceparent": TRACEPARENT,
                                "tracestate": TRACESTATE}
    assert stock_changed.headers == reserved.headers  # the partner's row, written by the stock trigger
    assert paid.type == "order.paid" and paid.headers == {"x-conveyor-causation-id": paid_id}
    assert not operator_change.headers  # nothing consumed caused it


def test_an_invalid_traceparent_is_not_passed_on(settings):
    set_stock(settings.database_url, "A", 5)
    message_id = f"created-{uuid.uuid4()}"
    with event_tap(settings.amqp_url) as tap, running_workers(settings, ["orders", "relay"]):
        publish(settings.amqp_url, "order.created", order_body(("A", 1)), message_id=message_id,
                headers={"traceparent": "00-not-a-trace-01", "tracestate": TRACESTATE})
        [(_, reserved, _)] = take_all(settings.amqp_url, tap, expect=1)
    assert reserved.headers == {"x-conveyor-causation-id": message_id}


def test_a_dead_letter_copy_names_the_message_it_copies_and_keeps_its_trace(settings):
    message_id = f"bad-{uuid.uuid4()}"
    with running_workers(settings, ["orders"]):
        publish(settings.amqp_url, "order.created", {"order_id": "not-an-order"}, message_id=message_id,
                headers={"traceparent": TRACEPARENT})
        wait_until(lambda: queue_depth(settings.amqp_url, "conveyor.orders.dlq") == 1, message="dead-lettered")
        [(_, copy, _)] = take_all(settings.amqp_url, "conveyor.orders.dlq", expect=1)
    assert copy.message_id == message_id
    assert copy.headers["x-conveyor-causation-id"] == message_id
    assert copy.headers["traceparent"] == TRACEPARENT
