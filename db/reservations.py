"""Reservations after the fact: which SKUs an order holds, and releasing or committing them.

Each is one set-based statement that settles the order's HELD reservations and moves the
stock levels with them, so reservations and ``stock_levels.reserved`` cannot drift apart.
"""

from __future__ import annotations

from uuid import UUID

import psycopg

SKUS_OF_ORDER = "SELECT tenant_id, sku FROM reservations WHERE order_id = %(order_id)s"
SKUS_OF_ORDERS = "SELECT tenant_id, sku FROM reservations WHERE order_id = ANY(%(order_ids)s)"
RELEASE = """
WITH settled AS (
    UPDATE reservations SET state = 'RELEASED', settled_at = now()
    WHERE order_id = %(order_id)s AND state = 'HELD'
    RETURNING tenant_id, sku, quantity)
UPDATE stock_levels s SET reserved = s.reserved - settled.quantity, last_cause = %(cause)s
FROM settled WHERE s.tenant_id = settled.tenant_id AND s.sku = settled.sku
"""
COMMIT = """
WITH settled AS (
    UPDATE reservations SET state = 'COMMITTED', settled_at = now()
    WHERE order_id = %(order_id)s AND state = 'HELD'
    RETURNING tenant_id, sku, quantity)
UPDATE stock_levels s
SET on_hand = s.on_hand - settled.quantity, reserved = s.reserved - settled.quantity, last_cause = %(cause)s
FROM settled WHERE s.tenant_id = settled.tenant_id AND s.sku = settled.sku
"""


class ReservationRepository:
    def __init__(self, conn: psycopg.Connection) -> None:
        self._conn = conn

    def skus_of(self, order_ids: list[UUID]) -> list[tuple[str, str]]:
        return [(t, s) for t, s in self._conn.execute(SKUS_OF_ORDERS, {"order_ids": order_ids})]

    def release(self, order_id: UUID, *, cause: str) -> int:
        """Give the order's held stock back; returns the number of SKUs released."""
        return self._conn.execute(RELEASE, {"order_id": order_id, "cause": cause}).rowcount

    def commit(self, order_id: UUID, *, cause: str) -> int:
        """The goods left: on hand and reserved both go down by the held quantities."""
        return self._conn.execute(COMMIT, {"order_id": order_id, "cause": cause}).rowcount
