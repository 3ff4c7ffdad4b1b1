"""`conveyor dlq stats|list|groups|show|export` on real RabbitMQ and PostgreSQL: filters and
groups on a DLQ with mixed failures (some dead-lettered by the real order worker), and
proof that reading leaves the queue's content and order exactly as they were."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone

from conveyor.workers.dlq.reader import DlqSession
from tests.support.dlq import DLQ, conveyor_headers, dead_letter_properties, dlq, drain, lock_timeout, put_in_dlq
from tests.support.workers import (
    order_body,
    publish,
    publish_orders,
    queue_depth,
    running_workers,
    scalar,
    set_stock,
    wait_until,
)

NOW = datetime.now(timezone.utc)
EMPTY_ITEMS = {"order_id": "6f1c0c5e-8d1e-4a53-9a55-0e7f2d0b9a11", "customer_id": "c", "currency": "EUR",
               "items": [], "placed_at": "2026-11-25T10:00:00Z"}


def mixed_failures(settings) -> None:
    """7 letters from the real worker (4 schema, 2 JSON, 1 encoding), then 4 lock timeouts of known ages."""
    with running_workers(settings, ["orders"]):
        schema = [(json.dumps({**EMPTY_ITEMS, "order_id": str(uuid.uuid4())}).encode(), {}) for _ in range(4)]
        publish(settings.amqp_url, schema + [(b"{not json", {}), (b"{also not", {}), (b"\xff\xfe order", {})])
        wait_until(lambda: queue_depth(settings.amqp_url, DLQ) == 7, message="worker dead-lettered 7")
    ages = [("order.created", timedelta(days=2)), ("order.created", timedelta(days=1)),
            ("order.created", timedelta(hours=1)), ("order.amended", timedelta(hours=3))]
    put_in_dlq(settings.amqp_url, [_lock_timeout_letter(rk, NOW - age) for rk, age in ages])


def _lock_timeout_letter(routing_key: str, failed_at: datetime):
    body = json.dumps(order_body(("A", 1))).encode()
    return body, dead_letter_properties(body, lock_timeout(), attempts=3, failed_at=failed_at,
                                        routing_key=routing_key)


def listed(settings, *args: str) -> list[dict]:
    result = dlq(settings, "list", "orders", "--json", *args)
    assert result.code == 0, result.err
    return result.json["letters"]


def test_filters_pick_the_right_letters_from_a_dlq_with_mixed_failures(settings):
    # Given a DLQ with invalid messages from the worker and lock timeouts of different ages
    mixed_failures(settings)

    # When the operator filters, Then each filter keeps exactly its letters
    assert len(listed(settings, "--error-class", "InvalidMessage")) == 7
    assert len(listed(settings, "--reason", "schema_violation")) == 4
    assert len(listed(settings, "--error-class", "transientdatabaseerror", "--since", "36h")) == 3
    assert len(listed(settings, "--error-class", "TransientDatabaseError", "--until", "12h")) == 2
    [amended] = listed(settings, "--routing-key", "order.amended")
    assert (amended["attempts"], amended["error_code"]) == (3, "55P03")
    limited = dlq(settings, "list", "conveyor.orders.dlq", "--limit", "2", "--json").json
    assert (len(limited["letters"]), limited["matching"], limited["depth"]) == (2, 11, 11)


def test_groups_fold_one_cause_into_one_row_and_stats_count_per_queue(settings):
    mixed_failures(settings)

    groups = dlq(settings, "groups", "orders", "--json").json["groups"]
    stats = dlq(settings, "stats", "--json").json

    # Then one group per cause, largest first, whatever the order ids and ages
    assert [g["count"] for g in groups] == [4, 4, 2, 1]
    by_message = {g["message"].split(":")[0]: g for g in groups}
    assert sorted(by_message) == ["<n>P<n>", "bad_encoding", "not_json", "schema_violation"]
    assert by_message["schema_violation"]["count"] == 4
    timeouts = by_message["<n>P<n>"]
    assert timeouts["error_class"] == "TransientDatabaseError" and timeouts["first_seen"] < timeouts["last_seen"]
    assert timeouts["routing_keys"] == ["order.amended", "order.created"]
    # And the stats see 11 dead letters for the order queue, the oldest two days old
    [orders] = [row for row in stats if row["queue"] == "conveyor.orders"]
    assert orders["dead_letters"] == 11
    assert datetime.fromisoformat(orders["oldest_failure"]) < NOW - timedelta(days=1)
    text = dlq(settings, "groups", "orders")
    assert text.code == 0 and "4 group(s), 11 dead letter(s)" in text.out


def test_reading_commands_leave_the_queue_content_and_order_intact(settings, tmp_path):
    # Given 30 dead letters in a known order, one with a non-UTF-8 body
    letters = [_lock_timeout_letter("order.created", NOW - timedelta(minutes=i)) for i in range(30)]
    letters[7] = (b"\x00\xff binary", letters[7][1])
    put_in_dlq(settings.amqp_url, letters)

    # When every reading command looks at it (twice for list)
    first = listed(settings, "--limit", "0")
    for args in (["list", "orders"], ["groups", "orders"], ["stats"], ["export", "orders", str(tmp_path / "x")],
                 ["show", "orders", letters[12][1].message_id]):
        assert dlq(settings, *args).code == 0, args
    second = listed(settings, "--limit", "0")

    # Then list saw them in publish order, both times
    expected_ids = [properties.message_id for _, properties in letters]
    assert [row["message_id"] for row in first] == [row["message_id"] for row in second] == expected_ids
    # And the queue still holds every message, in order, body and failure headers unchanged
    remaining = drain(settings.amqp_url, DLQ)
    assert [p.message_id for p, _ in remaining] == expected_ids
    assert [body for _, body in remaining] == [body for body, _ in letters]
    assert [conveyor_headers(p) for p, _ in remaining] == [conveyor_headers(p) for _, p in letters]


def test_show_prints_the_letter_and_what_conveyor_knows_about_its_order(settings):
    # Given an order that was processed, and a stray DLQ copy of the same message
    set_stock(settings.database_url, "A", 5)
    body = order_body(("A", 2))
    with running_workers(settings, ["orders"]):
        [message_id] = publish_orders(settings.amqp_url, [body])
        wait_until(lambda: scalar(settings.database_url, "SELECT count(*) FROM orders") == 1)
    raw = json.dumps(body).encode()
    put_in_dlq(settings.amqp_url, [(raw, dead_letter_properties(raw, lock_timeout(), message_id=message_id))])

    shown = dlq(settings, "show", "orders", message_id, "--json")
    text = dlq(settings, "show", "orders", message_id)

    assert shown.code == 0, shown.err
    data = shown.json
    assert data["body_json"] == body and data["copies"] == 1
    assert data["properties"]["headers"]["x-conveyor-error-code"] == "55P03"
    assert data["conveyor"]["processed"] is True
    assert data["conveyor"]["order"]["status"] == "RESERVED"
    assert "processed: a replay would have no effect" in text.out and "RESERVED" in text.out


def test_unknown_queue_or_message_exits_4_and_a_busy_dlq_exits_1(settings):
    put_in_dlq(settings.amqp_url, [_lock_timeout_letter("order.created", NOW)])

    missing_queue = dlq(settings, "list", "nope")
    missing_message = dlq(settings, "show", "orders", "no-such-id", "--json")
    with DlqSession(settings, DLQ):   # another console holds the DLQ
        busy = dlq(settings, "list", "orders")

    assert missing_queue.code == 4 and "nope.dlq" in missing_queue.err
    assert missing_message.code == 4 and missing_message.json["error"] == "not_found"
    assert busy.code == 1 and "another `conveyor dlq` command" in busy.err
    assert queue_depth(settings.amqp_url, DLQ) == 1
