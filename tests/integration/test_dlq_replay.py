"""`conveyor dlq replay` on real RabbitMQ and PostgreSQL with the real order worker: a fixed
cause is processed once, an already-processed message has no second effect (and the dry run
says so), the replayed copy starts a fresh attempt with its body and id unchanged, the canary
stops a group that still fails, and a SIGKILL midway loses nothing."""

from __future__ import annotations

import json
import signal
import uuid

import pika
import pytest

from tests.support.dlq import (
    DLQ,
    QUEUE,
    dead_letter_properties,
    dlq,
    dlq_process,
    drain,
    hold_stock_lock,
    lock_timeout,
    put_in_dlq,
)
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

pytestmark = pytest.mark.settings(max_attempts=2)


def count(settings, query: str) -> int:
    return scalar(settings.database_url, query)


def timed_out_order(*, sku: str = "A", message_id: str | None = None) -> tuple[bytes, object]:
    body = json.dumps(order_body((sku, 1))).encode()
    return body, dead_letter_properties(body, lock_timeout(), attempts=2, message_id=message_id)


def test_a_message_whose_cause_was_fixed_is_processed_once_after_replay(settings):
    # Given an order dead-lettered by the worker because its SKU stayed locked
    set_stock(settings.database_url, "A", 5)
    blocker = hold_stock_lock(settings.database_url, "A")
    with running_workers(settings, ["orders"]):
        [message_id] = publish_orders(settings.amqp_url, [order_body(("A", 2))])
        wait_until(lambda: queue_depth(settings.amqp_url, DLQ) == 1, timeout=30, message="dead-lettered")
        # When the cause is fixed (the lock released) and the operator replays it
        blocker.close()
        plan = dlq(settings, "replay", "orders", "--id", message_id, "--dry-run", "--json")
        replay = dlq(settings, "replay", "orders", "--id", message_id, "--json")
        wait_until(lambda: count(settings, "SELECT count(*) FROM orders") == 1, message="order decided")

    # Then the dry run planned it, and the order was reserved exactly once
    assert plan.code == 0 and [p["verdict"] for p in plan.json["plan"]] == ["replay"]
    assert replay.code == 0, replay.err
    assert replay.json["replayed"] == [message_id] and replay.json["outcome"] == "ok"
    assert count(settings, "SELECT reserved FROM stock_levels WHERE sku = 'A'") == 2
    assert count(settings, "SELECT count(*) FROM inbox") == 1
    assert queue_depth(settings.amqp_url, DLQ) == 0
    # And the audit trail says who replayed what, where to
    [run] = dlq(settings, "audit", "--json").json
    assert (run["action"], run["operator"], run["outcome"], run["succeeded"]) == ("replay", "ops-alice", "ok", 1)
    [row] = dlq(settings, "audit", "--run", run["run_id"], "--json").json["messages"]
    assert (row["message_id"], row["outcome"], row["target"]) == (message_id, "replayed", "orders -> order.created")


def test_replaying_an_already_processed_message_has_no_second_effect_and_dry_run_says_so(settings):
    # Given a processed order whose message also sits in the DLQ (a crash between confirm and ack)
    set_stock(settings.database_url, "A", 5)
    body = order_body(("A", 2))
    with running_workers(settings, ["orders"]):
        [message_id] = publish_orders(settings.amqp_url, [body])
        wait_until(lambda: count(settings, "SELECT count(*) FROM orders") == 1)
    raw = json.dumps(body).encode()
    put_in_dlq(settings.amqp_url, [(raw, dead_letter_properties(raw, lock_timeout(), message_id=message_id))])

    # When the operator asks first, then replays everything
    plan = dlq(settings, "replay", "orders", "--all", "--dry-run")
    depth_after_dry_run = queue_depth(settings.amqp_url, DLQ)
    with running_workers(settings, ["orders"]):
        replay = dlq(settings, "replay", "orders", "--all")
        wait_until(lambda: queue_depth(settings.amqp_url, QUEUE) == 0, message="replayed copy consumed")

    # Then the dry run said "already processed" and changed nothing
    assert plan.code == 0 and "already processed" in plan.out and depth_after_dry_run == 1
    # And the replay had no second effect
    assert replay.code == 0, replay.err
    assert count(settings, "SELECT reserved FROM stock_levels WHERE sku = 'A'") == 2
    assert count(settings, "SELECT count(*) FROM orders") == 1
    assert queue_depth(settings.amqp_url, DLQ) == 0


def test_the_replayed_copy_keeps_body_and_id_and_starts_a_fresh_attempt(settings):
    # Given a dead letter with three failed attempts, and a queue to replay into
    body, properties = timed_out_order()
    put_in_dlq(settings.amqp_url, [(body, properties)])
    target = f"test-replay-{uuid.uuid4().hex[:8]}"
    _declare_queue(settings.amqp_url, target)

    result = dlq(settings, "replay", "orders", "--all", "--to-queue", target, "--json")

    assert result.code == 0, result.err
    [(copy, copy_body)] = drain(settings.amqp_url, target)
    headers = copy.headers
    assert copy_body == body and copy.message_id == properties.message_id and copy.app_id == "shop"
    assert "x-conveyor-attempts" not in headers and "x-conveyor-error-code" not in headers
    assert headers["x-conveyor-previous-attempts"] == 2
    assert headers["x-conveyor-previous-error-code"] == "55P03"
    assert headers["x-conveyor-original-routing-key"] == "order.created"
    assert headers["x-conveyor-replayed-by"] == "ops-alice"
    assert headers["x-conveyor-replay-id"] == result.json["run_id"]
    assert queue_depth(settings.amqp_url, DLQ) == 0


def test_the_canary_stops_replaying_a_group_that_still_fails(settings):
    # Given ten messages the worker dead-lettered for the same schema violation
    bad = {"order_id": "6f1c0c5e-8d1e-4a53-9a55-0e7f2d0b9a11", "customer_id": "c", "currency": "EUR",
           "items": [], "placed_at": "2026-11-25T10:00:00Z"}
    with running_workers(settings, ["orders"]):
        publish(settings.amqp_url, [(json.dumps(bad).encode(), {}) for _ in range(10)])
        wait_until(lambda: queue_depth(settings.amqp_url, DLQ) == 10, message="dead-lettered")
        [group] = dlq(settings, "groups", "orders", "--json").json["groups"]

        # When the operator replays the group with a canary of 2, slowly
        result = dlq(settings, "replay", "orders", "--group", group["fingerprint"][:8], "--rate", "5/s",
                     "--stop-after-failures", "2", "--json")
        wait_until(lambda: queue_depth(settings.amqp_url, QUEUE) == 0, message="work queue drained")

    # Then it stopped early, and every message is back in the DLQ (failed again or never replayed)
    assert result.code == 1, result.err
    report = result.json
    assert report["stopped"].startswith("canary") and report["outcome"] == "stopped"
    assert len(report["failed_again"]) >= 2 and len(report["replayed"]) < 10
    wait_until(lambda: queue_depth(settings.amqp_url, DLQ) == 10, message="all ten back in the DLQ")
    [run] = dlq(settings, "audit", "--json").json
    assert run["outcome"] == "stopped" and run["succeeded"] == len(report["replayed"])


def test_a_replay_killed_midway_loses_nothing_and_a_second_run_finishes_it(settings):
    # Given 60 dead-lettered orders of one unit each, and no worker running yet
    set_stock(settings.database_url, "A", 100)
    letters = [timed_out_order() for _ in range(60)]
    put_in_dlq(settings.amqp_url, letters)

    # When a replay is SIGKILLed after some of them were published
    process = dlq_process(settings, "replay", "orders", "--all", "--rate", "40/s")
    try:
        wait_until(lambda: queue_depth(settings.amqp_url, QUEUE) >= 15, timeout=30, interval=0.02,
                   message="replay under way")
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    # Then every message is in the DLQ or the work queue (at worst in both)
    wait_until(lambda: queue_depth(settings.amqp_url, DLQ) + queue_depth(settings.amqp_url, QUEUE) >= 60,
               message="messages held by the killed replay returned")
    # And a second replay plus the worker decide each order exactly once
    with running_workers(settings, ["orders"]):
        again = dlq(settings, "replay", "orders", "--all")
        wait_until(lambda: count(settings, "SELECT count(*) FROM orders") == 60, message="60 orders decided")
        wait_until(lambda: queue_depth(settings.amqp_url, QUEUE) == 0, message="duplicates absorbed")
    assert again.code == 0, again.err
    assert count(settings, "SELECT reserved FROM stock_levels WHERE sku = 'A'") == 60
    assert queue_depth(settings.amqp_url, DLQ) == 0
    killed, finished = sorted(dlq(settings, "audit", "--json").json, key=lambda r: r["started_at"])
    assert killed["outcome"] == "running"   # never closed: the trace of an interrupted run
    assert finished["outcome"] == "ok"
    recorded = count(settings, "SELECT count(*) FROM dlq_audit_messages WHERE outcome = 'replayed'")
    assert recorded >= 60


def test_replaying_ids_that_are_not_there_exits_4(settings):
    put_in_dlq(settings.amqp_url, [timed_out_order()])

    result = dlq(settings, "replay", "orders", "--id", "no-such-id", "--json")

    assert result.code == 4 and result.json["missing_ids"] == ["no-such-id"]
    assert queue_depth(settings.amqp_url, DLQ) == 1


def _declare_queue(amqp_url: str, name: str) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        connection.channel().queue_declare(name, durable=True)
    finally:
        connection.close()
