"""Unit of work: one database transaction (or savepoint) and the repositories bound to it.

Handlers receive a ``UnitOfWork`` and never see a connection; whoever opens it decides
when it commits. ``UnitOfWork`` is the protocol handlers are written against (only the
repository methods handlers call); ``PostgresUnitOfWork`` is the real one, and the unit
tests drive the same handlers with an in-memory fake (``tests/unit/fakes.py``).
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any, Protocol
from uuid import UUID

import psycopg

from conveyor.db.fulfilment import FulfilmentRepository
from conveyor.db.inbox import Inbox
from conveyor.db.intake import Claimed, Held, IntakeRepository, NewOrder, OrderKey, OutboxEvent
from conveyor.db.orders import LockedOrder, OrderRepository, OrderStateRepository
from conveyor.db.outbox import EventContext, Outbox
from conveyor.db.personal import NewCustomer
from conveyor.db.reservations import ReservationRepository
from conveyor.db.stock import StockRepository


class InboxPort(Protocol):
    def claim(self, message_id: str, *, handler: str, context: EventContext | None = None) -> bool: ...

    def claim_many(self, message_ids: list[str], *, handler: str, after_locking: Iterable[tuple[str, str]] = (),
                   context: EventContext | None = None) -> set[str]: ...


class IntakePort(Protocol):
    def claim(self, orders: list[OrderKey], stock: list[tuple[str, str]]) -> Claimed: ...

    def record(self, *, reserve: dict[tuple[str, str], int], cause: str, orders: list[NewOrder],
               held: list[Held], events: list[OutboxEvent], customers: list[NewCustomer] | None = None) -> None: ...


class OrderStatesPort(Protocol):
    def lock(self, order_id: UUID) -> LockedOrder | None: ...

    def move(self, order: LockedOrder, *, to: str, event: str, message_id: str | None,
             reason: str | None) -> None: ...


class ReservationsPort(Protocol):
    def skus_of(self, order_ids: list[UUID]) -> list[tuple[str, str]]: ...

    def release(self, order_id: UUID, *, cause: str) -> int: ...

    def commit(self, order_id: UUID, *, cause: str) -> int: ...


class FulfilmentPort(Protocol):
    def record_payment(self, payment_id: str, order_id: UUID, *, outcome: str,
                       amount: Decimal | None = None, currency: str | None = None,
                       detail: str | None = None) -> bool: ...

    def record_shipment(self, shipment_id: str, event: str, order_id: UUID, *,
                        carrier: str | None = None, tracking_reference: str | None = None) -> bool: ...


class OutboxPort(Protocol):
    def add(self, *, exchange: str, routing_key: str, payload: dict[str, Any], correlation_id: str | None,
            ordering_key: str | None = None, message_type: str | None = None,
            headers: dict[str, str] | None = None) -> str: ...


class UnitOfWork(Protocol):
    """What a handler may touch, all inside one transaction (read-only members, so any class
    whose repositories fit the ports fits)."""

    @property
    def inbox(self) -> InboxPort: ...
    @property
    def intake(self) -> IntakePort: ...
    @property
    def order_states(self) -> OrderStatesPort: ...
    @property
    def reservations(self) -> ReservationsPort: ...
    @property
    def fulfilment(self) -> FulfilmentPort: ...
    @property
    def outbox(self) -> OutboxPort: ...


class PostgresUnitOfWork:
    """The repositories bound to one connection inside the caller's transaction."""

    def __init__(self, conn: psycopg.Connection, *, pii_key_file: str | None = None) -> None:
        self.conn = conn
        self.inbox = Inbox(conn)
        self.stock = StockRepository(conn)
        self.intake = IntakeRepository(conn, pii_key_file=pii_key_file)
        self.orders = OrderRepository(conn)
        self.outbox = Outbox(conn)
        self.order_states = OrderStateRepository(conn)
        self.reservations = ReservationRepository(conn)
        self.fulfilment = FulfilmentRepository(conn)
