"""Looking never wears a message down (issue 17): 50 looks through `conveyor dlq list` leave every
dead letter in place with its body, properties and headers (the broker's redelivery marker
aside), and the console computed that no delivery limit applies; a DLQ with a delivery limit
(its own argument, or a policy seen through the management API) is refused before anything
is held, and with `--accept-delivery-limit` the console stops before a message nears the limit.

On this machine's RabbitMQ 3.10 a DLQ has no default limit, so the 50 looks would pass even
without the fix; the 4.x declaration (`x-delivery-limit: -1`) is checked in
tests/unit/test_dlq_limits.py, on a simulated 4.x server version.
"""

from __future__ import annotations

import json

import pika
import pytest
from pika.spec import BasicProperties

from conveyor.devservices import RestartableRabbitMQ
from conveyor.workers.dlq.limits import SPARE_LOOKS
from conveyor.workers.runtime import policy
from tests.support.dlq import (
    DLQ,
    dead_letter_properties,
    dead_lettered_by_broker,
    dlq,
    drain,
    first_delivery_marks,
    lock_timeout,
    put_in_dlq,
    schema_violation,
)
from tests.support.workers import declare_topology, order_body, settings_for, wait_until

LOOKS = 50
BROKER_MARKERS = ("x-delivery-count", "x-acquired-count")   # what a look may change (and `redelivered`)
PROPERTY_NAMES = ("content_type", "content_encoding", "delivery_mode", "priority", "correlation_id", "reply_to",
                  "expiration", "message_id", "timestamp", "type", "user_id", "app_id", "cluster_id")
BROKER_MESSAGE_ID = "dead-lettered-by-the-broker"
POLICY_LIMIT = 7   # so that the wear guard trips after a few looks: 7 - count - 1 < SPARE_LOOKS


def worker_letters(count: int) -> list[tuple[bytes, BasicProperties]]:
    """Dead letters as the order worker writes them: x-conveyor-* failure headers, varied causes."""
    letters = []
    for i in range(count):
        body = json.dumps(order_body(("A", i + 1))).encode()
        error = lock_timeout() if i % 2 else schema_violation(f"items[{i}]: bad")
        letters.append((body, dead_letter_properties(body, error, attempts=1 + i % 3)))
    return letters


def broker_letter() -> tuple[bytes, BasicProperties]:
    """A message the broker dead-letters itself (x-death), with a header of the shop's own."""
    return b"\x00\xff not json", BasicProperties(message_id=BROKER_MESSAGE_ID, content_type="application/octet-stream",
                                                 delivery_mode=2, priority=2, timestamp=1_700_000_000,
                                                 headers={"x-shop-trace": "abc", "x-shop-n": 7})


def look(settings, *extra: str):
    return dlq(settings, "list", "orders", "--json", "--limit", "0", *extra)


def without_markers(headers: dict | None) -> dict:
    return {k: v for k, v in (headers or {}).items() if k not in BROKER_MARKERS}


def test_fifty_looks_leave_every_message_intact_with_its_headers(settings):
    # Given worker-written dead letters and one the broker dead-lettered itself
    published = worker_letters(6)
    put_in_dlq(settings.amqp_url, published)
    dead_lettered_by_broker(settings.amqp_url, *broker_letter())
    expected_ids = [p.message_id for _, p in published] + [BROKER_MESSAGE_ID]

    # When the console looks at the DLQ 50 times
    for number in range(LOOKS):
        result = look(settings)
        assert result.code == 0, (number, result.err)
        assert [row["message_id"] for row in result.json["letters"]] == expected_ids, number
        # Then each time it had worked out that no delivery limit applies (3.x: none by default)
        assert result.json["delivery_limit"]["limit"] is None, result.json["delivery_limit"]

    # And every message is still there, in order, body, properties and headers unchanged but for
    # the broker's redelivery marker, which shows each of the 50 looks held and returned it
    remaining = drain(settings.amqp_url, DLQ)
    assert len(remaining) == len(published) + 1
    for (original_body, original), (properties, body) in zip(published, remaining[:-1]):
        assert body == original_body
        assert [getattr(properties, n) for n in PROPERTY_NAMES] == [getattr(original, n) for n in PROPERTY_NAMES]
        assert without_markers(properties.headers) == original.headers
        assert properties.headers["x-delivery-count"] == LOOKS
    _assert_broker_letter_intact(*remaining[-1])


def _assert_broker_letter_intact(properties: BasicProperties, body: bytes) -> None:
    expected_body, original = broker_letter()
    assert body == expected_body
    assert [getattr(properties, n) for n in PROPERTY_NAMES] == [getattr(original, n) for n in PROPERTY_NAMES]
    headers = without_markers(properties.headers)
    [death] = headers.pop("x-death")
    assert (death["queue"], death["reason"], death["count"]) == ("conveyor.test.expiring", "expired", 1)
    assert headers == {**original.headers, "x-first-death-exchange": "",
                       "x-first-death-queue": "conveyor.test.expiring", "x-first-death-reason": "expired"}
    assert properties.headers["x-delivery-count"] == LOOKS


def test_a_dlq_with_a_delivery_limit_argument_is_refused_before_anything_is_held(database_url, fresh_amqp_url):
    # Given a DLQ someone declared with a delivery limit of its own, holding one letter
    settings = settings_for(database_url, fresh_amqp_url)
    _declare(fresh_amqp_url, DLQ, {"x-queue-type": "quorum", "x-delivery-limit": 5})
    put_in_dlq(fresh_amqp_url, worker_letters(1))

    # When the console is asked to look, even accepting a delivery limit
    refused = [look(settings), look(settings, "--accept-delivery-limit")]

    # Then it refuses (exit 1), naming the argument, and never held the message
    assert [r.code for r in refused] == [1, 1]
    assert all("x-delivery-limit" in r.err for r in refused)
    assert first_delivery_marks(fresh_amqp_url, DLQ) == [(False, None)]


@pytest.mark.slow
def test_a_policy_limit_on_the_dlq_is_refused_and_an_accepted_one_stops_before_the_message_nears_it(
        database_url):
    with RestartableRabbitMQ(management=True) as broker:   # a node with the management API
        settings = settings_for(database_url, broker.amqp_url, management_url=broker.management_url)
        declare_topology(settings)
        put_in_dlq(broker.amqp_url, worker_letters(1))
        # Given a policy that gives the DLQ a delivery limit
        limit = policy.Policy("dlq-limit", f"^{DLQ.replace('.', '[.]')}$", {"delivery-limit": POLICY_LIMIT})
        policy.apply(limit, amqp_url=broker.amqp_url, management_url=broker.management_url)
        wait_until(lambda: _queue_policy(broker, DLQ) == "dlq-limit", message="the policy applied to the DLQ")

        # When the console is asked to look, Then it refuses before holding anything, naming the policy
        refused = look(settings)
        assert refused.code == 1 and refused.json["error"] == "delivery_limit"
        assert "policy 'dlq-limit'" in refused.err and f"of {POLICY_LIMIT}" in refused.err
        stats = dlq(settings, "stats", "--json")
        assert stats.code == 1 and [r["state"] for r in stats.json if r["dlq"] == DLQ][0].startswith("refused")
        assert first_delivery_marks(broker.amqp_url, DLQ) == [(False, None)]   # one return: count 1 now

        # And when the operator accepts the limit, the looks go on while enough returns are left
        allowed = POLICY_LIMIT - 1 - SPARE_LOOKS   # the check above already cost one return
        accepted = [look(settings, "--accept-delivery-limit") for _ in range(allowed)]
        assert [r.code for r in accepted] == [0] * allowed
        assert accepted[0].json["delivery_limit"]["limit"] == POLICY_LIMIT
        stopped = look(settings, "--accept-delivery-limit")
        assert stopped.code == 1 and stopped.json["error"] == "delivery_limit"
        assert f"survives only {SPARE_LOOKS - 1} more look(s)" in stopped.err
        # And the message is still there, with enough returns left for the operator to replay it
        [(properties, _)] = drain(broker.amqp_url, DLQ)
        assert properties.headers["x-delivery-count"] == allowed + 2


def _declare(amqp_url: str, queue: str, arguments: dict) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        connection.channel().queue_declare(queue, durable=True, arguments=arguments)
    finally:
        connection.close()


def _queue_policy(broker: RestartableRabbitMQ, queue: str) -> str | None:
    from conveyor.workers.dlq.limits import _get

    info = _get(broker.management_url or "", broker.amqp_url, f"queues/%2F/{queue}")
    return info.get("policy")
