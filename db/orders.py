"""Orders: the registry that makes an order id unique, the order row, its lines and reservations."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from uuid import UUID

import psycopg

from db.errors import IntegrityViolation

REGISTER = """
INSERT INTO order_registry (order_id, tenant_id, placed_at) VALUES (%s, %s, %s)
ON CONFLICT (order_id) DO NOTHING
RETURNING 1
"""
ENSURE_TENANT = "INSERT INTO tenants (tenant_id, name) VALUES (%s, %s) ON CONFLICT DO NOTHING"
INSERT_ORDER = """
INSERT INTO orders (order_id, placed_at, tenant_id, customer_id, currency, total, status,
                    status_reason, source_message_id)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
"""
INSERT_LINES = """
INSERT INTO order_lines (order_id, line_no, sku, quantity, unit_price, status, reason)
SELECT %s, l.line_no, l.sku, l.quantity, l.unit_price, %s, l.reason
FROM unnest(%s::int[], %s::text[], %s::int[], %s::numeric[], %s::text[])
     AS l(line_no, sku, quantity, unit_price, reason)
"""
INSERT_RESERVATIONS = """
INSERT INTO reservations (order_id, tenant_id, sku, quantity)
SELECT %s, %s, r.sku, r.quantity FROM unnest(%s::text[], %s::int[]) AS r(sku, quantity)
"""
REGISTER_MANY = """
INSERT INTO order_registry (order_id, tenant_id, placed_at)
SELECT * FROM unnest(%s::uuid[], %s::text[], %s::timestamptz[])
ON CONFLICT (order_id) DO NOTHING
RETURNING order_id
"""
ENSURE_TENANTS = """
INSERT INTO tenants (tenant_id, name) SELECT t, t FROM unnest(%s::text[]) AS t ON CONFLICT DO NOTHING
"""
INSERT_ORDERS = """
INSERT INTO orders (order_id, placed_at, tenant_id, customer_id, currency, total, status,
                    status_reason, source_message_id)
SELECT * FROM unnest(%s::uuid[], %s::timestamptz[], %s::text[], %s::text[], %s::text[], %s::numeric[],
                     %s::text[], %s::text[], %s::text[])
"""
INSERT_LINES_MANY = """
INSERT INTO order_lines (order_id, line_no, sku, quantity, unit_price, status, reason)
SELECT * FROM unnest(%s::uuid[], %s::int[], %s::text[], %s::int[], %s::numeric[], %s::text[], %s::text[])
"""
INSERT_RESERVATIONS_MANY = """
INSERT INTO reservations (order_id, tenant_id, sku, quantity)
SELECT * FROM unnest(%s::uuid[], %s::text[], %s::text[], %s::int[])
"""
SHOW_ORDER = """
SELECT o.order_id, o.tenant_id, o.customer_id, o.currency, o.total, o.status, o.status_reason,
       o.placed_at, o.created_at, o.updated_at
FROM orders o JOIN order_registry r ON r.order_id = o.order_id AND r.placed_at = o.placed_at
WHERE o.order_id = %s
"""
SHOW_LINES = """
SELECT line_no, sku, quantity, unit_price, status, reason FROM order_lines
WHERE order_id = %s ORDER BY line_no
"""
SHOW_RESERVATIONS = """
SELECT sku, quantity, state FROM reservations WHERE order_id = %s ORDER BY sku
"""


@dataclass(frozen=True)
class NewLine:
    line_no: int
    sku: str
    quantity: int
    unit_price: Decimal
    reason: str | None = None


@dataclass(frozen=True)
class NewOrder:
    order_id: UUID
    tenant_id: str
    customer_id: str
    currency: str
    total: Decimal
    placed_at: datetime
    status: str
    status_reason: str | None
    source_message_id: str
    lines: list[NewLine]


class OrderRepository:
    def __init__(self, conn: psycopg.Connection) -> None:
        self._conn = conn

    def register(self, order_id: UUID, *, tenant_id: str, placed_at: datetime) -> bool:
        """Claim the order id; False when an order with this id already exists."""
        self._conn.execute(ENSURE_TENANT, (tenant_id, tenant_id))
        return self._conn.execute(REGISTER, (order_id, tenant_id, placed_at)).fetchone() is not None

    def add(self, order: NewOrder) -> None:
        self._conn.execute(INSERT_ORDER, (
            order.order_id, order.placed_at, order.tenant_id, order.customer_id, order.currency,
            order.total, order.status, order.status_reason, order.source_message_id))
        lines = order.lines
        line_status = "RESERVED" if order.status == "RESERVED" else "REJECTED"
        self._conn.execute(INSERT_LINES, (
            order.order_id, line_status, [l.line_no for l in lines], [l.sku for l in lines],
            [l.quantity for l in lines], [l.unit_price for l in lines], [l.reason for l in lines]))

    def add_reservations(self, order_id: UUID, tenant_id: str, quantities: dict[str, int]) -> None:
        skus = list(quantities)
        self._conn.execute(INSERT_RESERVATIONS, (order_id, tenant_id, skus, [quantities[s] for s in skus]))

    def register_many(self, orders: list[tuple[UUID, str, datetime]]) -> set[UUID]:
        """Claim several order ids; returns those that were new."""
        if not orders:  # a redelivered batch whose every message was processed before
            return set()
        self._conn.execute(ENSURE_TENANTS, (sorted({t for _, t, _ in orders}),))
        rows = self._conn.execute(REGISTER_MANY, tuple(map(list, zip(*orders))))
        return {row[0] for row in rows}

    def add_many(self, orders: list[NewOrder]) -> None:
        """Insert orders and their lines: two statements for the whole list."""
        self._conn.execute(INSERT_ORDERS, tuple(map(list, zip(*[
            (o.order_id, o.placed_at, o.tenant_id, o.customer_id, o.currency, o.total, o.status,
             o.status_reason, o.source_message_id) for o in orders]))))
        lines = [(o.order_id, l.line_no, l.sku, l.quantity, l.unit_price,
                  "RESERVED" if o.status == "RESERVED" else "REJECTED", l.reason)
                 for o in orders for l in o.lines]
        self._conn.execute(INSERT_LINES_MANY, tuple(map(list, zip(*lines))))

    def add_reservations_many(self, rows: list[tuple[UUID, str, str, int]]) -> None:
        if rows:
            self._conn.execute(INSERT_RESERVATIONS_MANY, tuple(map(list, zip(*rows))))

    def show(self, order_id: UUID) -> dict | None:
        row = self._conn.execute(SHOW_ORDER, (order_id,)).fetchone()
        if row is None:
            return None
        keys = ("order_id", "tenant_id", "customer_id", "currency", "total", "status",
                "status_reason", "placed_at", "created_at", "updated_at")
        order = dict(zip(keys, row))
        order["order_id"] = str(order["order_id"])
        order["total"] = str(order["total"])
        for key in ("placed_at", "created_at", "updated_at"):
            order[key] = order[key].isoformat()
        order["lines"] = [
            {"line_no": n, "sku": s, "quantity": q, "unit_price": str(p), "status": st, "reason": r}
            for n, s, q, p, st, r in self._conn.execute(SHOW_LINES, (order_id,))
        ]
        order["reservations"] = [
            {"sku": s, "quantity": q, "state": st}
            for s, q, st in self._conn.execute(SHOW_RESERVATIONS, (order_id,))
        ]
        return order


LOCK_ORDER = """
SELECT o.order_id, o.tenant_id, o.status, o.total, o.currency, o.placed_at, o.updated_at
FROM orders o
WHERE o.order_id = %s
FOR UPDATE OF o
"""
SET_STATUS = """
UPDATE orders SET status = %s, status_reason = %s, updated_at = now()
WHERE order_id = %s AND placed_at = %s AND status = %s
"""
ADD_TRANSITION = """
INSERT INTO order_transitions (order_id, from_status, to_status, event, message_id, reason)
VALUES (%s, %s, %s, %s, %s, %s)
"""
EXPIRY_CANDIDATES = """
SELECT order_id FROM orders
WHERE status = 'RESERVED' AND updated_at < now() - make_interval(secs => %s)
ORDER BY updated_at
LIMIT %s
"""


@dataclass(frozen=True)
class LockedOrder:
    order_id: UUID
    tenant_id: str
    status: str
    total: Decimal
    currency: str
    placed_at: datetime
    updated_at: datetime


class OrderStateRepository:
    """The order row as the state machine sees it: locked, moved, logged."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self._conn = conn

    def lock(self, order_id: UUID) -> LockedOrder | None:
        row = self._conn.execute(LOCK_ORDER, (order_id,)).fetchone()
        return LockedOrder(*row) if row else None

    def move(self, order: LockedOrder, *, to: str, event: str, message_id: str | None,
             reason: str | None) -> None:
        cursor = self._conn.execute(SET_STATUS, (to, reason, order.order_id, order.placed_at, order.status))
        if cursor.rowcount != 1:
            raise IntegrityViolation(f"order {order.order_id} left {order.status} under its lock")
        self._conn.execute(ADD_TRANSITION, (order.order_id, order.status, to, event, message_id, reason))

    def expiry_candidates(self, *, older_than_seconds: float, limit: int) -> list[UUID]:
        return [r[0] for r in self._conn.execute(EXPIRY_CANDIDATES, (older_than_seconds, limit))]
