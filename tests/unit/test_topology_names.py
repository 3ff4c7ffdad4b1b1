"""RabbitMQ names and queue arguments of the topology."""

from __future__ import annotations

import pytest

from conveyor.workers.runtime.topology import (
    dlq_name,
    retry_queue_arguments,
    retry_queue_name,
    work_queue_arguments,
)


@pytest.mark.parametrize(
    ("queue", "dlq"), [("conveyor.orders", "conveyor.orders.dlq"), ("q", "q.dlq")],
)
def test_dlq_name_appends_dlq(queue: str, dlq: str) -> None:
    assert dlq_name(queue) == dlq


@pytest.mark.parametrize(
    ("queue", "delay", "name"),
    [("conveyor.orders", 1, "conveyor.orders.retry.1s"), ("conveyor.orders", 30, "conveyor.orders.retry.30s")],
)
def test_retry_queue_name_names_the_delay(queue: str, delay: int, name: str) -> None:
    assert retry_queue_name(queue, delay) == name


def test_work_queue_is_a_bounded_at_least_once_quorum_queue() -> None:
    # Given the order work queue
    # When its arguments are built
    args = work_queue_arguments("conveyor.orders", delivery_limit=20)

    # Then it is a quorum queue with a delivery limit, dead-lettering to its DLQ
    # at-least-once, which requires reject-publish overflow
    assert args == {
        "x-queue-type": "quorum",
        "x-delivery-limit": 20,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": "conveyor.orders.dlq",
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }


@pytest.mark.parametrize("delay", [1, 5, 30, 3600])
def test_retry_queue_waits_then_dead_letters_back_to_the_work_queue(delay: int) -> None:
    # Given a retry tier
    # When its queue arguments are built
    args = retry_queue_arguments("conveyor.orders", delay)

    # Then messages expire after the delay (in ms) and go back to the work queue
    # through the default exchange, at-least-once
    assert args["x-message-ttl"] == delay * 1000
    assert args["x-dead-letter-exchange"] == ""
    assert args["x-dead-letter-routing-key"] == "conveyor.orders"
    assert args["x-queue-type"] == "quorum"
    assert args["x-dead-letter-strategy"] == "at-least-once"
    assert args["x-overflow"] == "reject-publish"


def test_retry_queues_of_different_tiers_have_different_names() -> None:
    names = {retry_queue_name("conveyor.orders", d) for d in (1, 5, 30)}
    assert len(names) == 3
    assert all(name.startswith("conveyor.orders.retry.") for name in names)
