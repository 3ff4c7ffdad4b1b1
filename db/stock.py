"""Stock levels: the level value, set on hand and show (the `stock` CLI). (The order intake
reads and reserves them in ``conveyor.db.intake``.)"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import psycopg

from conveyor.db import views

ENSURE_PRODUCT = """
INSERT INTO products (tenant_id, sku, name, price, currency)
VALUES (%(tenant_id)s, %(sku)s, %(name)s, %(price)s, %(currency)s)
ON CONFLICT (tenant_id, sku) DO NOTHING
"""
ENSURE_TENANT = """
INSERT INTO tenants (tenant_id, name) VALUES (%(tenant_id)s, %(name)s) ON CONFLICT (tenant_id) DO NOTHING
"""
SET_ON_HAND = """
INSERT INTO stock_levels (tenant_id, sku, on_hand, last_cause) VALUES (%(tenant_id)s, %(sku)s, %(on_hand)s, %(cause)s)
ON CONFLICT (tenant_id, sku) DO UPDATE
SET on_hand = EXCLUDED.on_hand, last_cause = EXCLUDED.last_cause
RETURNING sku, on_hand, reserved
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
        self._conn.execute(ENSURE_TENANT, {"tenant_id": tenant_id, "name": tenant_id})
        self._conn.execute(ENSURE_PRODUCT, {"tenant_id": tenant_id, "sku": sku, "name": name or sku,
                                            "price": price, "currency": currency})
        row = self._conn.execute(SET_ON_HAND, {"tenant_id": tenant_id, "sku": sku, "on_hand": on_hand,
                                               "cause": f"{cause}:{uuid.uuid4()}"}).fetchone()
        assert row is not None  # an upsert with RETURNING always returns its row
        return StockLevel(*row)

    def show(self, tenant_id: str, sku: str) -> dict | None:
        """The SKU's level and product, JSON-ready (``conveyor.db.views.stock``)."""
        return views.stock(self._conn, tenant_id, sku)
