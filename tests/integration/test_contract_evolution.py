"""Contract evolution through a real order worker (RabbitMQ + PostgreSQL): an order carrying a
field Conveyor does not know yet is reserved and the field counted; strict contracts
dead-letter it as before; a major version Conveyor does not read is dead-lettered with why."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from tests.support.workers import (
    order_body,
    publish_orders,
    queue_depth,
    running_workers,
    scalar,
    set_stock,
    take_all,
    wait_until,
)

QUEUE, DLQ = "conveyor.orders", "conveyor.orders.dlq"


def unknown_fields_counted(field: str) -> float:
    return REGISTRY.get_sample_value("conveyor_unknown_fields_total",
                                     {"type": "order.created", "field": field}) or 0.0


def reserved(database_url: str, order_id: str) -> bool:
    return scalar(database_url, "SELECT count(*) FROM orders WHERE order_id = %s AND status = 'RESERVED'",
                  (order_id,)) == 1


def test_an_order_with_an_unknown_field_is_reserved_and_the_field_counted(settings):
    # Given stock, a running order worker, and an order from a producer a version ahead
    set_stock(settings.database_url, "A", 5)
    body = {**order_body(("A", 2)), "coupon": "SPRING-10"}
    before = unknown_fields_counted("coupon")
    with running_workers(settings, ["orders"]):
        # When it is published
        publish_orders(settings.amqp_url, [body])

        # Then it is reserved, nothing is dead-lettered, and the ignored field was counted
        wait_until(lambda: reserved(settings.database_url, body["order_id"]), message="order reserved")
        wait_until(lambda: queue_depth(settings.amqp_url, QUEUE) == 0, message="queue drained")
    assert queue_depth(settings.amqp_url, DLQ) == 0
    assert unknown_fields_counted("coupon") - before == 1
    assert scalar(settings.database_url, "SELECT reserved FROM stock_levels WHERE sku = 'A'") == 2


@pytest.mark.settings(strict_contracts=True)
def test_with_strict_contracts_the_same_order_is_dead_lettered(settings):
    # Given stock and a worker with strict contracts
    set_stock(settings.database_url, "A", 5)
    body = {**order_body(("A", 2)), "coupon": "SPRING-10"}
    with running_workers(settings, ["orders"]):
        # When the order with the unknown field is published
        publish_orders(settings.amqp_url, [body])

        # Then it is dead-lettered as a schema violation naming the field, and nothing reserved
        [(_, properties, _)] = take_all(settings.amqp_url, DLQ, expect=1)
    assert properties.headers["x-conveyor-error-code"] == "schema_violation"
    assert "coupon: Extra inputs are not permitted" in properties.headers["x-conveyor-error-message"]
    assert scalar(settings.database_url, "SELECT count(*) FROM orders") == 0


def test_an_order_of_a_major_version_conveyor_does_not_read_is_dead_lettered_with_the_reason(settings):
    # Given stock and a running order worker
    set_stock(settings.database_url, "A", 5)
    body = {**order_body(("A", 2)), "schema_version": 2}
    with running_workers(settings, ["orders"]):
        # When an order.created of major version 2 is published
        publish_orders(settings.amqp_url, [body])

        # Then it is dead-lettered at once with its own code and a reason that says why
        [(_, properties, _)] = take_all(settings.amqp_url, DLQ, expect=1)
    assert properties.headers["x-conveyor-error-code"] == "unsupported_schema_version"
    assert properties.headers["x-conveyor-error-message"] == (
        "unsupported_schema_version: order.created version 2, this Conveyor reads 1")
    assert properties.headers["x-conveyor-attempts"] == 1
    assert scalar(settings.database_url, "SELECT count(*) FROM orders") == 0
