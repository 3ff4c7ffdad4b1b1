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

from dataclasses import dataclass, field
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
from conveyor.schemas.money import DEFAULT_BASE_CURRENCY

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
), batch AS MATERIALIZED (  -- what prices the orders (V019): tenant, currency, day, ship-to
    SELECT o.order_id, o.tenant_id, o.currency, (o.placed_at AT TIME ZONE 'UTC')::date AS day, o.country, o.region,
           coalesce(t.base_currency, %(default_base)s) AS base, t.prices_include_tax AS inclusive,
           EXISTS (SELECT FROM inventory.tax_rules r WHERE r.tenant_id = o.tenant_id) AS taxed
    FROM jsonb_to_recordset(%(orders)s::jsonb) AS o(order_id uuid, tenant_id text, placed_at timestamptz,
                                                   currency text, country text, region text)
    LEFT JOIN inventory.tenants t ON t.tenant_id = o.tenant_id
)
SELECT order_id::text, NULL, NULL, NULL, NULL::jsonb FROM claimed
UNION ALL
SELECT k.tenant_id, k.sku, s.on_hand, s.reserved, NULL
FROM unnest(%(tenants)s::text[], %(skus)s::text[]) AS k(tenant_id, sku)
CROSS JOIN LATERAL (SELECT m.on_hand, m.reserved FROM stock_movements m  -- the newest version (V011)
                    WHERE m.tenant_id = k.tenant_id AND m.sku = k.sku ORDER BY m.version DESC LIMIT 1) s
UNION ALL
SELECT NULL, NULL, NULL, NULL, jsonb_build_object(
    'tenants', (SELECT jsonb_object_agg(b.tenant_id, jsonb_build_array(b.base, coalesce(b.inclusive, false), b.taxed))
                FROM (SELECT DISTINCT tenant_id, base, inclusive, taxed FROM batch) b),
    -- the rate of the order's day, quoted either way (1 order currency = rate base, or the inverse)
    'fx', (SELECT jsonb_object_agg(b.order_id, jsonb_build_array(f.id, f.rate::text, f.inverse))
           FROM batch b
           CROSS JOIN LATERAL (SELECT r.id, r.rate, r.to_currency <> b.base AS inverse FROM orders.fx_rates r
                               WHERE ((r.from_currency, r.to_currency) = (b.currency, b.base)
                                      OR (r.from_currency, r.to_currency) = (b.base, b.currency))
                                 AND r.valid_from <= b.day AND (r.valid_to IS NULL OR r.valid_to > b.day)
                               ORDER BY 3 LIMIT 1) f
           WHERE b.currency <> b.base),
    -- per taxed order, its jurisdiction's rule per category (the region's before the country's)
    'tax', (SELECT jsonb_object_agg(b.order_id, x.rules) FROM batch b
            CROSS JOIN LATERAL (
                SELECT jsonb_object_agg(d.category, jsonb_build_array(d.rate_percent::text, d.jurisdiction)) AS rules
                FROM (SELECT DISTINCT ON (r.category) r.category, r.rate_percent, r.jurisdiction
                      FROM inventory.tax_rules r
                      WHERE r.tenant_id = b.tenant_id
                        AND r.jurisdiction IN (b.country, b.country || '-' || b.region)
                        AND r.valid_from <= b.day AND (r.valid_to IS NULL OR r.valid_to > b.day)
                      ORDER BY r.category, length(r.jurisdiction) DESC) d) x
            WHERE b.taxed AND b.country IS NOT NULL AND x.rules IS NOT NULL),
    'categories', (SELECT jsonb_agg(jsonb_build_array(p.tenant_id, p.sku, p.tax_category))
                   FROM unnest(%(tenants)s::text[], %(skus)s::text[]) AS k(tenant_id, sku)
                   JOIN inventory.products p ON p.tenant_id = k.tenant_id AND p.sku = k.sku
                   WHERE p.tax_category IS NOT NULL
                     AND k.tenant_id IN (SELECT tenant_id FROM batch WHERE taxed)))
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
                        status_reason, source_message_id, net_total, tax_total, tax_jurisdiction,
                        base_currency, base_total, fx_rate, fx_rate_id, fx_missing)
    SELECT o.order_id, o.placed_at, o.tenant_id, o.customer_id, o.currency, o.total, o.status,
           o.status_reason, o.source_message_id, o.net_total, o.tax_total, o.tax_jurisdiction,
           o.base_currency, o.base_total, o.fx_rate, o.fx_rate_id, o.fx_missing
    FROM jsonb_to_recordset(%(orders)s::jsonb) AS o(
        order_id uuid, placed_at timestamptz, tenant_id text, customer_id text, currency text,
        total numeric, status text, status_reason text, source_message_id text, net_total numeric,
        tax_total numeric, tax_jurisdiction text, base_currency text, base_total numeric, fx_rate numeric,
        fx_rate_id bigint, fx_missing boolean)
), new_lines AS (
    INSERT INTO order_lines (order_id, line_no, sku, quantity, unit_price, status, reason, tax_category,
                             tax_rate, tax_amount)
    SELECT o.order_id, l.line_no, l.sku, l.quantity, l.unit_price,
           CASE WHEN o.status = 'RESERVED' THEN 'RESERVED' ELSE 'REJECTED' END, l.reason, l.tax_category,
           l.tax_rate, l.tax_amount
    FROM jsonb_to_recordset(%(orders)s::jsonb) AS o(order_id uuid, status text, lines jsonb),
         jsonb_to_recordset(o.lines) AS l(line_no integer, sku text, quantity integer, unit_price numeric,
                                          reason text, tax_category text, tax_rate numeric, tax_amount numeric)
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
    currency: str = DEFAULT_BASE_CURRENCY   # what prices it (V019)
    country: str | None = None
    region: str | None = None


@dataclass(slots=True)
class NewLine:
    line_no: int
    sku: str
    quantity: int
    unit_price: Decimal
    reason: str | None = None
    tax_category: str | None = None
    tax_rate: Decimal | None = None     # percent; None: no rule applied
    tax_amount: Decimal | None = None


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
    net_total: Decimal | None = None    # V019: None for tenants without tax rules
    tax_total: Decimal | None = None
    tax_jurisdiction: str | None = None
    base_currency: str | None = None
    base_total: Decimal | None = None   # None while fx_missing
    fx_rate: Decimal | None = None
    fx_rate_id: int | None = None
    fx_missing: bool = False


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


@dataclass(slots=True)
class TenantMoney:
    base_currency: str = DEFAULT_BASE_CURRENCY
    prices_include_tax: bool = False
    taxed: bool = False   # the tenant has tax rules


@dataclass(slots=True)
class FxRate:
    rate_id: int
    rate: Decimal
    inverse: bool   # the row quotes 1 base = rate order currency


@dataclass
class Pricing:
    """What prices a batch: per tenant its settings; per order its rate and its tax rules
    (category -> (percent, jurisdiction)); per (tenant, SKU) the product's tax category."""

    tenants: dict[str, TenantMoney] = field(default_factory=dict)
    fx: dict[UUID, FxRate] = field(default_factory=dict)
    tax: dict[UUID, dict[str, tuple[Decimal, str]]] = field(default_factory=dict)
    categories: dict[tuple[str, str], str] = field(default_factory=dict)

    @classmethod
    def from_json(cls, doc: dict) -> Pricing:
        return cls(
            tenants={t: TenantMoney(b, i, x) for t, (b, i, x) in (doc.get("tenants") or {}).items()},
            fx={UUID(o): FxRate(i, Decimal(r), v) for o, (i, r, v) in (doc.get("fx") or {}).items()},
            tax={UUID(o): {c: (Decimal(p), j) for c, (p, j) in rules.items()}
                 for o, rules in (doc.get("tax") or {}).items()},
            categories={(t, s): c for t, s, c in doc.get("categories") or ()})


@dataclass
class Claimed:
    new_orders: set[UUID]
    levels: dict[tuple[str, str], StockLevel]
    pricing: Pricing = field(default_factory=Pricing)


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
            "default_base": DEFAULT_BASE_CURRENCY,
        }).fetchall()
        claimed = Claimed(set(), {})
        for first, sku, on_hand, reserved, pricing in rows:
            if pricing is not None:
                claimed.pricing = Pricing.from_json(pricing)
            elif sku is None:
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
