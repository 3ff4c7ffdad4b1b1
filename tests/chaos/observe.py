"""After the faults: heal everything, wait until the system is quiet, then read what it
left — every dead-letter queue, both partner queues and the database — as plain data for
the checker (``checker.FinalState``)."""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict

import pika

from conveyor.db.reconcile import run_checks
from conveyor.workers.bootstrap import WORKERS
from conveyor.workers.runtime.topology import dlq_name, retry_queue_name
from tests.chaos.checker import DeadLetter, Delivered, FinalState, Movement
from tests.chaos.clients import INVENTORY_PARTNER, ORDER_EVENTS_PARTNER, SHOP_QUEUE, Shop
from tests.chaos.cluster import Cluster


def work_queues(retry_delays: tuple[int, ...]) -> list[str]:
    """Every queue a message can wait in before it is processed: work queues and retry tiers."""
    return [name for spec in WORKERS.values()
            for name in (spec.queue, *(retry_queue_name(spec.queue, d) for d in sorted(set(retry_delays))))]


def dead_letter_queues() -> list[str]:
    return [dlq_name(spec.queue) for spec in WORKERS.values()]


def heal(cluster: Cluster) -> None:
    """Lift every fault that may still be on and bring every server and process back."""
    if not cluster.postgres.running:
        cluster.postgres.start()
    if not cluster.broker.running:
        cluster.broker.start()
    cluster.db_proxy.heal()
    cluster.broker_proxy.heal()
    for name, proc in cluster.processes.items():
        cluster.resume(name)
        if proc.pid is None and proc.restart_at is not None:
            proc.restart_at = time.monotonic()
    cluster.supervise()
    cluster.memory_alarm(False)


def wait_for_consumers(cluster: Cluster, *, timeout: float) -> dict[str, int]:
    """Wait until every work queue has as many consumers as processes serve it; returns the
    queues still short of consumers at the timeout (empty when all are there)."""
    expected = Counter(WORKERS[w].queue for p in cluster.processes.values() for w in p.workers if w in WORKERS)
    deadline = time.monotonic() + timeout
    while True:
        cluster.supervise()
        depths = _depths(cluster, list(expected))
        short = {q: n - depths[q][1] for q, n in expected.items()}
        short = {q: n for q, n in short.items() if n > 0}
        if not short or time.monotonic() > deadline:
            return short
        time.sleep(0.3)


def wait_until_quiet(cluster: Cluster, shop: Shop, *, retry_delays: tuple[int, ...], timeout: float,
                     settle: float = 1.5) -> dict[str, int]:
    """Poll until no message waits anywhere, the outbox is empty, no order is still RESERVED
    (they expire), the shop is idle and the database stops changing for ``settle`` seconds.
    Returns what was still pending at the timeout (empty when quiet)."""
    queues = [*work_queues(retry_delays), SHOP_QUEUE]
    deadline = time.monotonic() + timeout
    last, quiet_since = None, None
    while True:
        cluster.supervise()
        pending = {q: ready for q, (ready, _) in _depths(cluster, queues).items()}
        with cluster.admin() as conn:
            pending["outbox"] = conn.execute("SELECT count(*) FROM outbox WHERE sent_at IS NULL").fetchone()[0]
            pending["orders still RESERVED"] = conn.execute(
                "SELECT count(*) FROM orders WHERE status = 'RESERVED'").fetchone()[0]
            fingerprint = conn.execute(
                "SELECT (SELECT count(*) FROM inbox), (SELECT count(*) FROM order_transitions), "
                "(SELECT coalesce(sum(version), 0) FROM stock_levels)").fetchone()
        pending = {k: v for k, v in pending.items() if v}
        busy = bool(pending) or fingerprint != last or time.monotonic() - shop.last_event_at < settle
        last = fingerprint
        if busy:
            quiet_since = None
        else:
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since >= settle:
                return {}
        if time.monotonic() > deadline:
            return pending or {"still changing": 1}
        time.sleep(0.5)


def leftovers(cluster: Cluster, *, retry_delays: tuple[int, ...]) -> dict[str, int]:
    """Messages left in work, retry and shop queues once the workers stopped (their unacked
    deliveries went back to the queue) and rows left in the outbox."""
    left = {q: ready for q, (ready, _) in _depths(cluster, [*work_queues(retry_delays), SHOP_QUEUE]).items()}
    with cluster.admin() as conn:
        left["outbox"] = conn.execute("SELECT count(*) FROM outbox WHERE sent_at IS NULL").fetchone()[0]
    return {k: v for k, v in left.items() if v}


def final_state(cluster: Cluster) -> FinalState:
    state = FinalState()
    _read_database(cluster, state)
    state.dead_letters = [letter for q in dead_letter_queues() for letter in _dead_letters(cluster, q)]
    state.inventory_feed = _take_all(cluster, INVENTORY_PARTNER)
    state.order_feed = _take_all(cluster, ORDER_EVENTS_PARTNER)
    return state


def _read_database(cluster: Cluster, state: FinalState) -> None:
    with cluster.admin() as conn:
        rows = conn.execute("SELECT order_id::text, status FROM orders").fetchall()
        state.order_rows = dict(Counter(o for o, _ in rows))
        state.orders = dict(rows)
        state.registry = {r[0] for r in conn.execute("SELECT order_id::text FROM order_registry")}
        lines: dict[str, dict[str, int]] = defaultdict(dict)
        for order_id, sku, quantity in conn.execute(
                "SELECT order_id::text, sku, sum(quantity) FROM order_lines GROUP BY 1, 2"):
            lines[order_id][sku] = int(quantity)
        state.lines = dict(lines)
        state.reservations = conn.execute(
            "SELECT order_id::text, sku, quantity, state FROM reservations").fetchall()
        state.inbox = dict(conn.execute("SELECT message_id, count(*) FROM inbox GROUP BY 1").fetchall())
        state.payments = conn.execute("SELECT payment_id, order_id::text, outcome FROM payments").fetchall()
        transitions: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for order_id, from_status, to_status in conn.execute(
                "SELECT order_id::text, from_status, to_status FROM order_transitions ORDER BY id"):
            transitions[order_id].append((from_status, to_status))
        state.transitions = dict(transitions)
        state.stock = {sku: (o, r, v) for sku, o, r, v in conn.execute(
            "SELECT sku, on_hand, reserved, version FROM stock_levels")}
        state.ledger = [Movement(*row) for row in conn.execute(
            "SELECT sku, version, delta_on_hand, delta_reserved, on_hand, reserved, cause "
            "FROM stock_movements ORDER BY id")]
        state.reconcile = {name: rows for name, rows in run_checks(conn).items() if rows}


def _dead_letters(cluster: Cluster, queue: str) -> list[DeadLetter]:
    letters = []
    for method, properties, body in _get_all(cluster, queue):
        headers = properties.headers or {}
        deaths = headers.get("x-death") or [{}]
        try:
            order_id = json.loads(body).get("order_id")
        except (ValueError, AttributeError):
            order_id = None
        routing_key = headers.get("x-conveyor-original-routing-key") or (
            (deaths[0].get("routing-keys") or [method.routing_key])[0])
        reason = headers.get("x-conveyor-reason") or headers.get("x-first-death-reason")
        letters.append(DeadLetter(queue, properties.message_id, _text(routing_key), _text(reason) if reason else None,
                                  order_id))
    return letters


def _take_all(cluster: Cluster, queue: str) -> list[Delivered]:
    return [Delivered(properties.message_id, method.routing_key, json.loads(body))
            for method, properties, body in _get_all(cluster, queue)]


def _get_all(cluster: Cluster, queue: str) -> list[tuple]:
    """Every message in ``queue``, in order (taken for good: the run is over)."""
    connection = cluster.connection()
    got = []
    try:
        channel = connection.channel()
        for method, properties, body in channel.consume(queue, auto_ack=True, inactivity_timeout=1.0):
            if method is None:
                if channel.queue_declare(queue, passive=True).method.message_count == 0:
                    break
                continue
            got.append((method, properties, body))
        channel.cancel()
    finally:
        connection.close()
    return got


def _depths(cluster: Cluster, queues: list[str]) -> dict[str, tuple[int, int]]:
    """(ready messages, consumers) of each queue; a queue that does not exist yet is empty."""
    connection = cluster.connection()
    result = {}
    try:
        for queue in queues:
            channel = connection.channel()
            try:
                method = channel.queue_declare(queue, passive=True).method
                result[queue] = (method.message_count, method.consumer_count)
                channel.close()
            except pika.exceptions.ChannelClosedByBroker:
                result[queue] = (0, 0)
    finally:
        if connection.is_open:
            connection.close()
    return result


def _text(value) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
