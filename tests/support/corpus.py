"""Driving the bad-input corpus (tests/corpus): the world its cases expect, publishing them
(hand-encoded header fields included), and what became of each."""

from __future__ import annotations

import struct
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone

import pika
import psycopg
from pika import data as amqp_data
from pika.spec import BasicProperties

from tests.corpus import EXCHANGES, Case, Dead, Unroutable
from tests.corpus.cases import HOSTILE_SKUS, seed_payment_id, seed_shipment_id, seed_sku

CASE_HEADER = "x-corpus-case"
WORKER_OF_QUEUE = {"conveyor.orders": "orders", "conveyor.payments": "payments",
                   "conveyor.shipments": "shipments"}


# --- the world before the workers start -------------------------------------------------------

def seed_world(database_url: str, cases: list[Case]) -> None:
    """Stock for the corpus's SKUs, each seeded order in its state, pre-processed message ids.
    The seeding's own events are removed from the outbox: only the cases' events go out."""
    from conveyor.db.connection import connect
    from conveyor.db.stock import StockRepository
    from conveyor.db.uow import PostgresUnitOfWork

    with connect(database_url) as conn:
        with conn.transaction():
            stock = StockRepository(conn)
            for sku in ("A", *HOSTILE_SKUS):
                stock.set_on_hand("default", sku, 100_000)
            for case in cases:
                if case.seed and case.seed != "REJECTED":
                    stock.set_on_hand("default", seed_sku(case.order_id), 10)
        for case in cases:
            if case.seed:
                with conn.transaction():
                    _seed_order(PostgresUnitOfWork(conn), case.order_id, case.seed)
            if case.seeded_message:
                conn.execute("INSERT INTO inbox (message_id, handler) VALUES (%s, 'corpus-seed')",
                             (case.message_id,))
        conn.execute("DELETE FROM outbox")


def _seed_order(uow, order_id: str, state: str) -> None:
    """Bring a new order to ``state`` through the real handlers, as messages would."""
    from conveyor.schemas.lifecycle import CancelOrder, PaymentAuthorized, ShipmentDelivered, ShipmentDispatched
    from conveyor.schemas.orders import OrderCreated
    from conveyor.workers.domain.lifecycle import Event
    from conveyor.workers.handlers import orders as order_worker
    from conveyor.workers.handlers import payments as payment_worker
    from conveyor.workers.handlers import shipping as shipping_worker
    from conveyor.workers.handlers import transitions
    from conveyor.workers.runtime.spec import HandlerContext

    def ctx(step: str) -> HandlerContext:
        return HandlerContext(message_id=f"seed-{step}-{order_id}", routing_key=step, attempt=1,
                              default_tenant="default")

    sku = "NO-SUCH-SKU" if state == "REJECTED" else seed_sku(order_id)
    order_worker.handle_order_created(OrderCreated.model_validate({
        "order_id": order_id, "customer_id": "seeded", "currency": "EUR",
        "items": [{"sku": sku, "quantity": 1, "unit_price": "10.00"}],
        "placed_at": datetime.now(timezone.utc)}), uow, ctx("order.created"))
    if state in ("PAID", "SHIPPED", "DELIVERED"):
        payment_worker.handle_authorized(PaymentAuthorized.model_validate({
            "order_id": order_id, "payment_id": seed_payment_id(order_id), "amount": "10.00",
            "currency": "EUR"}), uow, ctx("payment.authorized"))
    if state in ("SHIPPED", "DELIVERED"):
        shipping_worker.handle_dispatched(ShipmentDispatched.model_validate({
            "order_id": order_id, "shipment_id": seed_shipment_id(order_id), "carrier": "DHL",
            "tracking_number": "T-0"}), uow, ctx("shipment.dispatched"))
    if state == "DELIVERED":
        shipping_worker.handle_delivered(ShipmentDelivered.model_validate({
            "order_id": order_id, "shipment_id": seed_shipment_id(order_id)}), uow, ctx("shipment.delivered"))
    if state == "CANCELLED":
        order_worker.handle_cancel(CancelOrder.model_validate({"order_id": order_id, "reason": "seeded"}),
                                   uow, ctx("order.cancelled"))
    if state == "EXPIRED":
        transitions.apply(uow, uow.order_states.lock(uuid.UUID(order_id)), Event.RESERVATION_EXPIRED,
                          transitions.Details(reason="seeded"))


FINGERPRINT = """
SELECT o.status, o.status_reason, o.customer_id,
       (SELECT count(*) FROM order_transitions t WHERE t.order_id = o.order_id),
       (SELECT array_agg(r.sku || ':' || r.quantity || ':' || r.state ORDER BY r.sku)
        FROM reservations r WHERE r.order_id = o.order_id),
       (SELECT array_agg(s.on_hand || ':' || s.reserved || ':' || s.version ORDER BY s.sku)
        FROM stock_levels s JOIN reservations r USING (tenant_id, sku) WHERE r.order_id = o.order_id)
FROM orders o WHERE o.order_id = %s
"""


def fingerprints(database_url: str, cases: list[Case]) -> dict[str, tuple | None]:
    """What a case must not change: its order's state, transitions, reservations and stock."""
    with psycopg.connect(database_url) as conn:
        return {c.name: conn.execute(FINGERPRINT, (c.order_id,)).fetchone() for c in cases}


# --- publishing ---------------------------------------------------------------------------------

class RawHeaderProperties(BasicProperties):
    """Properties whose header table also carries fields encoded by hand (AMQP types pika
    cannot produce, such as a double)."""

    def __init__(self, raw_fields: bytes, **kwargs) -> None:
        super().__init__(**kwargs)
        self._raw_fields = raw_fields

    def encode(self) -> list[bytes]:
        encoded = b"".join(super().encode())
        table: list[bytes] = []
        amqp_data.encode_table(table, self.headers)
        table_bytes = b"".join(table)
        assert encoded.count(table_bytes) == 1
        fields = table_bytes[4:] + self._raw_fields
        return [encoded.replace(table_bytes, struct.pack(">I", len(fields)) + fields)]


def properties_of(case: Case) -> BasicProperties:
    overrides = dict(case.properties)
    headers = {CASE_HEADER: case.name, **overrides.pop("headers", {})}
    props = {"message_id": case.message_id, "content_type": "application/json", "type": case.routing_key,
             "delivery_mode": 2, "headers": headers, **overrides}
    props = {k: v for k, v in props.items() if v is not None}
    if case.raw_headers:
        return RawHeaderProperties(case.raw_headers, **props)
    return BasicProperties(**props)


def publish_cases(amqp_url: str, cases: list[Case]) -> set[str]:
    """Publish every case (each copy), confirmed; returns the names the broker could not route."""
    unroutable: set[str] = set()
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        for case in cases:
            exchange = EXCHANGES[case.routing_key] if case.exchange is None else case.exchange
            for _ in range(case.copies):
                try:
                    channel.basic_publish(exchange, case.publish_key or case.routing_key, case.body,
                                          properties_of(case), mandatory=True)
                except pika.exceptions.UnroutableError:
                    unroutable.add(case.name)
    finally:
        connection.close()
    return unroutable


# --- what to expect, what happened ----------------------------------------------------------------

def expected_dead_letters(cases: list[Case]) -> Counter:
    """Dead letters per DLQ."""
    return Counter({f"{queue}.dlq": n for queue, n in
                    Counter(c.queue for c in cases if isinstance(c.expect, Dead)).items()})


def expected_deliveries(cases: list[Case], *, max_attempts: int) -> Counter:
    """Deliveries per worker: each copy once, a retried one once per attempt."""
    counts: Counter = Counter()
    for case in cases:
        if isinstance(case.expect, Unroutable):
            continue
        attempts = max_attempts if isinstance(case.expect, Dead) and case.expect.retried else 1
        counts[WORKER_OF_QUEUE[case.queue]] += case.copies * attempts
    return counts


@dataclass
class Outcome:
    """Everything observed after the run, keyed for per-case assertions."""

    dead: dict[str, list[tuple]] = field(default_factory=lambda: defaultdict(list))   # case name -> letters
    stray_dead: list[tuple] = field(default_factory=list)                               # without a case name
    events: dict[str, list[tuple]] = field(default_factory=lambda: defaultdict(list))  # order id -> events
    unroutable: set[str] = field(default_factory=set)
    before: dict[str, tuple | None] = field(default_factory=dict)
    after: dict[str, tuple | None] = field(default_factory=dict)
    deliveries: dict[str, int] = field(default_factory=dict)
    expected_deliveries: dict[str, int] = field(default_factory=dict)
    generations: dict[str, int] = field(default_factory=dict)
    outcomes: dict[str, dict[str, int]] = field(default_factory=dict)

    def add_dead(self, letters: list[tuple]) -> None:
        for method, properties, body in letters:
            name = (properties.headers or {}).get(CASE_HEADER)
            (self.dead[name] if name else self.stray_dead).append((method, properties, body))

    def add_events(self, events: list[tuple]) -> None:
        for method, properties, body in events:
            self.events[properties.correlation_id].append((method.routing_key, properties, body))
