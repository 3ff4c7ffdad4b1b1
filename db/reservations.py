"""Reservations after the fact: which SKUs an order holds, and releasing or committing them.

Each is one set-based statement that settles the order's HELD reservations and moves the
stock levels with them (a new version per SKU in the ledger, V011), so reservations and
``stock_levels.reserved`` cannot drift apart.
"""

from __future__ import annotations

from uuid import UUID

import psycopg

SKUS_OF_ORDER = "SELECT tenant_id, sku FROM reservations WHERE order_id = %(order_id)s"
SKUS_OF_ORDERS = "SELECT tenant_id, sku FROM reservations WHERE order_id = ANY(%(order_ids)s)"
# The newest version of a settled reservation's SKU: its level.
NEWEST = """SELECT m.version, m.on_hand, m.reserved FROM stock_movements m
    WHERE m.tenant_id = settled.tenant_id AND m.sku = settled.sku ORDER BY m.version DESC LIMIT 1"""
RELEASE = f"""
WITH settled AS (
    UPDATE reservations SET state = 'RELEASED', settled_at = now()
    WHERE order_id = %(order_id)s AND state = 'HELD'
    RETURNING tenant_id, sku, quantity)
INSERT INTO stock_movements (tenant_id, sku, version, delta_on_hand, delta_reserved, on_hand, reserved, cause)
SELECT settled.tenant_id, settled.sku, s.version + 1, 0, -settled.quantity, s.on_hand,
       s.reserved - settled.quantity, %(cause)s
FROM settled CROSS JOIN LATERAL ({NEWEST}) s
"""
COMMIT = f"""
WITH settled AS (
    UPDATE reservations SET state = 'COMMITTED', settled_at = now()
    WHERE order_id = %(order_id)s AND state = 'HELD'
    RETURNING tenant_id, sku, quantity)
INSERT INTO stock_movements (tenant_id, sku, version, delta_on_hand, delta_reserved, on_hand, reserved, cause)
SELECT settled.tenant_id, settled.sku, s.version + 1, -settled.quantity, -settled.quantity,
       s.on_hand - settled.quantity, s.reserved - settled.quantity, %(cause)s
FROM settled CROSS JOIN LATERAL ({NEWEST}) s
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
