"""An order's whole life on real RabbitMQ and PostgreSQL: payment, shipping, cancellation,
expiry, refusals, duplicates and out-of-order delivery. Stock must always reconcile."""

from __future__ import annotations

import json
import random

import pytest

from tests.support import lifecycle as life
from tests.support.workers import (
    event_tap,
    order_body,
    queue_depth,
    running_workers,
    scalar,
    set_stock,
    settings_for,
    take_all,
    wait_until,
)

ALL_WORKERS = ["orders", "payments", "shipments", "relay"]


# Every test that uses `settings` runs once more through PgBouncer (transaction pooling).
pytestmark = [pytest.mark.settings(max_attempts=30, batch_size=10), pytest.mark.also_through_pgbouncer]


def wait_for_status(settings, order: dict, status: str) -> None:
    wait_until(lambda: life.statuses(settings.database_url).get(order["order_id"]) == status,
               timeout=30, message=f"order {order['order_id']} {status}")


def test_reserved_paid_shipped_delivered_commits_the_stock(settings):
    set_stock(settings.database_url, "A", 10)
    order = order_body(("A", 3))
    with event_tap(settings.amqp_url) as tap, running_workers(settings, ALL_WORKERS):
        life.send(settings.amqp_url, [life.created(order)])
        wait_for_status(settings, order, "RESERVED")
        life.send(settings.amqp_url, [life.authorized(order)])
        wait_for_status(settings, order, "PAID")
        life.send(settings.amqp_url, [life.dispatched(order)])
        wait_for_status(settings, order, "SHIPPED")
        assert life.stock_of(settings.database_url, "A") == (7, 0)
        life.send(settings.amqp_url, [life.delivered(order)])
        wait_for_status(settings, order, "DELIVERED")
        events = take_all(settings.amqp_url, tap, expect=4)

    assert [m.routing_key for m, _, _ in events] == ["order.reserved", "order.paid", "order.shipped",
                                                     "order.delivered"]
    assert life.stock_of(settings.database_url, "A") == (7, 0)
    assert life.reconcile(settings.database_url) == {}
    assert scalar(settings.database_url, "SELECT count(*) FROM order_transitions") == 3


@pytest.mark.parametrize("ending, status, routing_key", [
    (life.failed, "CANCELLED", "order.cancelled"),
    (life.cancel, "CANCELLED", "order.cancelled"),
])
def test_a_failed_payment_or_a_cancellation_gives_the_stock_back(settings, ending, status, routing_key):
    set_stock(settings.database_url, "A", 10)
    order = order_body(("A", 4))
    with event_tap(settings.amqp_url, binding=routing_key) as tap, running_workers(settings, ALL_WORKERS):
        life.send(settings.amqp_url, [life.created(order)])
        wait_for_status(settings, order, "RESERVED")
        assert life.stock_of(settings.database_url, "A") == (10, 4)

        life.send(settings.amqp_url, [ending(order)])
        wait_for_status(settings, order, status)
        [(_, _, body)] = take_all(settings.amqp_url, tap, expect=1)

    assert life.stock_of(settings.database_url, "A") == (10, 0)
    assert json.loads(body)["previous_status"] == "RESERVED"
    assert life.reconcile(settings.database_url) == {}


def test_a_paid_order_can_still_be_cancelled_before_dispatch(settings):
    set_stock(settings.database_url, "A", 10)
    order = order_body(("A", 2))
    with running_workers(settings, ALL_WORKERS):
        life.send(settings.amqp_url, [life.created(order), life.authorized(order)])
        wait_for_status(settings, order, "PAID")
        life.send(settings.amqp_url, [life.cancel(order)])
        wait_for_status(settings, order, "CANCELLED")
    assert life.stock_of(settings.database_url, "A") == (10, 0)


def test_a_cancellation_after_dispatch_changes_nothing_and_says_why(settings):
    set_stock(settings.database_url, "A", 10)
    order = order_body(("A", 2))
    with event_tap(settings.amqp_url, binding="order.cancel_refused") as tap, \
            running_workers(settings, ALL_WORKERS):
        life.send(settings.amqp_url, [life.created(order), life.authorized(order), life.dispatched(order)])
        wait_for_status(settings, order, "SHIPPED")
        life.send(settings.amqp_url, [life.cancel(order)])
        [(_, _, body)] = take_all(settings.amqp_url, tap, expect=1)

    assert json.loads(body)["reason"] == "already dispatched"
    assert life.statuses(settings.database_url)[order["order_id"]] == "SHIPPED"
    assert life.stock_of(settings.database_url, "A") == (8, 0)


def test_a_payment_that_does_not_match_the_total_is_dead_lettered_and_changes_nothing(settings):
    set_stock(settings.database_url, "A", 10)
    order = order_body(("A", 2), price="10.00")
    with running_workers(settings, ALL_WORKERS):
        life.send(settings.amqp_url, [life.created(order)])
        wait_for_status(settings, order, "RESERVED")
        life.send(settings.amqp_url, [life.authorized(order, amount="15.00")])
        [(_, properties, _)] = take_all(settings.amqp_url, "conveyor.payments.dlq", expect=1)

    reason = properties.headers["x-conveyor-error-message"]
    assert "15.00 EUR does not match" in reason and "total 20 EUR" in reason
    assert properties.headers["x-conveyor-attempts"] == 1
    assert life.statuses(settings.database_url)[order["order_id"]] == "RESERVED"
    assert scalar(settings.database_url, "SELECT count(*) FROM payments") == 0


def test_a_payment_for_an_order_that_never_comes_is_retried_then_dead_lettered(database_url, fresh_amqp_url):
    settings = settings_for(database_url, fresh_amqp_url, max_attempts=3)
    order = order_body(("A", 1))
    with running_workers(settings, ["payments"]):
        life.send(settings.amqp_url, [life.authorized(order)])
        [(_, properties, _)] = take_all(settings.amqp_url, "conveyor.payments.dlq", expect=1, timeout=30)

    assert properties.headers["x-conveyor-attempts"] == 3
    assert "is not known yet" in properties.headers["x-conveyor-error-message"]


def test_the_same_payment_twice_under_new_message_ids_has_one_effect(settings):
    set_stock(settings.database_url, "A", 10)
    order = order_body(("A", 2))
    payment = life.authorized(order, payment_id="pay-1")
    again = life.message(payment[0], json.loads(payment[1]))  # same payment id, new message id
    with running_workers(settings, ALL_WORKERS):
        life.send(settings.amqp_url, [life.created(order), payment, payment, again])
        wait_for_status(settings, order, "PAID")
        wait_until(lambda: queue_depth(settings.amqp_url, "conveyor.payments") == 0)
    assert scalar(settings.database_url, "SELECT count(*) FROM payments") == 1
    assert scalar(settings.database_url, "SELECT count(*) FROM order_transitions") == 1
    assert queue_depth(settings.amqp_url, "conveyor.payments.dlq") == 0


def test_an_unpaid_order_expires_and_a_late_payment_is_refused(database_url, fresh_amqp_url):
    settings = settings_for(database_url, fresh_amqp_url, reservation_ttl=0.5)
    set_stock(database_url, "A", 10)
    order = order_body(("A", 3))
    with event_tap(settings.amqp_url, binding="order.*") as tap, \
            running_workers(settings, ALL_WORKERS + ["expirer"]):
        life.send(settings.amqp_url, [life.created(order)])
        wait_for_status(settings, order, "EXPIRED")
        assert life.stock_of(database_url, "A") == (10, 0)
        life.send(settings.amqp_url, [life.authorized(order)])
        events = take_all(settings.amqp_url, tap, expect=3)

    assert [m.routing_key for m, _, _ in events] == ["order.reserved", "order.expired", "order.payment_refused"]
    refused = json.loads(events[2][2])
    assert refused["reason"] == "reservation expired before payment" and refused["amount"] == "29.97"
    assert life.statuses(database_url)[order["order_id"]] == "EXPIRED"
    assert life.reconcile(database_url) == {}


SCENARIOS = {
    "DELIVERED": lambda o: [life.authorized(o), life.dispatched(o), life.delivered(o)],
    "SHIPPED": lambda o: [life.authorized(o), life.dispatched(o)],
    "PAID": lambda o: [life.authorized(o)],
    "CANCELLED": lambda o: [life.failed(o)],
    "RESERVED": lambda o: [],
}


@pytest.mark.slow
def test_shuffled_and_duplicated_messages_end_every_order_where_its_messages_imply(settings):
    # Given 500 orders, each with the messages of one scenario, all published in random
    # order and each message twice (same message id)
    rng = random.Random(42)
    for i in range(20):
        set_stock(settings.database_url, f"S{i}", 10_000)
    expected, messages = {}, []
    for n in range(500):
        order = order_body((f"S{n % 20}", 1 + n % 3), (f"S{(n + 3) % 20}", 1))
        final = rng.choice(list(SCENARIOS))
        expected[order["order_id"]] = final
        messages += [life.created(order), *SCENARIOS[final](order)] * 2
    rng.shuffle(messages)

    # When the workers process them
    with running_workers(settings, ALL_WORKERS):
        life.send(settings.amqp_url, messages)
        wait_until(lambda: life.statuses(settings.database_url) == expected, timeout=60,
                   interval=0.5, message="every order in its final state")

    # Then stock reconciles and nothing was dead-lettered
    assert life.reconcile(settings.database_url) == {}
    for queue in ("conveyor.orders.dlq", "conveyor.payments.dlq", "conveyor.shipments.dlq"):
        assert queue_depth(settings.amqp_url, queue) == 0
    shipped = [o for o, s in expected.items() if s in ("SHIPPED", "DELIVERED")]
    assert scalar(settings.database_url, "SELECT count(*) FROM reservations WHERE state = 'COMMITTED'") == \
        scalar(settings.database_url, "SELECT count(*) FROM reservations WHERE order_id = ANY(%s::uuid[])",
               (shipped,))
