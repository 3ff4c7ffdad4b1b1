"""Consistency checks between stock levels, reservations, the stock ledger and order states.

Each query returns the offending rows; an empty result means no drift.
"""

from __future__ import annotations

import psycopg

CHECKS: dict[str, str] = {
    # reserved must equal what live (HELD) reservations hold
    "reserved_vs_reservations": """
        SELECT s.tenant_id, s.sku, s.reserved AS actual, coalesce(r.held, 0) AS expected
        FROM stock_levels s
        LEFT JOIN (SELECT tenant_id, sku, sum(quantity) AS held FROM reservations
                   WHERE state = 'HELD' GROUP BY tenant_id, sku) r USING (tenant_id, sku)
        WHERE s.reserved <> coalesce(r.held, 0)
        ORDER BY 1, 2""",
    # on hand and reserved must equal the sum of their recorded movements, versions contiguous
    "levels_vs_ledger": """
        SELECT s.tenant_id, s.sku, s.on_hand AS actual, coalesce(m.on_hand, 0) AS expected,
               s.reserved AS actual_reserved, coalesce(m.reserved, 0) AS expected_reserved,
               s.version, coalesce(m.movements, 0) AS movements
        FROM stock_levels s
        LEFT JOIN (SELECT tenant_id, sku, sum(delta_on_hand) AS on_hand, sum(delta_reserved) AS reserved,
                          count(*) AS movements, max(version) AS version
                   FROM stock_movements GROUP BY tenant_id, sku) m USING (tenant_id, sku)
        WHERE s.on_hand <> coalesce(m.on_hand, 0) OR s.reserved <> coalesce(m.reserved, 0)
           OR s.version <> coalesce(m.version, 0)
        ORDER BY 1, 2""",
    # what each order's status implies about its reservations
    "orders_vs_reservations": """
        SELECT o.order_id::text, o.status, r.state, count(*) AS reservations
        FROM orders o JOIN reservations r USING (order_id)
        WHERE r.state <> CASE
            WHEN o.status IN ('RESERVED', 'PAID') THEN 'HELD'
            WHEN o.status IN ('SHIPPED', 'DELIVERED') THEN 'COMMITTED'
            ELSE 'RELEASED' END
        GROUP BY 1, 2, 3
        ORDER BY 1""",
    # reserved orders that hold nothing (every accepted order holds at least one SKU)
    "orders_without_reservations": """
        SELECT o.order_id::text, o.status FROM orders o
        WHERE o.status NOT IN ('REJECTED')
          AND NOT EXISTS (SELECT 1 FROM reservations r WHERE r.order_id = o.order_id)
        ORDER BY 1""",
}
SUMMARY = """
SELECT count(*), coalesce(sum(on_hand), 0), coalesce(sum(reserved), 0) FROM stock_levels
"""


def run_checks(conn: psycopg.Connection, *, limit: int = 100) -> dict[str, list[dict]]:
    results: dict[str, list[dict]] = {}
    for name, query in CHECKS.items():
        cursor = conn.execute(f"{query} LIMIT %(limit)s", {"limit": limit})
        columns = [c.name for c in cursor.description or ()]
        results[name] = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
    return results


def totals(conn: psycopg.Connection) -> dict[str, int]:
    row = conn.execute(SUMMARY).fetchone()
    assert row is not None, "an aggregate query returns one row"
    skus, on_hand, reserved = row
    return {"skus": skus, "on_hand": int(on_hand), "reserved": int(reserved)}
