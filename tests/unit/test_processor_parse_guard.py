"""A bug in the parsing stage (any error but InvalidMessage) must not stop the worker thread:
the delivery is settled like any unexpected failure, retried and in the end dead-lettered,
while the other deliveries of the batch go on."""

from __future__ import annotations

import json
import queue
import threading

import pytest
from pika.spec import BasicProperties

from conveyor.workers.config import Settings
from conveyor.workers.handlers.orders import SPEC
from conveyor.workers.runtime import processor as processor_module
from conveyor.workers.runtime.envelope import H_ERROR_CLASS, Delivery
from conveyor.workers.runtime.processor import Processor
from tests.support.workers import RecordingConsumer


def delivery(tag: int) -> Delivery:
    properties = BasicProperties(message_id=f"m-{tag}", content_type="application/json", type="order.created")
    return Delivery(generation=1, delivery_tag=tag, exchange="orders", routing_key="order.created",
                    redelivered=False, properties=properties, body=json.dumps({"tag": tag}).encode())


def test_an_unexpected_error_while_parsing_is_settled_as_a_retry(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a parser with a bug that blows up on one delivery and refuses the other
    from conveyor.schemas.errors import InvalidMessage

    def parse(delivery, spec, *, settings):
        if delivery.delivery_tag == 1:
            raise RuntimeError("parser bug")
        raise InvalidMessage("schema_violation", "refused")

    monkeypatch.setattr(processor_module, "parse_delivery", parse)
    consumer = RecordingConsumer()
    processor = Processor(SPEC, Settings(retry_delays=(1,), max_attempts=3), inbound=queue.Queue(),
                          consumer=consumer, stop=threading.Event())

    # When the batch is processed
    processor.process([delivery(1), delivery(2)])

    # Then the thread is still fine: the bug is retried later, the refusal dead-lettered
    [bug, refused] = consumer.settled
    assert bug.copy_to_queue == "conveyor.orders.retry.1s"
    assert bug.copy_properties.headers[H_ERROR_CLASS] == "RuntimeError"
    assert refused.copy_to_queue == "conveyor.orders.dlq"
    assert processor.stats.outcomes == {"retry": 1, "dead_letter": 1}
