"""The workload: the clients around Conveyor, each on its own thread, each recording what
it does in the history.

- ``OrderFeed``: the shops, publishing ``order.created`` at a steady rate (or in a burst);
- ``Shop``: the shop, payment provider and carrier, reacting to Conveyor's events on a
  queue of their own according to each order's plan (``plans``);
- ``Clerk``: stock changes, as hand-written SQL (relative, with a cause naming the
  operation, so the checker can find it in the ledger) and as ``conveyor stock set``;
- ``Sampler``: reads the stock levels a few times a second and keeps any row outside
  0 <= reserved <= on_hand.

Publishing is at least once, as a careful client does it: with confirms and ``mandatory``,
and when the answer is lost, again with the *same* ``message_id`` until confirmed or the
deadline passes (then the operation is ``info``: it may or may not have arrived).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

import pika
import pika.exceptions
import psycopg

from tests.chaos.cluster import ROOT, connect_any
from tests.chaos.history import History
from tests.chaos.plans import REACTS_TO, Catalogue, Send, created, make_order, reactions

SHOP_QUEUE = "chaos.shop"
INVENTORY_PARTNER = "chaos.partner.inventory"
ORDER_EVENTS_PARTNER = "chaos.partner.order-events"
TENANT = "default"
CONNECTION_ERRORS = (pika.exceptions.AMQPError, OSError)


def client_parameters(amqp_url: str, *, name: str) -> pika.URLParameters:
    params = pika.URLParameters(amqp_url)
    params.heartbeat = 30
    params.blocked_connection_timeout = 5   # a publish during a memory alarm gives up (info)
    params.socket_timeout = 3
    params.stack_timeout = 5
    params.connection_attempts = 1
    params.client_properties = {"connection_name": f"chaos-{name}"}
    return params


def connect(amqp_urls: str | list[str], *, name: str) -> pika.BlockingConnection:
    """A client connection to the broker, or to the first node of a cluster that answers."""
    urls = [amqp_urls] if isinstance(amqp_urls, str) else amqp_urls
    return connect_any(urls, lambda url: client_parameters(url, name=name))


def declare_partners(channel) -> None:
    """The partners' and the shop's queues (quorum: they outlive broker restarts)."""
    quorum = {"x-queue-type": "quorum"}
    channel.queue_declare(INVENTORY_PARTNER, durable=True, arguments=quorum)
    channel.queue_bind(INVENTORY_PARTNER, "inventory", routing_key="stock.changed.#")
    channel.queue_declare(ORDER_EVENTS_PARTNER, durable=True, arguments=quorum)
    channel.queue_bind(ORDER_EVENTS_PARTNER, "order-events", routing_key="order.#")
    channel.queue_declare(SHOP_QUEUE, durable=True, arguments=quorum)
    for event in REACTS_TO:
        channel.queue_bind(SHOP_QUEUE, "order-events", routing_key=event)


class Sender:
    """One publishing connection (confirm mode) of one client thread, reconnecting."""

    def __init__(self, amqp_url: str | list[str], history: History, *, process: str, stop: threading.Event,
                 deadline_s: float = 20.0) -> None:
        self.amqp_url = amqp_url
        self.history = history
        self.process = process
        self.stop = stop
        self.deadline_s = deadline_s
        self._connection: pika.BlockingConnection | None = None
        self._channel = None

    def send(self, send: Send) -> list[str]:
        """Publish every copy of ``send``; returns each copy's outcome (ok / info / fail)."""
        return [self._send_copy(send, copy) for copy in range(1, send.copies + 1)]

    def _send_copy(self, send: Send, copy: int) -> str:
        value = {"message_id": send.message_id, "order_id": send.body.get("order_id"), "copy": copy}
        value.update({k: send.body[k] for k in ("payment_id", "shipment_id") if k in send.body})
        op = self.history.invoke(self.process, send.routing_key, **value)
        deadline, attempts, maybe_sent, pause = time.monotonic() + self.deadline_s, 0, False, 0.1
        while True:
            attempts += 1
            try:
                channel = self._ensure_channel()
            except CONNECTION_ERRORS as error:
                failure = f"connect: {type(error).__name__}"
            else:
                try:
                    channel.basic_publish(send.exchange, send.routing_key, json.dumps(send.body).encode(),
                                          _properties(send), mandatory=True)
                    self.history.complete(op, "ok", attempts=attempts)
                    return "ok"
                except CONNECTION_ERRORS as error:  # nack, unroutable, connection lost: unknown
                    maybe_sent, failure = True, f"publish: {type(error).__name__}"
                    self.close()
            if time.monotonic() > deadline or self.stop.is_set():
                outcome = "info" if maybe_sent else "fail"
                self.history.complete(op, outcome, attempts=attempts, error=failure)
                return outcome
            self.stop.wait(pause)
            pause = min(pause * 2, 2.0)

    def _ensure_channel(self):
        if self._channel is None or not self._channel.is_open:
            self.close()
            self._connection = connect(self.amqp_url, name=self.process)
            self._channel = self._connection.channel()
            self._channel.confirm_delivery()
        return self._channel

    def close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and connection.is_open:
            try:
                connection.close()
            except Exception:  # noqa: BLE001 - it is already broken
                pass


def _properties(send: Send) -> pika.BasicProperties:
    return pika.BasicProperties(message_id=send.message_id, content_type="application/json",
                                type=send.routing_key, delivery_mode=2)


class OrderFeed(threading.Thread):
    """``order.created`` at ``rate`` per second; ``burst(n)`` sends n more at once."""

    def __init__(self, amqp_url: str | list[str], history: History, *, seed: int, catalogue: Catalogue, rate: float,
                 orders: dict[str, tuple[dict, str]]) -> None:
        super().__init__(name="chaos-orders", daemon=True)
        self.stop = threading.Event()
        self.sender = Sender(amqp_url, history, process="orders", stop=self.stop)
        self.rng = random.Random(f"{seed}:orders")
        self.catalogue = catalogue
        self.rate = rate
        self.orders = orders
        self.placed = 0
        self._burst = 0
        self._lock = threading.Lock()

    def burst(self, count: int) -> None:
        with self._lock:
            self._burst += count

    def run(self) -> None:
        next_at = time.monotonic()
        while not self.stop.is_set():
            with self._lock:
                bursting = self._burst > 0
                self._burst -= bursting
            if not bursting:
                next_at = max(next_at + 1 / self.rate, time.monotonic() - 1)
                if self.stop.wait(max(0.0, next_at - time.monotonic())):
                    break
            body, plan = make_order(self.rng, self.catalogue)
            self.orders[body["order_id"]] = (body, plan)
            self.sender.send(created(body))
            self.placed += 1
        self.sender.close()


class Shop(threading.Thread):
    """Reacts to Conveyor's events per each order's plan; an event is acked only after its
    reaction was published (or given up), so a lost connection means a redelivery, which
    finds the reaction already done or sends the same messages again."""

    def __init__(self, amqp_url: str | list[str], history: History, *, orders: dict[str, tuple[dict, str]]) -> None:
        super().__init__(name="chaos-shop", daemon=True)
        self.stop = threading.Event()
        self.amqp_url = amqp_url
        self.orders = orders
        self.sender = Sender(amqp_url, history, process="shop", stop=self.stop)
        self.done: set[tuple[str, str]] = set()
        self.events = 0
        self.last_event_at = time.monotonic()

    def run(self) -> None:
        while not self.stop.is_set():
            connection = None
            try:
                connection = connect(self.amqp_url, name="shop-events")
                channel = connection.channel()
                channel.basic_qos(prefetch_count=50)
                for method, _properties, body in channel.consume(SHOP_QUEUE, inactivity_timeout=0.2):
                    if self.stop.is_set():
                        break
                    if method is not None:
                        self._react(method.routing_key, json.loads(body))
                        channel.basic_ack(method.delivery_tag)
            except CONNECTION_ERRORS:
                self.stop.wait(0.5)
            finally:
                if connection is not None and connection.is_open:
                    try:
                        connection.close()
                    except Exception:  # noqa: BLE001
                        pass
        self.sender.close()

    def _react(self, event: str, body: dict) -> None:
        self.events += 1
        self.last_event_at = time.monotonic()
        key = (body["order_id"], event)
        known = self.orders.get(body["order_id"])
        if known is None or key in self.done:
            return
        order, plan = known
        for send in reactions(plan, event, order):
            self.sender.send(send)
        self.done.add(key)


class Clerk(threading.Thread):
    """Stock changes every ``interval`` seconds: mostly relative SQL updates (restocks of the
    hot SKUs, small corrections elsewhere), sometimes ``conveyor stock set`` on a cold SKU."""

    def __init__(self, database_url: str, history: History, *, seed: int, catalogue: Catalogue,
                 interval: float = 0.4, cli_every: float = 8.0) -> None:
        super().__init__(name="chaos-clerk", daemon=True)
        self.stop = threading.Event()
        self.database_url = database_url
        self.history = history
        self.rng = random.Random(f"{seed}:clerk")
        self.catalogue = catalogue
        self.interval = interval
        self.cli_every = cli_every
        self._conn: psycopg.Connection | None = None

    def run(self) -> None:
        next_cli = time.monotonic() + self.cli_every
        while not self.stop.wait(self.interval):
            if time.monotonic() >= next_cli:
                next_cli = time.monotonic() + self.cli_every
                self.stock_set()
            else:
                self.adjust()
        if self._conn is not None:
            self._conn.close()

    def adjust(self) -> None:
        hot = self.rng.random() < 0.6
        sku = self.rng.choice(self.catalogue.hot if hot else self.catalogue.cold)
        # Hot SKUs sell out and are restocked a little at a time: orders keep being refused.
        restock = self.rng.randint(1, 8) if hot else self.rng.randint(5, 50)
        delta = restock if self.rng.random() < 0.75 else -self.rng.randint(1, 4)
        op = self.history.invoke("clerk", "stock.adjust", sku=sku, delta=delta)
        try:
            conn = self._connection()
        except psycopg.Error as error:
            self.history.complete(op, "fail", error=f"connect: {type(error).__name__}")
            return
        try:
            with conn.transaction():
                changed = conn.execute(
                    "UPDATE stock_levels SET on_hand = on_hand + %s, last_cause = %s "
                    "WHERE tenant_id = %s AND sku = %s AND on_hand + %s >= reserved",
                    (delta, f"chaos-adjust:{op}", TENANT, sku, delta)).rowcount
        except psycopg.Error as error:  # the commit's answer may be what got lost
            self.history.complete(op, "info", error=f"{type(error).__name__}: {str(error)[:120]}")
            self._drop()
            return
        self.history.complete(op, "ok" if changed else "fail", **({} if changed else {"error": "below reserved"}))

    def stock_set(self) -> None:
        sku = self.rng.choice(self.catalogue.cold)
        try:
            with psycopg.connect(self.database_url, autocommit=True, connect_timeout=3) as conn:
                on_hand = conn.execute("SELECT on_hand FROM stock_levels WHERE tenant_id = %s AND sku = %s",
                                       (TENANT, sku)).fetchone()[0]
        except psycopg.Error:
            return
        target = max(0, on_hand + self.rng.randint(-20, 60))
        op = self.history.invoke("clerk", "stock.set", sku=sku, on_hand=target)
        env = {**os.environ, "CONVEYOR_DATABASE_URL": self.database_url, "CONVEYOR_LOG_FORMAT": "json"}
        try:
            done = subprocess.run([sys.executable, "-m", "conveyor", "stock", "set", sku, str(target), "--json"],
                                  cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        except subprocess.TimeoutExpired:
            self.history.complete(op, "info", error="timeout")
            return
        outcome = {0: "ok", 1: "fail", 2: "fail"}.get(done.returncode, "info")
        self.history.complete(op, outcome, code=done.returncode,
                              **({} if outcome == "ok" else {"error": (done.stderr or done.stdout)[-200:]}))

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.database_url, autocommit=True, connect_timeout=3,
                                         application_name="chaos-clerk")
        return self._conn

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = None


class Sampler(threading.Thread):
    """Reads the stock levels a few times a second; keeps rows outside 0 <= reserved <= on_hand."""

    QUERY = ("SELECT sku, on_hand, reserved, version FROM stock_levels "
             "WHERE on_hand < 0 OR reserved < 0 OR reserved > on_hand")

    def __init__(self, database_url: str, history: History, *, interval: float = 0.25) -> None:
        super().__init__(name="chaos-sampler", daemon=True)
        self.stop = threading.Event()
        self.database_url = database_url
        self.history = history
        self.interval = interval
        self.samples = 0
        self.violations: list[dict] = []

    def run(self) -> None:
        conn = None
        while not self.stop.wait(self.interval):
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(self.database_url, autocommit=True, connect_timeout=2,
                                           application_name="chaos-sampler")
                rows = conn.execute(self.QUERY).fetchall()
                self.samples += 1
                at = round(self.history.elapsed(), 2)
                self.violations += [{"at": at, "sku": s, "on_hand": o, "reserved": r, "version": v}
                                    for s, o, r, v in rows]
            except psycopg.Error:
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()


@dataclass
class Workload:
    """The client threads of a run; ``stop()`` is safe to call more than once."""

    feed: OrderFeed
    shop: Shop
    clerk: Clerk
    sampler: Sampler

    @classmethod
    def start(cls, cluster, history: History, *, seed: int, catalogue: Catalogue, rate: float) -> "Workload":
        orders: dict[str, tuple[dict, str]] = {}
        workload = cls(
            OrderFeed(cluster.amqp_urls, history, seed=seed, catalogue=catalogue, rate=rate, orders=orders),
            Shop(cluster.amqp_urls, history, orders=orders),
            Clerk(cluster.database_url, history, seed=seed, catalogue=catalogue),
            Sampler(cluster.database_url, history))
        for thread in (workload.sampler, workload.shop, workload.clerk, workload.feed):
            thread.start()
        return workload

    def stop_load(self) -> None:
        """No new orders and stock changes; the shop still finishes what it started."""
        self._stop(self.feed, self.clerk)

    def stop(self) -> None:
        self._stop(self.feed, self.clerk, self.shop, self.sampler)

    @staticmethod
    def _stop(*threads: threading.Thread) -> None:
        for thread in threads:
            thread.stop.set()
        for thread in threads:
            thread.join(60)
