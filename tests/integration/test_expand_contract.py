"""Expand/contract, blue-green (issue 16): ``orders.shipments.tracking_number`` becomes
``tracking_reference`` while shipments keep flowing, with the previous release's workers (the
real code of ``PREVIOUS_RELEASE``, "blue") and the current ones ("green") side by side.

1. a database of the previous release (V001-V014), blue workers consuming shipments;
2. expand and backfill (V015, V016; V017 held) under that traffic;
3. green workers on the same queues beside blue: each writes its own column, both columns agree;
4. blue stops; the contract step (``migrate(contract=True)``: V017) drops the old column;
5. green carries on. Every shipment.dispatched published took effect exactly once, none failed,
   none is left in a queue, the dead-letter queue is empty and reconciliation is clean.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pika
import psycopg
import pytest

from conveyor import devservices
from conveyor.db.migrate import migrate
from conveyor.schemas.names import SHIPMENTS_EXCHANGE
from conveyor.workers.runtime import topology
from tests.support import lifecycle as life
from tests.support.previous_release import extract_release, imported_from, log_records, release_worker
from tests.support.workers import (
    consumers_on,
    declare_topology,
    order_body,
    queue_depth,
    set_stock,
    settings_for,
    stop_process,
    wait_until,
    worker_process,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

WORKERS = ("orders", "payments", "shipments")
QUEUE = "conveyor.shipments"
ORDERS = 700          # paid orders waiting to be dispatched: more than the run sends
RATE = 40             # shipment.dispatched per second, throughout
PER_STEP = 25         # dispatches each step must see processed before the next one starts
EXPAND = ["V015__shipments_tracking_reference_expand.sql", "V016__shipments_tracking_reference_backfill.sql"]
CONTRACT = ["V017__shipments_tracking_reference_contract.sql"]

BOTH_COLUMNS = "SELECT shipment_id, tracking_number, tracking_reference FROM orders.shipments"
NEW_COLUMN = "SELECT shipment_id, tracking_reference FROM orders.shipments"
INDEX = "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass('orders.shipments_tracking_reference_idx')"
COLUMNS = ("SELECT attname FROM pg_attribute WHERE attrelid = 'orders.shipments'::regclass "
           "AND attnum > 0 AND NOT attisdropped")


@dataclass
class Dispatch:
    message_id: str
    shipment_id: str
    tracking: str
    step: str


@dataclass
class Traffic:
    """shipment.dispatched for each paid order in turn, at ``RATE`` per second, in a thread;
    each message is labelled with the step the test was in when it was sent."""

    amqp_url: str
    orders: list[dict]
    step: str = "previous release"
    sent: list[Dispatch] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.error: BaseException | None = None

    def start(self) -> None:
        self.thread.start()

    def finish(self) -> list[Dispatch]:
        self.stop.set()
        self.thread.join(timeout=30)
        if self.error is not None:
            raise self.error
        return self.sent

    def _run(self) -> None:
        connection = pika.BlockingConnection(pika.URLParameters(self.amqp_url))
        try:
            channel = connection.channel()
            channel.confirm_delivery()
            for n, order in enumerate(self.orders):
                if self.stop.wait(1 / RATE):
                    return
                self._send(channel, n, order)
        except BaseException as error:  # noqa: BLE001 - re-raised by finish()
            self.error = error
        finally:
            connection.close()

    def _send(self, channel, n: int, order: dict) -> None:
        dispatch = Dispatch(str(uuid.uuid4()), f"ship-{n:04d}", f"TRK-{n:04d}-{uuid.uuid4().hex[:6]}", self.step)
        self.sent.append(dispatch)  # before it is published: a row is never there before its record
        body = {"order_id": order["order_id"], "shipment_id": dispatch.shipment_id, "carrier": "DHL",
                "tracking_number": dispatch.tracking}
        properties = pika.BasicProperties(message_id=dispatch.message_id, content_type="application/json",
                                          type="shipment.dispatched", delivery_mode=2)
        channel.basic_publish(SHIPMENTS_EXCHANGE, "shipment.dispatched", json.dumps(body).encode(), properties,
                              mandatory=True)


def rows(url: str, query: str) -> list[tuple]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(query).fetchall()


def shipped(url: str) -> int:
    return int(rows(url, "SELECT count(*) FROM orders.shipments")[0][0])


def processed(log_path: Path) -> dict[str, str]:
    """message_id -> outcome of each shipment.dispatched a worker process logged as processed."""
    return {r["message_id"]: r["outcome"] for r in log_records(log_path, "message_processed")
            if r.get("routing_key") == "shipment.dispatched"}


def wait_processed(log_path: Path, at_least: int, *, besides: int = 0, what: str) -> None:
    wait_until(lambda: len(processed(log_path)) >= besides + at_least, timeout=40, message=what)


def assert_both_columns_right(url: str, traffic: Traffic) -> dict[str, tuple]:
    """Every row so far has the message's tracking number in both columns; returns them by shipment."""
    found = {shipment: (old, new) for shipment, old, new in rows(url, BOTH_COLUMNS)}
    expected = {d.shipment_id: d.tracking for d in list(traffic.sent)}  # read after: it covers every row
    wrong = {s: v for s, v in found.items() if v != (expected[s], expected[s])}
    assert found and wrong == {}, f"rows whose columns are not both the message's tracking number: {wrong}"
    return found


def paid_orders(url: str, amqp_url: str, count: int) -> list[dict]:
    """``count`` orders created and paid through the running (previous release's) workers."""
    set_stock(url, "A", count * 2)
    orders = [order_body(("A", 1)) for _ in range(count)]
    life.send(amqp_url, [life.created(o) for o in orders])
    wait_until(lambda: Counter(life.statuses(url).values())["RESERVED"] == count, timeout=60, message="reserved")
    life.send(amqp_url, [life.authorized(o) for o in orders])
    wait_until(lambda: Counter(life.statuses(url).values())["PAID"] == count, timeout=60, message="paid")
    return orders


def assert_queues_drained(amqp_url: str) -> None:
    """Nothing ready or unacknowledged (the workers are stopped: unacked would be back), no dead letter."""
    queues = [QUEUE, topology.dlq_name(QUEUE), topology.retry_queue_name(QUEUE, 1)]
    assert {q: queue_depth(amqp_url, q) for q in queues} == dict.fromkeys(queues, 0)


def test_renaming_a_column_with_old_and_new_workers_side_by_side_loses_and_fails_nothing(
        services, fresh_amqp_url, tmp_path):
    # Given the previous release's tree, which a process with its PYTHONPATH really imports
    tree = extract_release(tmp_path / "previous")
    imported = imported_from(tree)
    assert all(Path(f).is_relative_to(tree) for f in imported.values()), imported
    assert "tracking_number)" in Path(imported["fulfilment"]).read_text()  # it writes the old column

    with devservices.fresh_database(services, prefix="conveyor_expand") as url:
        # ... a database migrated as that release knew it (V001-V014), and its workers (blue)
        assert migrate(url, directory=tree / "db" / "migrations")[-1] == "V014__event_headers.sql"
        settings = settings_for(url, fresh_amqp_url)
        declare_topology(settings)
        blue_log, green_log = tmp_path / "blue.log", tmp_path / "green.log"
        blue = release_worker(tree, settings, *WORKERS, log_path=blue_log)
        green = None
        try:
            orders = paid_orders(url, fresh_amqp_url, ORDERS)
            traffic = Traffic(fresh_amqp_url, orders)
            traffic.start()
            wait_processed(blue_log, PER_STEP, what="blue's first dispatches")

            # When the expand and backfill steps run under that traffic (the contract step held)
            applied = migrate(url)
            assert applied[:2] == EXPAND and not set(CONTRACT) & set(applied)
            traffic.step = "expanded"
            assert_both_columns_right(url, traffic)  # the backfill left no row behind

            # ... the current release (green) starts beside blue on the same queue
            before = len(processed(blue_log))
            green = worker_process(settings, *WORKERS, log_path=str(green_log))
            wait_until(lambda: consumers_on(fresh_amqp_url, QUEUE) == 2, timeout=40, message="green consuming")
            traffic.step = "side by side"
            wait_processed(green_log, PER_STEP, what="green's dispatches")
            wait_processed(blue_log, PER_STEP, besides=before, what="blue's dispatches beside green")

            # Then rows of both releases, written while both ran, have both columns right
            assert_both_columns_right(url, traffic)

            # When blue stops and the contract step runs, green carrying on
            assert stop_process(blue) == 0
            assert_both_columns_right(url, traffic)
            traffic.step = "blue stopped"
            before_contract = shipped(url)  # green alone, before V017: the step a real rollout waits in
            wait_until(lambda: shipped(url) >= before_contract + PER_STEP, timeout=40, message="green alone")
            assert set(CONTRACT) <= set(migrate(url, contract=True))
            traffic.step = "contracted"
            after_contract = shipped(url)
            wait_until(lambda: shipped(url) >= after_contract + PER_STEP, timeout=40, message="dispatches after V017")
            sent = traffic.finish()
            wait_until(lambda: shipped(url) == len(sent), timeout=40, message="every dispatch processed")
            assert stop_process(green) == 0
        finally:
            for process in (blue, green):
                if process is not None and process.poll() is None:
                    stop_process(process)

        # Then traffic flowed through every step, and each dispatch took effect exactly once
        assert Counter(d.step for d in sent).keys() == {"previous release", "expanded", "side by side",
                                                        "blue stopped", "contracted"}
        assert "tracking_number" not in [name for (name,) in rows(url, COLUMNS)]
        assert rows(url, INDEX) == [(True,)]  # V016's, built under traffic
        assert dict(rows(url, NEW_COLUMN)) == {d.shipment_id: d.tracking for d in sent}
        assert Counter(life.statuses(url).values())["SHIPPED"] == len(sent)
        blue_done, green_done = processed(blue_log), processed(green_log)
        effects = Counter(m for log in (blue_done, green_done) for m, outcome in log.items() if outcome == "shipped")
        assert effects == Counter({d.message_id: 1 for d in sent})
        assert {d.message_id for d in sent if d.step == "side by side"} & blue_done.keys()
        assert {d.message_id for d in sent if d.step == "side by side"} & green_done.keys()
        # ... none failed or was retried, none waits in a queue or the DLQ, and the books balance
        assert log_records(blue_log, "message_failed") + log_records(green_log, "message_failed") == []
        assert_queues_drained(fresh_amqp_url)
        assert life.reconcile(url) == {}
