"""Orders as operators and the state machine see them: one order shown whole, an order row
locked and moved with its transition logged, the expirer's candidates. (New orders are
written by ``conveyor.db.intake``.)"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from uuid import UUID

import psycopg

from conveyor.db import views
from conveyor.db.errors import IntegrityViolation


class OrderRepository:
    def __init__(self, conn: psycopg.Connection) -> None:
        self._conn = conn

    def show(self, order_id: UUID) -> dict | None:
        """The order whole, JSON-ready (``conveyor.db.views.order``)."""
        return views.order(self._conn, order_id)


# The registry names the order's partition (V013: orders are partitioned by the time Conveyor
# recorded them, which the registry keeps), so only that partition is scanned.
LOCK_ORDER = """
SELECT o.order_id, o.tenant_id, o.status, o.total, o.currency, o.created_at, o.updated_at
FROM orders o
WHERE o.order_id = %(order_id)s
  AND o.created_at = (SELECT r.created_at FROM order_registry r WHERE r.order_id = %(order_id)s)
FOR UPDATE OF o
"""
SET_STATUS = """
UPDATE orders SET status = %(to)s, status_reason = %(reason)s, updated_at = now()
WHERE order_id = %(order_id)s AND created_at = %(created_at)s AND status = %(from)s
"""
ADD_TRANSITION = """
INSERT INTO order_transitions (order_id, from_status, to_status, event, message_id, reason)
VALUES (%(order_id)s, %(from)s, %(to)s, %(event)s, %(message_id)s, %(reason)s)
"""
EXPIRY_CANDIDATES = """
SELECT order_id FROM orders
WHERE status = 'RESERVED' AND updated_at < now() - make_interval(secs => %(older_than)s)
ORDER BY updated_at
LIMIT %(limit)s
"""


@dataclass(frozen=True)
class LockedOrder:
    order_id: UUID
    tenant_id: str
    status: str
    total: Decimal
    currency: str
    created_at: datetime   # when Conveyor recorded it: the partition key
    updated_at: datetime


class OrderStateRepository:
    """The order row as the state machine sees it: locked, moved, logged."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self._conn = conn

    def lock(self, order_id: UUID) -> LockedOrder | None:
        row = self._conn.execute(LOCK_ORDER, {"order_id": order_id}).fetchone()
        return LockedOrder(*row) if row else None

    def move(self, order: LockedOrder, *, to: str, event: str, message_id: str | None,
             reason: str | None) -> None:
        cursor = self._conn.execute(SET_STATUS, {"to": to, "reason": reason, "order_id": order.order_id,
                                                "created_at": order.created_at, "from": order.status})
        if cursor.rowcount != 1:
            raise IntegrityViolation(f"order {order.order_id} left {order.status} under its lock")
        self._conn.execute(ADD_TRANSITION, {"order_id": order.order_id, "from": order.status, "to": to,
                                            "event": event, "message_id": message_id, "reason": reason})

    def expiry_candidates(self, *, older_than_seconds: float, limit: int) -> list[UUID]:
        return [r[0] for r in self._conn.execute(EXPIRY_CANDIDATES, {"older_than": older_than_seconds,
                                                                   "limit": limit})]
