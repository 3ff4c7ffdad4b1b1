"""Regressions found by the chaos harness (tests/chaos), each reproduced here without it."""

from __future__ import annotations

import json
import queue
import threading

import structlog
from pika.spec import BasicProperties

from support import order_body, set_stock, settings_for
from workers.order_worker import SPEC as ORDERS
from workers.runtime.envelope import Delivery
from workers.runtime.processor import Processor


class RecordingConsumer:
    """The broker side of a processor, reduced to what it is asked to settle."""

    def __init__(self) -> None:
        self.settled: list = []
        self.cancelled = threading.Event()

    def settle(self, generation, settlements, on_done=None) -> None:
        self.settled.extend(settlements)

    def is_live(self, generation: int) -> bool:
        return True


def created(tag: int, body: dict, *, redelivered: bool = False) -> Delivery:
    properties = BasicProperties(message_id=f"created-{body['order_id']}", content_type="application/json",
                                 type="order.created")
    return Delivery(1, tag, "orders", "order.created", redelivered, properties, json.dumps(body).encode())


def test_a_redelivered_batch_of_orders_all_processed_before_stays_on_the_set_based_path(database_url):
    # Given two orders processed as one batch, whose ack was lost (a worker killed between
    # commit and ack, a reset broker connection): the broker delivers the same batch again
    set_stock(database_url, "A", 10)
    processor = Processor(ORDERS, settings_for(database_url, "amqp://unused/"), inbound=queue.Queue(),
                          consumer=RecordingConsumer(), stop=threading.Event())
    bodies = [order_body(("A", 1)), order_body(("A", 2))]
    processor.process([created(1, bodies[0]), created(2, bodies[1])])

    # When the redelivered batch is processed
    with structlog.testing.capture_logs() as logs:
        processor.process([created(3, bodies[0], redelivered=True), created(4, bodies[1], redelivered=True)])
    processor.db.close()

    # Then both are acknowledged as duplicates by the set-based path itself: the batch
    # handler is not run on nothing (it used to fail and fall back message by message)
    assert processor.stats.outcomes == {"reserved": 2, "duplicate_message": 2}
    assert [e for e in logs if e["event"] == "batch_fallback"] == []
    assert all(s.copy_to_queue is None and not s.requeue for s in processor.consumer.settled)
