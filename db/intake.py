"""The order intake's two statements per batch: claim the batch's order ids and read its
stock (one round trip), then write everything the batch decided (one round trip).

New rows travel as one JSON document per kind (orders with their lines, reservations,
events), serialized by pydantic's Rust core straight from the dataclasses and unpacked by
``jsonb_to_recordset`` on the server: psycopg dumps Python lists as text arrays element by
element (≈2.6 ms for a batch's outbox rows, measured) and ``json.dumps`` walks every dict in
Python. Values keep their exact form: ids and money as strings, timestamps in ISO 8601.
The stock keys, which are joined to the ledger's newest versions (``stock_movements``),
travel as arrays (one literal each, ``conveyor.db.arrays``): the planner sizes ``unnest`` of a
parameter right (it takes ``jsonb_to_recordset`` for 100 rows), and
with the sessions' ``random_page_cost`` (``conveyor.db.connection``) it probes the primary key
instead of hashing the whole table.
The caller holds the stock locks of every (tenant, SKU) involved.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from uuid import UUID

import psycopg
from pydantic import TypeAdapter

from conveyor.db.arrays import int_array, text_array
from conveyor.db.errors import IntegrityViolation, TransientDatabaseError
from conveyor.db.notify import OUTBOX_CHANNEL
from conveyor.db.personal import NewCustomer, PersonalData, forget
from conveyor.db.stock import StockLevel

CLAIM_AND_READ = """
WITH new_tenants AS (
    INSERT INTO tenants (tenant_id, name)
    SELECT DISTINCT o.tenant_id, o.tenant_id
    FROM jsonb_to_recordset(%(orders)s::jsonb) AS o(tenant_id text)
    ORDER BY 1
    ON CONFLICT DO NOTHING  -- no conflict target: the worker role may insert tenants, not read them
), claimed AS (
    INSERT INTO order_registry (order_id, tenant_id, placed_at)
    SELECT o.order_id, o.tenant_id, o.placed_at
    FROM jsonb_to_recordset(%(orders)s::jsonb) AS o(order_id uuid, tenant_id text, placed_at timestamptz)
    ON CONFLICT (order_id) DO NOTHING
    RETURNING order_id
)
SELECT order_id::text, NULL, NULL, NULL FROM claimed
UNION ALL
SELECT k.tenant_id, k.sku, s.on_hand, s.reserved
FROM unnest(%(tenants)s::text[], %(skus)s::text[]) AS k(tenant_id, sku)
CROSS JOIN LATERAL (SELECT m.on_hand, m.reserved FROM stock_movements m  -- the newest version (V011)
                    WHERE m.tenant_id = k.tenant_id AND m.sku = k.sku ORDER BY m.version DESC LIMIT 1) s
"""

# Each reserved SKU gets its next version in the ledger (V011: the newest version is the
# level). The WHERE clause is the last line of defence: a reservation that would oversell
# inserts no row, and the short count becomes an error; the CHECKs refuse one anyway, and
# the unique version refuses a second writer. One NOTIFY wakes the relay.
RECORD = f"""
WITH reserved AS (
    INSERT INTO stock_movements (tenant_id, sku, version, delta_on_hand, delta_reserved, on_hand, reserved, cause)
    SELECT r.tenant_id, r.sku, s.version + 1, 0, r.quantity, s.on_hand, s.reserved + r.quantity, %(cause)s
    FROM unnest(%(tenants)s::text[], %(skus)s::text[], %(quantities)s::int[]) AS r(tenant_id, sku, quantity)
    CROSS JOIN LATERAL (SELECT m.version, m.on_hand, m.reserved FROM stock_movements m
                        WHERE m.tenant_id = r.tenant_id AND m.sku = r.sku ORDER BY m.version DESC LIMIT 1) s
    WHERE s.on_hand - s.reserved >= r.quantity
    RETURNING 1
), new_orders AS (
    INSERT INTO orders (order_id, placed_at, tenant_id, customer_id, currency, total, status,
                        status_reason, source_message_id)
    SELECT o.order_id, o.placed_at, o.tenant_id, o.customer_id, o.currency, o.total, o.status,
           o.status_reason, o.source_message_id
    FROM jsonb_to_recordset(%(orders)s::jsonb) AS o(
        order_id uuid, placed_at timestamptz, tenant_id text, customer_id text, currency text,
        total numeric, status text, status_reason text, source_message_id text)
), new_lines AS (
    INSERT INTO order_lines (order_id, line_no, sku, quantity, unit_price, status, reason)
    SELECT o.order_id, l.line_no, l.sku, l.quantity, l.unit_price,
           CASE WHEN o.status = 'RESERVED' THEN 'RESERVED' ELSE 'REJECTED' END, l.reason
    FROM jsonb_to_recordset(%(orders)s::jsonb) AS o(order_id uuid, status text, lines jsonb),
         jsonb_to_recordset(o.lines) AS l(line_no integer, sku text, quantity integer, unit_price numeric,
                                          reason text)
), held AS (
    INSERT INTO reservations (order_id, tenant_id, sku, quantity)
    SELECT h.order_id, h.tenant_id, h.sku, h.quantity
    FROM jsonb_to_recordset(%(held)s::jsonb) AS h(order_id uuid, tenant_id text, sku text, quantity integer)
), sealed AS (  -- customers' data (conveyor.db.personal), under the data key the customer still has
    INSERT INTO order_customers (order_id, tenant_id, customer_id, sealed)
    SELECT s.order_id, s.tenant_id, s.customer_id, decode(s.sealed, 'base64')
    FROM jsonb_to_recordset(%(sealed)s::jsonb) AS s(order_id uuid, tenant_id text, customer_id text, wrapped text,
                                                   sealed text)
    JOIN customer_keys k ON k.tenant_id = s.tenant_id AND k.customer_id = s.customer_id
                        AND k.wrapped_key = decode(s.wrapped, 'base64')
    RETURNING 1
), events AS (
    INSERT INTO outbox (message_id, exchange, routing_key, correlation_id, payload, ordering_key, slot, headers)
    SELECT gen_random_uuid(), e.exchange, e.routing_key, e.correlation_id, e.payload::jsonb, e.correlation_id,
           (SELECT slot FROM outbox_rotation),  -- once per statement, not per row (V009)
           e.headers
    FROM jsonb_to_recordset(%(events)s::jsonb) AS e(exchange text, routing_key text, correlation_id text,
                                                    payload text, headers jsonb)
    RETURNING 1
)
SELECT (SELECT count(*) FROM reserved),
       CASE WHEN EXISTS (SELECT FROM events) THEN pg_notify('{OUTBOX_CHANNEL}', '') END,
       (SELECT count(*) FROM sealed)
"""


@dataclass(slots=True)
class OrderKey:
    """What registers an order id: the id, its tenant and its partition key."""

    order_id: UUID
    tenant_id: str
    placed_at: datetime


@dataclass(slots=True)
class NewLine:
    line_no: int
    sku: str
    quantity: int
    unit_price: Decimal
    reason: str | None = None


@dataclass(slots=True)
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


@dataclass(slots=True)
class Held:
    """One reservation: ``quantity`` of (tenant, SKU) held for the order."""

    order_id: UUID
    tenant_id: str
    sku: str
    quantity: int


@dataclass(slots=True)
class OutboxEvent:
    """An outbox row; events of one correlation id are published in the order written.
    ``payload`` is the event's JSON text (a message model's ``model_dump_json()``)."""

    exchange: str
    routing_key: str
    correlation_id: str
    payload: str
    headers: dict[str, str] | None = None   # causation id, trace context (V014)


KEYS_JSON = TypeAdapter(list[OrderKey])
ORDERS_JSON = TypeAdapter(list[NewOrder])
HELD_JSON = TypeAdapter(list[Held])
EVENTS_JSON = TypeAdapter(list[OutboxEvent])


@dataclass
class Claimed:
    new_orders: set[UUID]
    levels: dict[tuple[str, str], StockLevel]


class IntakeRepository:
    def __init__(self, conn: psycopg.Connection, *, pii_key_file: str | None = None) -> None:
        self._conn = conn
        self._personal = PersonalData(conn, pii_key_file)

    def claim(self, orders: list[OrderKey], stock: list[tuple[str, str]]) -> Claimed:
        """Register the order ids and read the levels of (tenant, SKU) pairs. An id registered
        before is left out of ``new_orders``."""
        rows = self._conn.execute(CLAIM_AND_READ, {
            "orders": KEYS_JSON.dump_json(orders).decode(),
            "tenants": text_array(t for t, _ in stock), "skus": text_array(s for _, s in stock),
        }).fetchall()
        claimed = Claimed(set(), {})
        for first, sku, on_hand, reserved in rows:
            if sku is None:
                claimed.new_orders.add(UUID(first))
            else:
                claimed.levels[(first, sku)] = StockLevel(sku, on_hand, reserved)
        return claimed

    def record(self, *, reserve: dict[tuple[str, str], int], cause: str, orders: list[NewOrder],
               held: list[Held], events: list[OutboxEvent], customers: list[NewCustomer] | None = None) -> None:
        """Reserve each (tenant, SKU) once by the batch's total, insert the orders, their lines
        and reservations, and the outcome events: one statement (and one more, sealed, for
        the customers' personal data when the batch carries any)."""
        sealed = self._personal.seal(customers) if customers else None
        stock = sorted(reserve)
        row = self._conn.execute(RECORD, {
            "cause": cause,
            "tenants": text_array(t for t, _ in stock), "skus": text_array(s for _, s in stock),
            "quantities": int_array(reserve[key] for key in stock),
            "orders": ORDERS_JSON.dump_json(orders).decode(),
            "held": HELD_JSON.dump_json(held).decode(),
            "events": EVENTS_JSON.dump_json(events).decode(),
            "sealed": sealed.rows_json if sealed else "[]",
        }).fetchone()
        matched = row[0] if row is not None else 0  # one row always: a SELECT without FROM
        if sealed and (row is None or row[2] != sealed.count):
            forget(customers or [])
            raise TransientDatabaseError("a customer's data key changed (rotated or erased) since it was cached;"
                                         " retrying")
        if matched != len(stock):
            raise IntegrityViolation(f"batch reservation matched {matched} of {len(stock)} SKUs;"
                                     " stock changed under the lock")
