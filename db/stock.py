"""Stock levels: read under lock, reserve set-based, set on hand (the `stock` CLI)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import psycopg

from db.errors import IntegrityViolation

LEVELS = """
SELECT sku, on_hand, reserved FROM stock_levels
WHERE tenant_id = %s AND sku = ANY(%s)
"""
# The WHERE clause is the last line of defence: a reservation that would oversell
# matches no row, and the caller turns the short row count into an error.
RESERVE = """
UPDATE stock_levels s
SET reserved = s.reserved + r.qty, last_cause = %s
FROM unnest(%s::text[], %s::int[]) AS r(sku, qty)
WHERE s.tenant_id = %s AND s.sku = r.sku AND s.on_hand - s.reserved >= r.qty
"""
LEVELS_MANY = """
SELECT s.tenant_id, s.sku, s.on_hand, s.reserved
FROM unnest(%s::text[], %s::text[]) AS k(tenant_id, sku)
JOIN stock_levels s USING (tenant_id, sku)
"""
RESERVE_MANY = """
UPDATE stock_levels s
SET reserved = s.reserved + r.qty, last_cause = %s
FROM unnest(%s::text[], %s::text[], %s::int[]) AS r(tenant_id, sku, qty)
WHERE s.tenant_id = r.tenant_id AND s.sku = r.sku AND s.on_hand - s.reserved >= r.qty
"""
ENSURE_PRODUCT = """
INSERT INTO products (tenant_id, sku, name, price, currency) VALUES (%s, %s, %s, %s, %s)
ON CONFLICT (tenant_id, sku) DO NOTHING
"""
ENSURE_TENANT = """
INSERT INTO tenants (tenant_id, name) VALUES (%s, %s) ON CONFLICT (tenant_id) DO NOTHING
"""
SET_ON_HAND = """
INSERT INTO stock_levels (tenant_id, sku, on_hand, last_cause) VALUES (%s, %s, %s, %s)
ON CONFLICT (tenant_id, sku) DO UPDATE
SET on_hand = EXCLUDED.on_hand, last_cause = EXCLUDED.last_cause
RETURNING sku, on_hand, reserved
"""
SHOW = """
SELECT s.sku, s.tenant_id, s.on_hand, s.reserved, s.version, s.updated_at, p.name, p.price, p.currency
FROM stock_levels s JOIN products p USING (tenant_id, sku)
WHERE s.tenant_id = %s AND s.sku = %s
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

    def levels(self, tenant_id: str, skus: list[str]) -> dict[str, StockLevel]:
        rows = self._conn.execute(LEVELS, (tenant_id, skus)).fetchall()
        return {sku: StockLevel(sku, on_hand, reserved) for sku, on_hand, reserved in rows}

    def reserve(self, tenant_id: str, quantities: dict[str, int], *, cause: str) -> None:
        skus = sorted(quantities)
        cursor = self._conn.execute(RESERVE, (cause, skus, [quantities[s] for s in skus], tenant_id))
        if cursor.rowcount != len(skus):
            raise IntegrityViolation(
                f"reservation of {quantities} for tenant {tenant_id} matched {cursor.rowcount} rows;"
                " stock changed under the lock"
            )

    def levels_many(self, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], StockLevel]:
        """Levels of several (tenant, SKU) pairs in one round trip."""
        rows = self._conn.execute(LEVELS_MANY, ([t for t, _ in pairs], [s for _, s in pairs])).fetchall()
        return {(t, sku): StockLevel(sku, on_hand, reserved) for t, sku, on_hand, reserved in rows}

    def reserve_many(self, quantities: dict[tuple[str, str], int], *, cause: str) -> None:
        """One UPDATE for a whole batch: each SKU changes once, by the sum of its orders."""
        keys = sorted(quantities)
        cursor = self._conn.execute(RESERVE_MANY, (
            cause, [t for t, _ in keys], [s for _, s in keys], [quantities[k] for k in keys]))
        if cursor.rowcount != len(keys):
            raise IntegrityViolation(f"batch reservation matched {cursor.rowcount} of {len(keys)} SKUs;"
                                     " stock changed under the lock")

    def set_on_hand(self, tenant_id: str, sku: str, on_hand: int, *, name: str = "",
                    price: str = "0", currency: str = "EUR", cause: str = "stock-set") -> StockLevel:
        self._conn.execute(ENSURE_TENANT, (tenant_id, tenant_id))
        self._conn.execute(ENSURE_PRODUCT, (tenant_id, sku, name or sku, price, currency))
        sku, on_hand, reserved = self._conn.execute(
            SET_ON_HAND, (tenant_id, sku, on_hand, f"{cause}:{uuid.uuid4()}")).fetchone()
        return StockLevel(sku, on_hand, reserved)

    def show(self, tenant_id: str, sku: str) -> dict | None:
        row = self._conn.execute(SHOW, (tenant_id, sku)).fetchone()
        if row is None:
            return None
        sku, tenant, on_hand, reserved, version, updated_at, name, price, currency = row
        return {
            "sku": sku, "tenant_id": tenant, "on_hand": on_hand, "reserved": reserved,
            "available": on_hand - reserved, "version": version, "updated_at": updated_at.isoformat(),
            "name": name, "price": str(price), "currency": currency,
        }
