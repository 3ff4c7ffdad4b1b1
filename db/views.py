"""The read side: what operators, the CLI, the demo report and the health check look at.

Named queries over one connection, each returning plain dataclasses or dicts; driver
errors leave as Conveyor's ``conveyor.db.errors`` family. Nothing here writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg

from conveyor.db.errors import wrap_exceptions
from conveyor.db.relay_lease import LEASE
from conveyor.schemas.names import OUTBOUND_EXCHANGES

# -- orders (``conveyor order show``, the DLQ console) ---------------------------------------

SHOW_ORDER = """
SELECT o.order_id, o.tenant_id, o.customer_id, o.currency, o.total, o.status, o.status_reason,
       o.placed_at, o.created_at, o.updated_at
FROM orders o
WHERE o.order_id = %(order_id)s
  -- the registry names the partition: an InitPlan, so the executor prunes to that one
  AND o.created_at = (SELECT r.created_at FROM order_registry r WHERE r.order_id = %(order_id)s)
"""
SHOW_LINES = """
SELECT line_no, sku, quantity, unit_price, status, reason FROM order_lines
WHERE order_id = %(order_id)s ORDER BY line_no
"""
SHOW_RESERVATIONS = """
SELECT sku, quantity, state FROM reservations WHERE order_id = %(order_id)s ORDER BY sku
"""
ORDER_KEYS = ("order_id", "tenant_id", "customer_id", "currency", "total", "status",
              "status_reason", "placed_at", "created_at", "updated_at")


def order(conn: psycopg.Connection, order_id: UUID) -> dict | None:
    """One order whole (lines, reservations), JSON-ready; None when there is none."""
    with wrap_exceptions(conn):
        row = conn.execute(SHOW_ORDER, {"order_id": order_id}).fetchone()
        if row is None:
            return None
        shown = dict(zip(ORDER_KEYS, row, strict=True))
        shown["order_id"] = str(shown["order_id"])
        shown["total"] = str(shown["total"])
        for key in ("placed_at", "created_at", "updated_at"):
            shown[key] = shown[key].isoformat()
        shown["lines"] = [
            {"line_no": n, "sku": s, "quantity": q, "unit_price": str(p), "status": st, "reason": r}
            for n, s, q, p, st, r in conn.execute(SHOW_LINES, {"order_id": order_id})
        ]
        shown["reservations"] = [
            {"sku": s, "quantity": q, "state": st}
            for s, q, st in conn.execute(SHOW_RESERVATIONS, {"order_id": order_id})
        ]
    return shown


# -- stock (``conveyor stock show``) ----------------------------------------------------------

SHOW_STOCK = """
SELECT s.sku, s.tenant_id, s.on_hand, s.reserved, s.version, s.updated_at, p.name, p.price, p.currency
FROM stock_levels s JOIN products p USING (tenant_id, sku)
WHERE s.tenant_id = %(tenant_id)s AND s.sku = %(sku)s
"""


def stock(conn: psycopg.Connection, tenant_id: str, sku: str) -> dict | None:
    """One SKU's level and product, JSON-ready; None when the tenant has no such SKU."""
    with wrap_exceptions(conn):
        row = conn.execute(SHOW_STOCK, {"tenant_id": tenant_id, "sku": sku}).fetchone()
    if row is None:
        return None
    sku, tenant, on_hand, reserved, version, updated_at, name, price, currency = row
    return {
        "sku": sku, "tenant_id": tenant, "on_hand": on_hand, "reserved": reserved,
        "available": on_hand - reserved, "version": version, "updated_at": updated_at.isoformat(),
        "name": name, "price": str(price), "currency": currency,
    }


# -- the relay (``conveyor relay status``) ----------------------------------------------------

OUTBOX_STATS = """
SELECT count(*), min(created_at), now() - min(created_at), now()
FROM outbox WHERE sent_at IS NULL
"""
PENDING_BY_EXCHANGE = """
SELECT exchange, count(*) FROM outbox WHERE sent_at IS NULL GROUP BY exchange ORDER BY exchange
"""
SHOW_ROTATION = """
SELECT r.slot, r.rotated_at, r.rotations, r.truncations,
       (SELECT sum(pg_total_relation_size(relid))::bigint FROM pg_partition_tree('outbox') WHERE isleaf)
FROM outbox_rotation r
"""
SHOW_LEASE = """
SELECT holder, acquired_at, renewed_at, expires_at, coalesce(expires_at > now(), false),
       last_sent_at, sent_total
FROM relay_lease WHERE name = %(name)s
"""


@dataclass(frozen=True)
class OutboxStats:
    pending: int
    oldest_pending_at: datetime | None
    oldest_pending_age_s: float | None
    pending_by_exchange: dict[str, int]
    checked_at: datetime


@dataclass(frozen=True)
class LeaseState:
    holder: str | None
    acquired_at: datetime | None
    renewed_at: datetime | None
    expires_at: datetime | None
    live: bool
    last_sent_at: datetime | None
    sent_total: int


def outbox_stats(conn: psycopg.Connection) -> OutboxStats:
    with wrap_exceptions(conn):
        pending, oldest, age, now = _one(conn, OUTBOX_STATS)
        by_exchange: dict[str, int] = dict(conn.execute(PENDING_BY_EXCHANGE).fetchall())
    return OutboxStats(pending, oldest, age.total_seconds() if age is not None else None, by_exchange, now)


@dataclass(frozen=True)
class RotationState:
    """The outbox's rotating slots (V009): where writers insert, how often it moved on."""

    slot: int
    rotated_at: datetime
    rotations: int
    truncations: int
    size_bytes: int


def rotation_state(conn: psycopg.Connection) -> RotationState:
    with wrap_exceptions(conn):
        return RotationState(*_one(conn, SHOW_ROTATION))


def lease_state(conn: psycopg.Connection, name: str = LEASE) -> LeaseState | None:
    with wrap_exceptions(conn):
        row = conn.execute(SHOW_LEASE, {"name": name}).fetchone()
    return LeaseState(*row) if row else None


# -- the metrics (``workers/observability/observer.py``) --------------------------------------

OUTBOX_BY_STREAM = """
SELECT exchange, count(*), coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8
FROM outbox WHERE sent_at IS NULL GROUP BY exchange
"""
# Sessions other than this one whose snapshot holds the xmin horizon back. Other roles'
# sessions are visible only with pg_read_all_stats (V012 grants it to the worker role).
OLDEST_TRANSACTION = """
SELECT coalesce(max(extract(epoch FROM now() - xact_start)), 0)::float8 FROM pg_stat_activity
WHERE backend_xmin IS NOT NULL AND pid <> pg_backend_pid() AND xact_start IS NOT NULL
"""


def outbox_streams(conn: psycopg.Connection) -> dict[str, tuple[int, float]]:
    """(pending rows, age in seconds of the oldest) per outbound exchange, 0s included."""
    streams = dict.fromkeys(OUTBOUND_EXCHANGES, (0, 0.0))
    with wrap_exceptions(conn):
        streams.update({exchange: (count, age) for exchange, count, age in conn.execute(OUTBOX_BY_STREAM)})
    return streams


def oldest_transaction_seconds(conn: psycopg.Connection) -> float:
    with wrap_exceptions(conn):
        (seconds,) = _one(conn, OLDEST_TRANSACTION)
    return float(seconds)


# -- the demo's summary (``conveyor demo``) ---------------------------------------------------

STATUS_COUNTS = "SELECT status, count(*) FROM orders GROUP BY status"
OVERSOLD = "SELECT count(*) FROM stock_levels WHERE reserved > on_hand OR on_hand < 0 OR reserved < 0"
DUPLICATE_ORDERS = "SELECT count(*) - count(DISTINCT order_id) FROM orders"
SEALED_CUSTOMERS = "SELECT count(*) FROM privacy.order_customers"
# What the orders imply for each SKU, next to what the stock table says.
IMPLIED_STOCK = """
SELECT s.sku, s.on_hand, s.reserved,
       %(seeded)s - coalesce(sum(l.quantity) FILTER (WHERE o.status IN ('SHIPPED', 'DELIVERED')), 0)
           AS implied_on_hand,
       coalesce(sum(l.quantity) FILTER (WHERE o.status IN ('RESERVED', 'PAID')), 0) AS implied_reserved
FROM stock_levels s
LEFT JOIN order_lines l ON l.sku = s.sku
LEFT JOIN orders o ON o.order_id = l.order_id
GROUP BY s.sku, s.on_hand, s.reserved
"""


@dataclass(frozen=True)
class ImpliedStock:
    sku: str
    on_hand: int
    reserved: int
    implied_on_hand: int
    implied_reserved: int

    @property
    def matches(self) -> bool:
        return (self.on_hand, self.reserved) == (self.implied_on_hand, self.implied_reserved)


@dataclass(frozen=True)
class DemoCounts:
    by_status: dict[str, int]
    oversold_skus: int
    duplicate_orders: int
    stock: list[ImpliedStock]
    sealed_customers: int = 0   # orders whose customer data is stored (sealed, docs/privacy.md)


def demo_counts(conn: psycopg.Connection, *, seeded_stock: int) -> DemoCounts:
    """Orders per status, oversold SKUs, duplicate orders, and each SKU's level next to what
    the orders imply given ``seeded_stock`` on hand at the start."""
    with wrap_exceptions(conn):
        by_status: dict[str, int] = dict(conn.execute(STATUS_COUNTS).fetchall())
        (oversold,) = _one(conn, OVERSOLD)
        (duplicates,) = _one(conn, DUPLICATE_ORDERS)
        implied = [ImpliedStock(*row) for row in conn.execute(IMPLIED_STOCK, {"seeded": seeded_stock})]
        (sealed,) = _one(conn, SEALED_CUSTOMERS)
    return DemoCounts(by_status, oversold, duplicates, implied, sealed)


# -- health -----------------------------------------------------------------------------------

PING = "SELECT 1"


def ping(conn: psycopg.Connection) -> None:
    """One round trip: the database answers."""
    with wrap_exceptions(conn):
        conn.execute(PING)


def _one(conn: psycopg.Connection, query: str, params: dict[str, Any] | None = None) -> tuple[Any, ...]:
    row = conn.execute(query, params).fetchone()
    assert row is not None, "an aggregate query returns one row"
    return row
