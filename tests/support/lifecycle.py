"""Building and sending the lifecycle messages of an order, and reading its final state."""

from __future__ import annotations

import json
import uuid

import pika
import psycopg

ROUTES = {
    "order.created": "orders", "order.cancelled": "orders",
    "payment.authorized": "payments", "payment.failed": "payments",
    "shipment.dispatched": "shipments", "shipment.delivered": "shipments",
}


def message(routing_key: str, body: dict, *, message_id: str | None = None) -> tuple[str, bytes, str]:
    return routing_key, json.dumps(body).encode(), message_id or str(uuid.uuid4())


def authorized(order: dict, *, amount: str | None = None, payment_id: str | None = None):
    total = sum(int(i["quantity"]) * float(i["unit_price"]) for i in order["items"])
    return message("payment.authorized", {
        "order_id": order["order_id"], "payment_id": payment_id or f"pay-{uuid.uuid4().hex[:8]}",
        "amount": amount or f"{total:.2f}", "currency": order["currency"]})


def failed(order: dict, *, payment_id: str | None = None):
    return message("payment.failed", {"order_id": order["order_id"],
                                      "payment_id": payment_id or f"pay-{uuid.uuid4().hex[:8]}",
                                      "reason": "card declined"})


def dispatched(order: dict, *, shipment_id: str | None = None):
    return message("shipment.dispatched", {"order_id": order["order_id"],
                                           "shipment_id": shipment_id or f"ship-{order['order_id']}",
                                           "carrier": "DHL", "tracking_number": "TRACK-1"})


def delivered(order: dict, *, shipment_id: str | None = None):
    return message("shipment.delivered", {"order_id": order["order_id"],
                                          "shipment_id": shipment_id or f"ship-{order['order_id']}"})


def cancel(order: dict, *, reason: str = "customer changed their mind"):
    return message("order.cancelled", {"order_id": order["order_id"], "reason": reason})


def created(order: dict):
    return message("order.created", order)


def send(amqp_url: str, messages: list[tuple[str, bytes, str]]) -> None:
    """Publish each (routing key, body, message id) to its exchange, in order, confirmed."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        for routing_key, body, message_id in messages:
            properties = pika.BasicProperties(message_id=message_id, content_type="application/json",
                                              type=routing_key, delivery_mode=2)
            channel.basic_publish(ROUTES[routing_key], routing_key, body, properties, mandatory=True)
    finally:
        connection.close()


def statuses(database_url: str) -> dict[str, str]:
    with psycopg.connect(database_url) as conn:
        return {str(o): s for o, s in conn.execute("SELECT order_id, status FROM orders")}


def stock_of(database_url: str, sku: str) -> tuple[int, int]:
    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT on_hand, reserved FROM stock_levels WHERE sku = %s", (sku,)).fetchone()


def reconcile(database_url: str) -> dict[str, list]:
    from conveyor.db.reconcile import run_checks

    with psycopg.connect(database_url) as conn:
        return {name: rows for name, rows in run_checks(conn).items() if rows}
