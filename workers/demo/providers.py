"""The simulated world around Conveyor: a payment provider, a carrier and a fickle shop.

They react to Conveyor's events like the real ones would: a reserved order is paid (or the
card is declined, or the customer cancels, or nobody pays and it expires), a paid order is
dispatched, a dispatched one delivered. Everything runs on one thread and one connection.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from dataclasses import dataclass, field

import pika

from conveyor.schemas.names import ORDER_EVENTS_EXCHANGE, ORDERS_EXCHANGE, PAYMENTS_EXCHANGE, SHIPMENTS_EXCHANGE

FINAL_EVENTS = {"order.rejected": "REJECTED", "order.delivered": "DELIVERED",
                "order.cancelled": "CANCELLED", "order.expired": "EXPIRED"}


@dataclass(frozen=True)
class Behaviour:
    payment_failure: float = 0.08
    cancellation: float = 0.05
    abandonment: float = 0.04   # never paid: the expirer takes it


@dataclass
class World:
    """Consumes ``order-events`` and answers with payments, shipments and cancellations."""

    amqp_url: str
    behaviour: Behaviour
    rng: random.Random
    totals: dict[str, str]                       # order_id -> "12.34"
    decided_at: dict[str, float] = field(default_factory=dict)   # first outcome event
    final: dict[str, str] = field(default_factory=dict)          # order_id -> final status
    ready: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        threading.Thread(target=self._run, name="demo-world", daemon=True).start()
        if not self.ready.wait(15):
            raise RuntimeError(f"the simulated providers could not subscribe to {ORDER_EVENTS_EXCHANGE}")

    def _run(self) -> None:
        connection = pika.BlockingConnection(pika.URLParameters(self.amqp_url))
        self._channel = connection.channel()
        self._channel.confirm_delivery()
        queue = self._channel.queue_declare("", exclusive=True).method.queue
        self._channel.queue_bind(queue, ORDER_EVENTS_EXCHANGE, routing_key="order.*")
        self._channel.basic_consume(queue, self._on_event, auto_ack=True)
        self.ready.set()
        while not self.stop.is_set():
            connection.process_data_events(time_limit=0.2)
        connection.close()

    def _on_event(self, _channel, method, properties, body) -> None:
        order_id, event = properties.correlation_id, method.routing_key
        if event in ("order.reserved", "order.rejected"):
            self.decided_at.setdefault(order_id, time.monotonic())
        if event in FINAL_EVENTS:
            self.final.setdefault(order_id, FINAL_EVENTS[event])
        reaction = {"order.reserved": self._on_reserved, "order.paid": self._dispatch,
                    "order.shipped": self._deliver}.get(event)
        if reaction:
            reaction(order_id)

    def _on_reserved(self, order_id: str) -> None:
        roll, b = self.rng.random(), self.behaviour
        if roll < b.abandonment:
            return
        if roll < b.abandonment + b.cancellation:
            self._send(ORDERS_EXCHANGE, "order.cancelled", {"order_id": order_id, "reason": "customer changed mind"})
        elif roll < b.abandonment + b.cancellation + b.payment_failure:
            self._send(PAYMENTS_EXCHANGE, "payment.failed", {"order_id": order_id, "payment_id": _id("pay"),
                                                               "reason": "card declined"})
        else:
            self._send(PAYMENTS_EXCHANGE, "payment.authorized", {"order_id": order_id, "payment_id": _id("pay"),
                                                                   "amount": self.totals[order_id], "currency": "EUR"})

    def _dispatch(self, order_id: str) -> None:
        self._send(SHIPMENTS_EXCHANGE, "shipment.dispatched", {"order_id": order_id,
                                                                 "shipment_id": f"ship-{order_id}",
                                                                 "carrier": "DemoPost", "tracking_number": _id("DP")})

    def _deliver(self, order_id: str) -> None:
        self._send(SHIPMENTS_EXCHANGE, "shipment.delivered",
                   {"order_id": order_id, "shipment_id": f"ship-{order_id}"})

    def _send(self, exchange: str, routing_key: str, body: dict) -> None:
        properties = pika.BasicProperties(message_id=str(uuid.uuid4()), content_type="application/json",
                                          type=routing_key, delivery_mode=2)
        self._channel.basic_publish(exchange, routing_key, json.dumps(body).encode(), properties,
                                    mandatory=True)


def _id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"
