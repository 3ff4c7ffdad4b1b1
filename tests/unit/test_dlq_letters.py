"""Reading a dead letter: Conveyor's failure headers, the broker's x-death fallback, odd bodies."""

from __future__ import annotations

from datetime import datetime, timezone

from pika.spec import BasicProperties

from conveyor.workers.dlq.letters import letter_key, order_id_of, read_letter
from tests.support.dlq import dead_letter_properties, lock_timeout

WHEN = datetime(2026, 11, 25, 10, tzinfo=timezone.utc)


def test_conveyor_failure_headers_are_read():
    body = b'{"order_id": "6f1c0c5e-8d1e-4a53-9a55-0e7f2d0b9a11"}'
    properties = dead_letter_properties(body, lock_timeout(), attempts=3, failed_at=WHEN, message_id="m-1")

    letter = read_letter(properties, body, position=2)

    assert (letter.message_id, letter.position) == ("m-1", 2)
    assert letter.order_id == "6f1c0c5e-8d1e-4a53-9a55-0e7f2d0b9a11"
    assert (letter.exchange, letter.routing_key) == ("orders", "order.created")
    assert letter.original_queue == "conveyor.orders"
    assert (letter.error_class, letter.error_code, letter.attempts) == ("TransientDatabaseError", "55P03", 3)
    assert letter.failed_at == letter.first_failed_at == WHEN
    assert letter.where.startswith("dlq.py:") and letter.where.endswith(" raised")
    assert letter.routable


def test_a_message_the_broker_dead_lettered_is_read_from_x_death():
    death = {"queue": "conveyor.orders", "reason": "delivery_limit", "count": 1, "exchange": "orders",
             "routing-keys": ["order.created"], "time": WHEN}
    properties = BasicProperties(message_id="m-2", headers={"x-death": [death]})

    letter = read_letter(properties, b"{}", position=0)

    assert (letter.error_class, letter.error_code, letter.reason) == ("BrokerDeadLetter", "delivery_limit",
                                                                      "broker: delivery_limit")
    assert (letter.exchange, letter.routing_key, letter.failed_at) == ("orders", "order.created", WHEN)


def test_a_retry_tier_expiry_in_x_death_does_not_hide_conveyors_headers():
    body = b"{}"
    properties = dead_letter_properties(body, lock_timeout(), failed_at=WHEN)
    properties.headers["x-death"] = [{"queue": "conveyor.orders.retry.1s", "reason": "expired", "count": 2}]

    assert read_letter(properties, body, position=0).error_class == "TransientDatabaseError"


def test_a_letter_without_headers_is_still_listed():
    letter = read_letter(BasicProperties(), b"\xff", position=0)

    assert (letter.message_id, letter.error_class, letter.failed_at, letter.routable) == (None, "unknown", None, False)


def test_order_ids_come_only_from_json_objects():
    assert order_id_of(b'{"order_id": "abc"}') == "abc"
    assert order_id_of(b'[1]') is None and order_id_of(b"\xff") is None and order_id_of(b"{") is None
    assert order_id_of(b'{"order_id": 5}') is None


def test_the_key_tells_copies_of_one_failure_apart_from_a_later_failure():
    body = b"{}"
    first = dead_letter_properties(body, lock_timeout(), message_id="m", failed_at=WHEN)
    same = dead_letter_properties(body, lock_timeout(), message_id="m", failed_at=WHEN)
    later = dead_letter_properties(body, lock_timeout(), message_id="m", failed_at=WHEN.replace(hour=11))

    assert letter_key(first, body) == letter_key(same, body) != letter_key(later, body)
    assert letter_key(first, body) != letter_key(first, b"{ }")
