"""An in-memory unit of work: the repositories handlers use, over plain dicts and lists.

The handlers' unit tests (``tests/unit/fakes.py`` re-exports it) and the kit's
``InMemoryConveyor`` (``testing.py``) run the real handlers against it.

Faithful to what the handlers rely on in PostgreSQL: an order id registers once, stock is
reserved only while available (the real UPDATE's WHERE clause), reservations are settled once
(HELD → RELEASED / COMMITTED), a payment id and a (shipment id, event) are recorded once.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID

from conveyor.db.errors import IntegrityViolation
from conveyor.db.intake import Claimed, Held, NewOrder, OrderKey, OutboxEvent
from conveyor.db.orders import LockedOrder
from conveyor.db.outbox import EventContext
from conveyor.db.personal import NewCustomer
from conveyor.db.stock import StockLevel


@dataclass
class StoredOrder:
    order: NewOrder
    status: str
    updated_at: datetime
    created_at: datetime  # when it was recorded (the partition key in PostgreSQL)


@dataclass
class Reservation:
    order_id: UUID
    tenant_id: str
    sku: str
    quantity: int
    state: str = "HELD"


@dataclass
class World:
    """Everything the fake stores; tests read it directly."""

    stock: dict[tuple[str, str], list[int]] = field(default_factory=dict)  # (tenant, sku) -> [on_hand, reserved]
    orders: dict[UUID, StoredOrder] = field(default_factory=dict)
    registered: set[UUID] = field(default_factory=set)
    reservations: list[Reservation] = field(default_factory=list)
    payments: set[str] = field(default_factory=set)
    shipments: set[tuple[str, str]] = field(default_factory=set)
    transitions: list[tuple[UUID, str, str, str]] = field(default_factory=list)  # (order, from, to, event)
    outbox: list[dict[str, Any]] = field(default_factory=list)
    inbox: set[str] = field(default_factory=set)
    customers: list[NewCustomer] = field(default_factory=list)  # stored sealed in PostgreSQL

    def level(self, tenant: str, sku: str) -> tuple[int, int]:
        on_hand, reserved = self.stock[(tenant, sku)]
        return on_hand, reserved

    def events(self, routing_key: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self.outbox if routing_key is None or e["routing_key"] == routing_key]


class FakeInbox:
    def __init__(self, world: World) -> None:
        self.world = world

    def claim(self, message_id: str, *, handler: str, context: EventContext | None = None) -> bool:
        return bool(self.claim_many([message_id], handler=handler))

    def claim_many(self, message_ids: list[str], *, handler: str, after_locking: Iterable[tuple[str, str]] = (),
                   context: EventContext | None = None) -> set[str]:
        fresh = set(message_ids) - self.world.inbox
        self.world.inbox |= fresh
        return fresh


class FakeIntake:
    def __init__(self, world: World) -> None:
        self.world = world

    def claim(self, orders: list[OrderKey], stock: list[tuple[str, str]]) -> Claimed:
        new = {key.order_id for key in orders} - self.world.registered
        self.world.registered |= new
        levels = {pair: StockLevel(pair[1], *self.world.stock[pair]) for pair in stock if pair in self.world.stock}
        return Claimed(new, levels)

    def record(self, *, reserve: dict[tuple[str, str], int], cause: str, orders: list[NewOrder],
               held: list[Held], events: list[OutboxEvent], customers: list[NewCustomer] | None = None) -> None:
        for pair, quantity in reserve.items():
            on_hand, reserved = self.world.stock[pair]
            if on_hand - reserved < quantity:
                raise IntegrityViolation(f"{pair} would be oversold")
        for pair, quantity in reserve.items():
            self.world.stock[pair][1] += quantity
        now = datetime.now(timezone.utc)
        for order in orders:
            self.world.orders[order.order_id] = StoredOrder(order, order.status, now, now)
        self.world.reservations += [Reservation(h.order_id, h.tenant_id, h.sku, h.quantity) for h in held]
        self.world.customers += customers or []
        for event in events:
            self.world.outbox.append({"exchange": event.exchange, "routing_key": event.routing_key,
                                      "correlation_id": event.correlation_id, "payload": json.loads(event.payload),
                                      "headers": event.headers or {}})


class FakeOrderStates:
    def __init__(self, world: World) -> None:
        self.world = world

    def lock(self, order_id: UUID) -> LockedOrder | None:
        stored = self.world.orders.get(order_id)
        if stored is None:
            return None
        o = stored.order
        return LockedOrder(o.order_id, o.tenant_id, stored.status, o.total, o.currency, stored.created_at,
                           stored.updated_at)

    def move(self, order: LockedOrder, *, to: str, event: str, message_id: str | None,
             reason: str | None) -> None:
        stored = self.world.orders[order.order_id]
        self.world.transitions.append((order.order_id, stored.status, to, event))
        stored.status, stored.updated_at = to, datetime.now(timezone.utc)


class FakeReservations:
    def __init__(self, world: World) -> None:
        self.world = world

    def skus_of(self, order_ids: list[UUID]) -> list[tuple[str, str]]:
        return [(r.tenant_id, r.sku) for r in self.world.reservations if r.order_id in order_ids]

    def release(self, order_id: UUID, *, cause: str) -> int:
        return self._settle(order_id, "RELEASED", on_hand_too=False)

    def commit(self, order_id: UUID, *, cause: str) -> int:
        return self._settle(order_id, "COMMITTED", on_hand_too=True)

    def _settle(self, order_id: UUID, state: str, *, on_hand_too: bool) -> int:
        settled = [r for r in self.world.reservations if r.order_id == order_id and r.state == "HELD"]
        for r in settled:
            r.state = state
            level = self.world.stock[(r.tenant_id, r.sku)]
            level[1] -= r.quantity
            if on_hand_too:
                level[0] -= r.quantity
        return len(settled)


class FakeFulfilment:
    def __init__(self, world: World) -> None:
        self.world = world

    def record_payment(self, payment_id: str, order_id: UUID, *, outcome: str,
                       amount: Decimal | None = None, currency: str | None = None,
                       detail: str | None = None) -> bool:
        if payment_id in self.world.payments:
            return False
        self.world.payments.add(payment_id)
        return True

    def record_shipment(self, shipment_id: str, event: str, order_id: UUID, *,
                        carrier: str | None = None, tracking_reference: str | None = None) -> bool:
        if (shipment_id, event) in self.world.shipments:
            return False
        self.world.shipments.add((shipment_id, event))
        return True


class FakeOutbox:
    def __init__(self, world: World) -> None:
        self.world = world

    def add(self, *, exchange: str, routing_key: str, payload: dict[str, Any], correlation_id: str | None,
            ordering_key: str | None = None, message_type: str | None = None,
            headers: dict[str, str] | None = None) -> str:
        message_id = str(uuid.uuid4())
        self.world.outbox.append({"exchange": exchange, "routing_key": routing_key,
                                  "correlation_id": correlation_id, "payload": payload, "headers": headers or {}})
        return message_id


class FakeUnitOfWork:
    """Satisfies ``conveyor.db.uow.UnitOfWork`` (mypy checks it where the tests pass it)."""

    def __init__(self, world: World | None = None) -> None:
        self.world = world or World()
        self.inbox = FakeInbox(self.world)
        self.intake = FakeIntake(self.world)
        self.order_states = FakeOrderStates(self.world)
        self.reservations = FakeReservations(self.world)
        self.fulfilment = FakeFulfilment(self.world)
        self.outbox = FakeOutbox(self.world)
