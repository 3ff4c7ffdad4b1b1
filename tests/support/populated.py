"""A realistic, deterministic data set for migration tests, loaded at the oldest schema (V001)
and topped up at later ones, so that every migration that moves or rewrites data runs on rows.

``load(url, workdir, through=N)`` migrates an empty database to each stage's version in turn
(a temporary directory holding copies of the first migration files, ``migrate_to``) and runs
the stage's loader there, with SQL of that version's schema; ``STAGES`` maps versions to
loaders for tests that step through the migrations themselves. What each stage writes:

- V001: four tenants, 520 products (SKUs with dots, slashes, spaces and non-ASCII letters
  too), stock levels, 3,000 orders over five months (their monthly partitions by the shop's
  ``placed_at``, and the default partition for shop timestamps far off), their lines and
  reservations (reserved all or nothing against the stock, as the worker decides), one inbox
  row per order and outbox events for the recent ones (some sent, some pending: a relay
  behind); a few order registry rows recorded a moment before their order row;
- V002: the lifecycle of the older reserved orders (paid, shipped, delivered, cancelled by a
  failed payment or a request, expired): payments, shipments, the transition log, reservations
  settled, stock committed or released month by month through the ledger triggers;
- V003: restocks and new SKUs through the stock triggers (ledger and ``stock.changed`` rows);
- V004: the DLQ console's audit trail (runs of every action and outcome, their messages);
- V008: a correction of a few levels made with triggers off (``UNTRACKED`` SKUs: V011 must
  catch the ledger up with them) and order events still pending before V009 rotates the outbox;
- V011: restocks and a new SKU through the ``stock_levels`` view (the append-only ledger);
- V014: orders shipped in several parcels, so that shipments outgrow one batch (5,000 rows) of
  a batched backfill (V016).

Everything comes from ``random.Random`` seeded per stage and a time ``anchor`` (this hour by
default): the same seed and anchor give the same rows, but for what the database makes itself
(V001's ``default`` tenant, the stock triggers' ledger and outbox rows, stamped with the clock).
The timestamps the loader chooses are never after the anchor.
Rows are written with COPY and parameterised statements only.
"""

from __future__ import annotations

import json
import random
import shutil
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import psycopg
from psycopg import sql

from conveyor.db.connection import SEARCH_PATH
from conveyor.db.migrate import default_directory, migrate

SEED = 16
UNTRACKED = 7           # levels V008's stage changes with triggers off (V011 catches them up)
ORDERS, RECENT = 3_000, 300
TENANTS = (("default", None), ("shop-1", "Shop One"), ("acme.eu", "ACME Europe GmbH"),
           ("tenant_3", "Bäckerei Müller & Söhne"))
CURRENCY = {"default": "EUR", "shop-1": "EUR", "acme.eu": "GBP", "tenant_3": "USD"}
PRODUCTS_PER_TENANT = 130
FAR_AHEAD = timedelta(days=400)   # a shop clock far off (issue 14): past V001's partitions, in the default one


@dataclass
class Stage:
    """What a stage's loader gets: an autocommit connection, its own seeded generator, the anchor."""

    conn: psycopg.Connection
    rng: random.Random
    anchor: datetime

    def uuid(self) -> uuid.UUID:
        return uuid.UUID(int=self.rng.getrandbits(128), version=4)

    def ago(self, low: timedelta, high: timedelta) -> datetime:
        seconds = self.rng.uniform(low.total_seconds(), high.total_seconds())
        return self.anchor - timedelta(seconds=seconds)


# -- migrating to a version --------------------------------------------------------------------

def version_of(path: Path) -> int:
    return int(path.name[1:].split("__", 1)[0])


def migrations_through(version: int, workdir: Path) -> Path:
    """A directory with copies of the migration files up to ``version``."""
    target = workdir / f"migrations_through_{version:03d}"
    if not target.exists():
        target.mkdir(parents=True)
        for path in sorted(default_directory().glob("V*.sql")):
            if version_of(path) <= version:
                shutil.copy(path, target / path.name)
    return target


def migrate_to(url: str, version: int, workdir: Path, *, contract: bool = False) -> None:
    """Apply the migrations up to ``version``, contract steps too with ``contract`` (whatever
    the runner returns, it is not read: ``applied_versions`` says what the database has)."""
    migrate(url, directory=migrations_through(version, workdir), contract=contract)


def versions() -> list[int]:
    """Every migration version of the default directory, in order."""
    return sorted(version_of(p) for p in default_directory().glob("V*.sql"))


def applied_versions(conn: psycopg.Connection) -> list[int]:
    return [v for (v,) in conn.execute("SELECT version FROM public.schema_history ORDER BY version")]


def connect(url: str) -> psycopg.Connection:
    """Autocommit, with Conveyor's search path (before V013 only ``public`` of it exists)."""
    return psycopg.connect(url, autocommit=True, options=f"-c search_path={SEARCH_PATH}")


def load(url: str, workdir: Path, *, through: int, seed: int = SEED, anchor: datetime | None = None) -> datetime:
    """Migrate to each stage's version up to ``through``, load it there, end at ``through``;
    returns the anchor used."""
    anchor = anchor or default_anchor()
    for version in sorted(v for v in STAGES if v <= through):
        migrate_to(url, version, workdir)
        run_stage(url, version, seed=seed, anchor=anchor)
    migrate_to(url, through, workdir)
    return anchor


def run_stage(url: str, version: int, *, seed: int = SEED, anchor: datetime) -> None:
    with connect(url) as conn:
        STAGES[version](Stage(conn, random.Random(f"{seed}:{version}"), anchor))


def default_anchor() -> datetime:
    return datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)


# -- writing rows --------------------------------------------------------------------------------

def copy_rows(conn: psycopg.Connection, table: str, columns: Sequence[str], rows: Iterable[Sequence]) -> None:
    """COPY ``rows`` into ``table`` (a possibly qualified name) in one transaction."""
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(*table.split(".")), sql.SQL(", ").join(map(sql.Identifier, columns)))
    with conn.transaction(), conn.cursor() as cursor, cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)


def update_from(conn: psycopg.Connection, columns: str, rows: Iterable[Sequence], statement: str,
                params: dict | None = None) -> None:
    """COPY ``rows`` into a temporary table ``changes (columns)`` and run ``statement`` (which
    reads it) in the same transaction."""
    with conn.transaction():
        conn.execute(f"CREATE TEMP TABLE changes ({columns}) ON COMMIT DROP")
        names = [c.split()[0] for c in columns.split(",")]
        with conn.cursor() as cursor, cursor.copy(
                sql.SQL("COPY changes ({}) FROM STDIN").format(sql.SQL(", ").join(map(sql.Identifier, names)))) as copy:
            for row in rows:
                copy.write_row(row)
        conn.execute(statement, params)


def event(exchange: str, routing_key: str, payload: dict, stage: Stage, *, correlation_id: str | None,
          created_at: datetime) -> tuple:
    return (stage.uuid(), exchange, routing_key, correlation_id, json.dumps(payload), created_at)


OUTBOX_COLUMNS = ("message_id", "exchange", "routing_key", "correlation_id", "payload", "created_at")


# -- V001: catalogue, stock, orders, inbox, outbox -------------------------------------------------

@dataclass
class Item:
    tenant_id: str
    sku: str
    price: Decimal
    on_hand: int | None          # None: a product without a stock level
    reserved: int = 0
    version: int = 1


@dataclass
class Order:
    order_id: uuid.UUID
    tenant_id: str
    customer_id: str
    created_at: datetime
    placed_at: datetime
    message_id: str
    lines: list[tuple[str, int, Decimal]]                   # sku, quantity, unit price
    status: str = "RESERVED"
    reasons: dict[int, str] = field(default_factory=dict)  # line number -> rejection reason
    held: dict[str, int] = field(default_factory=dict)     # sku -> quantity reserved

    @property
    def total(self) -> Decimal:
        return sum((q * p for _, q, p in self.lines), Decimal("0"))


def sku_name(i: int) -> str:
    if i % 13 == 0:
        return f"Größe M/{i} rot"
    if i % 29 == 0:
        return f"kit.{i}*#"
    return f"SKU-{i:04d}"


def catalogue(stage: Stage) -> dict[tuple[str, str], Item]:
    rng, items = stage.rng, {}
    for tenant_id, _ in TENANTS:
        for i in range(1, PRODUCTS_PER_TENANT + 1):
            on_hand = None if rng.random() < 0.04 else (
                rng.randint(0, 15) if rng.random() < 0.15 else rng.randint(40, 400))
            price = Decimal(rng.randint(99, 49_999)) / 100
            items[tenant_id, sku_name(i)] = Item(tenant_id, sku_name(i), price, on_hand)
    return items


def make_orders(stage: Stage, items: dict[tuple[str, str], Item]) -> list[Order]:
    rng, skus = stage.rng, defaultdict(list)
    for (tenant_id, sku) in items:
        skus[tenant_id].append(sku)
    orders = []
    for n in range(ORDERS):
        tenant_id = rng.choices([t for t, _ in TENANTS], weights=[1, 5, 3, 2])[0]
        recent = n < RECENT
        created = stage.ago(timedelta(minutes=1), timedelta(hours=3)) if recent else \
            stage.ago(timedelta(hours=3), timedelta(days=150))
        placed = stage.anchor + FAR_AHEAD if rng.random() < 0.01 else created - timedelta(seconds=rng.uniform(0, 90))
        chosen = rng.sample(skus[tenant_id], rng.choice([1, 1, 2, 2, 3, 4]))
        if rng.random() < 0.05:
            chosen.append(chosen[0])                      # a SKU on two lines
        if rng.random() < 0.03:
            chosen.append(f"GONE-{rng.randint(1, 50)}")   # not in the catalogue
        lines = [(s, rng.choice([1, 1, 1, 2, 2, 3, 5, 12]),
                  items[tenant_id, s].price if (tenant_id, s) in items else Decimal("1.00")) for s in chosen]
        orders.append(Order(stage.uuid(), tenant_id, f"customer-{rng.randint(1, 800)}", created, placed,
                            str(stage.uuid()), lines))
    return sorted(orders, key=lambda o: o.created_at)


def decide(order: Order, items: dict[tuple[str, str], Item]) -> None:
    """The reservation rule: all or nothing, a SKU on several lines reserved once for the sum."""
    wanted: dict[str, int] = defaultdict(int)
    for sku, quantity, _ in order.lines:
        wanted[sku] += quantity
    for line_no, (sku, _, _) in enumerate(order.lines, start=1):
        item = items.get((order.tenant_id, sku))
        if item is None or item.on_hand is None:
            order.reasons[line_no] = "unknown_sku"
        elif wanted[sku] > item.on_hand - item.reserved:
            order.reasons[line_no] = "insufficient_stock"
    if order.reasons:
        order.status = "REJECTED"
        return
    for sku, quantity in wanted.items():
        item = items[order.tenant_id, sku]
        item.reserved += quantity
        item.version += 1
        order.held[sku] = quantity


def load_v001(stage: Stage) -> None:
    items = catalogue(stage)
    orders = make_orders(stage, items)
    for order in orders:
        decide(order, items)
    write_catalogue(stage, items)
    first_month = stage.anchor - timedelta(days=155)
    stage.conn.execute("SELECT conveyor_create_order_partitions(%(start)s, %(months)s)",
                       {"start": first_month, "months": 7})
    write_orders(stage, orders)
    write_order_messages(stage, orders)


def write_catalogue(stage: Stage, items: dict[tuple[str, str], Item]) -> None:
    conn, created = stage.conn, stage.anchor - timedelta(days=200)
    copy_rows(conn, "tenants", ("tenant_id", "name", "created_at"),
              ((t, name, created) for t, name in TENANTS if name is not None))
    copy_rows(conn, "products", ("tenant_id", "sku", "name", "price", "currency", "created_at"),
              ((i.tenant_id, i.sku, f"Product {i.sku}", i.price, CURRENCY[i.tenant_id], created)
               for i in items.values()))
    copy_rows(conn, "stock_levels", ("tenant_id", "sku", "on_hand", "reserved", "version", "updated_at"),
              ((i.tenant_id, i.sku, i.on_hand, i.reserved, i.version, created + timedelta(days=1))
               for i in items.values() if i.on_hand is not None))


def write_orders(stage: Stage, orders: list[Order]) -> None:
    conn, rng = stage.conn, stage.rng
    registry = [(o.order_id, o.tenant_id, o.placed_at,
                 o.created_at - timedelta(milliseconds=rng.randint(1, 900)) if rng.random() < 0.05 else o.created_at)
                for o in orders]
    copy_rows(conn, "order_registry", ("order_id", "tenant_id", "placed_at", "created_at"), registry)
    copy_rows(conn, "orders", ("order_id", "placed_at", "tenant_id", "customer_id", "currency", "total", "status",
                               "status_reason", "source_message_id", "created_at", "updated_at"),
              ((o.order_id, o.placed_at, o.tenant_id, o.customer_id, CURRENCY[o.tenant_id], o.total, o.status,
                next(iter(o.reasons.values()), None), o.message_id, o.created_at, o.created_at) for o in orders))
    copy_rows(conn, "order_lines", ("order_id", "line_no", "sku", "quantity", "unit_price", "status", "reason"),
              ((o.order_id, n, sku, q, p, "RESERVED" if o.status == "RESERVED" else "REJECTED", o.reasons.get(n))
               for o in orders for n, (sku, q, p) in enumerate(o.lines, start=1)))
    copy_rows(conn, "reservations", ("order_id", "tenant_id", "sku", "quantity", "state", "created_at"),
              ((o.order_id, o.tenant_id, sku, q, "HELD", o.created_at) for o in orders for sku, q in o.held.items()))


def write_order_messages(stage: Stage, orders: list[Order]) -> None:
    """The inbox row of every order; the outbox events of the recent ones, 60 % sent."""
    rng = stage.rng
    copy_rows(stage.conn, "inbox", ("message_id", "handler", "processed_at"),
              ((o.message_id, "orders", o.created_at + timedelta(milliseconds=rng.randint(2, 60))) for o in orders))
    recent = [o for o in orders if o.created_at >= stage.anchor - timedelta(hours=3)]
    events = [(*outcome_event(stage, o), o.created_at + timedelta(seconds=1) if rng.random() < 0.6 else None)
              for o in recent]
    copy_rows(stage.conn, "outbox", (*OUTBOX_COLUMNS, "sent_at"), events)


def outcome_event(stage: Stage, order: Order) -> tuple:
    common = {"order_id": str(order.order_id), "tenant_id": order.tenant_id, "customer_id": order.customer_id,
              "occurred_at": order.created_at.isoformat()}
    if order.status == "RESERVED":
        payload = {**common, "currency": CURRENCY[order.tenant_id], "total": f"{order.total:f}",
                   "lines": [{"line_no": n, "sku": s, "quantity": q, "unit_price": f"{p:f}"}
                             for n, (s, q, p) in enumerate(order.lines, start=1)]}
        key = "order.reserved"
    else:
        payload = {**common, "lines": [{"line_no": n, "sku": order.lines[n - 1][0],
                                        "requested": order.lines[n - 1][1], "available": 0, "reason": reason}
                                       for n, reason in order.reasons.items()]}
        key = "order.rejected"
    return event("order-events", key, payload, stage, correlation_id=str(order.order_id),
                 created_at=order.created_at)


# -- V002: the orders' lifecycle -----------------------------------------------------------------

@dataclass
class Life:
    """What V002's stage writes, collected before it is written."""

    moves: list[tuple] = field(default_factory=list)        # order_id, from, to, event, message_id, reason, at
    payments: list[tuple] = field(default_factory=list)
    shipments: list[tuple] = field(default_factory=list)
    inbox: list[tuple] = field(default_factory=list)
    settled: list[tuple] = field(default_factory=list)      # order_id, state, settled_at
    stock: dict[str, dict[tuple[str, str], list[int]]] = field(default_factory=lambda: defaultdict(dict))


FATES = (("delivered", 30), ("shipped", 8), ("paid", 8), ("failed", 8), ("cancelled", 5), ("expired", 10),
         ("reserved", 4))
CARRIERS = ("DHL", "UPS", "DPD", "La Poste", "Royal Mail")


def load_v002(stage: Stage) -> None:
    rows = stage.conn.execute(
        "SELECT o.order_id, o.tenant_id, o.currency, o.total, o.created_at FROM orders o"
        " WHERE o.status = 'RESERVED' AND o.created_at < %(before)s ORDER BY o.order_id",
        {"before": stage.anchor - timedelta(days=2)}).fetchall()
    held: dict = defaultdict(list)
    for order_id, tenant_id, sku, quantity in stage.conn.execute(
            "SELECT order_id, tenant_id, sku, quantity FROM reservations WHERE state = 'HELD'"):
        held[order_id].append((tenant_id, sku, quantity))
    life = Life()
    for order_id, tenant_id, currency, total, created_at in rows:
        fate = stage.rng.choices([f for f, _ in FATES], weights=[w for _, w in FATES])[0]
        live(stage, life, (order_id, tenant_id, currency, total), created_at, fate, held[order_id])
    write_life(stage, life)


def live(stage: Stage, life: Life, order: tuple, at: datetime, fate: str, held: list[tuple]) -> None:
    """One order's way to its fate: each step a few hours after the last, none after the anchor."""
    order_id, tenant_id, currency, total = order
    steps = {"delivered": ["paid", "shipped", "delivered"], "shipped": ["paid", "shipped"], "paid": ["paid"],
             "failed": ["failed"], "cancelled": ["cancelled"], "expired": ["expired"], "reserved": []}[fate]
    status, shipment_id = "RESERVED", f"ship-{stage.uuid().hex[:12]}"
    for name in steps:
        at += timedelta(hours=stage.rng.uniform(1, 60))
        if at > stage.anchor - timedelta(minutes=5):
            return
        message_id = None if name == "expired" else str(stage.uuid())
        status = advance(stage, life, order, name, status, at, message_id, shipment_id)
        if name in ("shipped", "failed", "cancelled", "expired"):
            state = "COMMITTED" if name == "shipped" else "RELEASED"
            life.settled.append((order_id, state, at))
            month = at.strftime("%Y-%m")
            for tenant, sku, quantity in held:
                change = life.stock[month].setdefault((tenant, sku), [0, 0])
                change[0] -= quantity if state == "COMMITTED" else 0
                change[1] -= quantity


TO = {"paid": ("PAID", "payment_authorized", "payments"), "shipped": ("SHIPPED", "shipment_dispatched", "shipments"),
      "delivered": ("DELIVERED", "shipment_delivered", "shipments"),
      "failed": ("CANCELLED", "payment_failed", "payments"), "cancelled": ("CANCELLED", "cancel_requested", "orders"),
      "expired": ("EXPIRED", "reservation_expired", None)}


def advance(stage: Stage, life: Life, order: tuple, name: str, status: str, at: datetime, message_id: str | None,
         shipment_id: str) -> str:
    order_id, _, currency, total = order
    to, event_name, handler = TO[name]
    reason = {"failed": "payment failed: card declined", "cancelled": "customer changed their mind",
              "expired": "reservation expired"}.get(name)
    life.moves.append((order_id, status, to, event_name, message_id, reason, at))
    if handler:
        life.inbox.append((message_id, handler, at + timedelta(milliseconds=5)))
    if name in ("paid", "failed"):
        outcome = "authorized" if name == "paid" else "failed"
        life.payments.append((f"pay-{stage.uuid().hex[:16]}", order_id, outcome,
                              total if name == "paid" else None, currency if name == "paid" else None,
                              "card declined" if name == "failed" else None, at))
        if name == "paid" and stage.rng.random() < 0.03:   # a second authorization: refused
            life.payments.append((f"pay-{stage.uuid().hex[:16]}", order_id, "refused", total, currency,
                                  "order is already paid", at + timedelta(minutes=3)))
    elif name in ("shipped", "delivered"):
        carrier = stage.rng.choice(CARRIERS) if name == "shipped" else None
        tracking = f"{carrier[:2].upper()}{stage.rng.randint(10**9, 10**10 - 1)}" \
            if carrier and stage.rng.random() < 0.9 else None
        life.shipments.append((shipment_id, name.replace("shipped", "dispatched"), order_id, carrier, tracking, at))
    return to


def write_life(stage: Stage, life: Life) -> None:
    conn = stage.conn
    copy_rows(conn, "order_transitions", ("order_id", "from_status", "to_status", "event", "message_id", "reason",
                                          "occurred_at"), sorted(life.moves, key=lambda m: m[6]))
    copy_rows(conn, "payments", ("payment_id", "order_id", "outcome", "amount", "currency", "detail", "received_at"),
              life.payments)
    copy_rows(conn, "shipments", ("shipment_id", "event", "order_id", "carrier", "tracking_number", "received_at"),
              life.shipments)
    copy_rows(conn, "inbox", ("message_id", "handler", "processed_at"), life.inbox)
    last = {}
    for order_id, _, to, _, _, reason, at in sorted(life.moves, key=lambda m: m[6]):
        last[order_id] = (order_id, to, reason, at)
    update_from(conn, "order_id uuid, status text, reason text, at timestamptz", last.values(),
                "UPDATE orders o SET status = c.status, status_reason = c.reason, updated_at = c.at"
                " FROM changes c WHERE o.order_id = c.order_id")
    update_from(conn, "order_id uuid, state text, at timestamptz", life.settled,
                "UPDATE reservations r SET state = c.state, settled_at = c.at FROM changes c"
                " WHERE r.order_id = c.order_id AND r.state = 'HELD'")
    for month in sorted(life.stock):   # one change per SKU and month: the ledger triggers number them
        update_from(conn, "tenant_id text, sku text, d_on_hand integer, d_reserved integer",
                    ((t, s, d[0], d[1]) for (t, s), d in life.stock[month].items()),
                    "UPDATE stock_levels l SET on_hand = l.on_hand + c.d_on_hand,"
                    " reserved = l.reserved + c.d_reserved, last_cause = %(cause)s"
                    " FROM changes c WHERE l.tenant_id = c.tenant_id AND l.sku = c.sku",
                    {"cause": f"order.settled:{month}"})
    recent = sorted(life.moves, key=lambda m: m[6])[-25:]
    copy_rows(conn, "outbox", OUTBOX_COLUMNS, (
        event("order-events", f"order.{m[2].lower()}", {"order_id": str(m[0]), "status": m[2],
              "previous_status": m[1], "occurred_at": m[6].isoformat()}, stage,
              correlation_id=str(m[0]), created_at=m[6]) for m in recent))


# -- V003, V004, V008, V011 ------------------------------------------------------------------------

def load_v003(stage: Stage) -> None:
    """Restocks of 100 levels and 10 new SKUs: the stock triggers write the ledger and the outbox."""
    conn, rng = stage.conn, stage.rng
    levels = conn.execute("SELECT tenant_id, sku FROM stock_levels ORDER BY tenant_id, sku").fetchall()
    update_from(conn, "tenant_id text, sku text, n integer",
                ((t, s, rng.randint(5, 200)) for t, s in rng.sample(levels, 100)),
                "UPDATE stock_levels l SET on_hand = l.on_hand + c.n, last_cause = 'stock-set:ops'"
                " FROM changes c WHERE l.tenant_id = c.tenant_id AND l.sku = c.sku")
    new = [("shop-1", f"NEW-{i:02d}" if i % 3 else f"new item {i}.b") for i in range(10)]
    copy_rows(conn, "products", ("tenant_id", "sku", "name", "price", "currency", "created_at"),
              ((t, s, f"Product {s}", Decimal(rng.randint(100, 9_999)) / 100, "EUR", stage.anchor) for t, s in new))
    with conn.transaction(), conn.cursor() as cursor:
        cursor.executemany("INSERT INTO stock_levels (tenant_id, sku, on_hand, last_cause)"
                           " VALUES (%(tenant)s, %(sku)s, %(on_hand)s, 'stock-set:ops')",
                           [{"tenant": t, "sku": s, "on_hand": rng.randint(1, 90)} for t, s in new])


DLQ_ACTIONS = (("replay", "replayed"), ("purge", "purged"), ("import", "imported"))


def load_v004(stage: Stage) -> None:
    """40 DLQ console runs of every action and outcome, with 0 to 30 messages each."""
    rng, runs, messages = stage.rng, [], []
    for n in range(40):
        action, verb = DLQ_ACTIONS[n % 3]
        outcome = rng.choice(["ok", "ok", "ok", "failed", "stopped", "running"])
        started = stage.ago(timedelta(hours=1), timedelta(days=120))
        run_id, count = stage.uuid(), rng.randint(0, 30)
        failed = int(outcome == "failed" and count > 0)
        runs.append((run_id, action, rng.choice(["ops-alice", "ops-bob"]), "conveyor.orders.dlq",
                     json.dumps({"reason": rng.choice(["unknown_sku", None]), "limit": count}), started,
                     None if outcome == "running" else started + timedelta(seconds=count), outcome, count,
                     count - failed, failed, None if outcome == "ok" else outcome))
        for seq in range(1, count + 1):
            messages.append((run_id, seq, None if rng.random() < 0.1 else str(stage.uuid()),
                             "skipped" if rng.random() < 0.05 else verb,
                             "orders -> order.created" if action == "replay" else None,
                             f"{rng.getrandbits(64):016x}", started + timedelta(seconds=seq)))
    copy_rows(stage.conn, "dlq_audit_runs", ("run_id", "action", "operator", "queue", "selection", "started_at",
                                             "finished_at", "outcome", "matched", "succeeded", "failed", "detail"),
              runs)
    copy_rows(stage.conn, "dlq_audit_messages", ("run_id", "seq", "message_id", "outcome", "target", "fingerprint",
                                                 "recorded_at"), messages)


def load_v008(stage: Stage) -> None:
    """A stock count fixed with triggers off (as a restore with --disable-triggers would), and
    order events still pending when V009 rotates the outbox."""
    conn = stage.conn
    levels = conn.execute("SELECT tenant_id, sku FROM stock_levels ORDER BY tenant_id, sku").fetchall()
    with conn.transaction():
        conn.execute("SET LOCAL session_replication_role = replica")
        with conn.cursor() as cursor:
            cursor.executemany("UPDATE stock_levels SET on_hand = on_hand + 5"
                               " WHERE tenant_id = %(tenant)s AND sku = %(sku)s",
                               [{"tenant": t, "sku": s} for t, s in stage.rng.sample(levels, UNTRACKED)])
    orders = conn.execute("SELECT order_id, tenant_id, status, updated_at FROM orders"
                          " ORDER BY updated_at DESC, order_id LIMIT 40").fetchall()
    copy_rows(conn, "outbox", (*OUTBOX_COLUMNS, "sent_at"), (
        (*event("order-events", f"order.{s.lower()}", {"order_id": str(o), "tenant_id": t, "status": s}, stage,
                correlation_id=str(o), created_at=at), None) for o, t, s, at in orders))


def load_v011(stage: Stage) -> None:
    """Restocks through the stock_levels view (each one appends a version) and a new SKU."""
    conn, rng = stage.conn, stage.rng
    levels = conn.execute("SELECT tenant_id, sku FROM stock_levels ORDER BY tenant_id, sku").fetchall()
    with conn.transaction(), conn.cursor() as cursor:
        cursor.executemany("UPDATE stock_levels SET on_hand = on_hand + %(n)s, last_cause = 'stock-set:ops'"
                           " WHERE tenant_id = %(tenant)s AND sku = %(sku)s",
                           [{"tenant": t, "sku": s, "n": rng.randint(1, 50)} for t, s in rng.sample(levels, 60)])
        cursor.execute("INSERT INTO products (tenant_id, sku, name, price, created_at)"
                       " VALUES ('acme.eu', 'V011-NEW', 'New', 3.5, %(at)s)", {"at": stage.anchor})
        cursor.execute("INSERT INTO stock_levels (tenant_id, sku, on_hand) VALUES ('acme.eu', 'V011-NEW', 12)")


def load_v014(stage: Stage) -> None:
    """Orders shipped in several parcels: more shipments than one batch of a backfill (5,000 rows)."""
    rng, rows = stage.rng, list[tuple]()
    shipped = stage.conn.execute("SELECT order_id, updated_at FROM orders WHERE status IN ('SHIPPED', 'DELIVERED')"
                                 " ORDER BY order_id").fetchall()
    for order_id, at in shipped:
        for _ in range(rng.choice([2, 3, 4, 5])):
            carrier, shipment_id = rng.choice(CARRIERS), f"parcel-{stage.uuid().hex[:12]}"
            tracking = f"{carrier[:2].upper()}{rng.randint(10**9, 10**10 - 1)}" if rng.random() < 0.9 else None
            rows.append((shipment_id, "dispatched", order_id, carrier, tracking, at))
            if rng.random() < 0.5:
                rows.append((shipment_id, "delivered", order_id, None, None, at + timedelta(seconds=1)))
    copy_rows(stage.conn, "shipments", ("shipment_id", "event", "order_id", "carrier", "tracking_number",
                                        "received_at"), rows)


STAGES: dict[int, Callable[[Stage], None]] = {1: load_v001, 2: load_v002, 3: load_v003, 4: load_v004,
                                              8: load_v008, 11: load_v011, 14: load_v014}
