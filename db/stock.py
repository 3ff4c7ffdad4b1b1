"""Stock levels: the level value, set on hand and show (the `stock` CLI). (The order intake
reads and reserves them in ``conveyor.db.intake``.)

A level is the newest version of its (tenant, SKU) in the ledger, ``stock_movements`` (V011);
setting on hand appends a version under the SKU's stock lock, as every worker does."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import psycopg

from conveyor.db import views
from conveyor.db.locks import lock_stock

ENSURE_PRODUCT = """
INSERT INTO products (tenant_id, sku, name, price, currency)
VALUES (%(tenant_id)s, %(sku)s, %(name)s, %(price)s, %(currency)s)
ON CONFLICT (tenant_id, sku) DO NOTHING
"""
ENSURE_TENANT = """
INSERT INTO tenants (tenant_id, name) VALUES (%(tenant_id)s, %(name)s) ON CONFLICT (tenant_id) DO NOTHING
"""
ENSURE_ITEM = """
INSERT INTO stock_items (tenant_id, sku) VALUES (%(tenant_id)s, %(sku)s) ON CONFLICT (tenant_id, sku) DO NOTHING
"""
# A new version only when on hand changes (as an UPDATE that changes nothing made none);
# the CHECKs refuse on hand below what is reserved.
SET_ON_HAND = """
WITH newest AS (
    SELECT version, on_hand, reserved FROM stock_movements
    WHERE tenant_id = %(tenant_id)s AND sku = %(sku)s ORDER BY version DESC LIMIT 1
), moved AS (
    INSERT INTO stock_movements (tenant_id, sku, version, delta_on_hand, delta_reserved, on_hand, reserved, cause)
    SELECT %(tenant_id)s, %(sku)s, coalesce(n.version, 0) + 1, %(on_hand)s - coalesce(n.on_hand, 0), 0,
           %(on_hand)s, coalesce(n.reserved, 0), %(cause)s
    FROM (VALUES (1)) AS one (x) LEFT JOIN newest n ON true
    WHERE n.version IS NULL OR n.on_hand <> %(on_hand)s
    RETURNING on_hand, reserved
)
SELECT on_hand, reserved FROM moved
UNION ALL
SELECT on_hand, reserved FROM newest WHERE NOT EXISTS (SELECT FROM moved)
"""


@dataclass(frozen=True)
class StockLevel:
    sku: str
    on_hand: int
    reserved: int

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved


class StockRepository:
    def __init__(self, conn: psycopg.Connection) -> None:
        self._conn = conn

    def set_on_hand(self, tenant_id: str, sku: str, on_hand: int, *, name: str = "",
                    price: str = "0", currency: str = "EUR", cause: str = "stock-set") -> StockLevel:
        """Set on hand (creating the tenant, product and item when new). Call it inside a
        transaction: the SKU's stock lock is held until it ends."""
        self._conn.execute(ENSURE_TENANT, {"tenant_id": tenant_id, "name": tenant_id})
        self._conn.execute(ENSURE_PRODUCT, {"tenant_id": tenant_id, "sku": sku, "name": name or sku,
                                            "price": price, "currency": currency})
        lock_stock(self._conn, [(tenant_id, sku)])
        self._conn.execute(ENSURE_ITEM, {"tenant_id": tenant_id, "sku": sku})
        row = self._conn.execute(SET_ON_HAND, {"tenant_id": tenant_id, "sku": sku, "on_hand": on_hand,
                                               "cause": f"{cause}:{uuid.uuid4()}"}).fetchone()
        assert row is not None  # the new version, or the newest one when nothing changed
        return StockLevel(sku, *row)

    def show(self, tenant_id: str, sku: str) -> dict | None:
        """The SKU's level and product, JSON-ready (``conveyor.db.views.stock``)."""
        return views.stock(self._conn, tenant_id, sku)
