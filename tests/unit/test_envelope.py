"""failure_properties: the retry/DLQ copy keeps the original properties and records
where the message came from, how often it failed and why, without leaking local values."""

from __future__ import annotations

from datetime import datetime, timezone

from pika.spec import BasicProperties

from conveyor.workers.runtime.envelope import (
    H_ATTEMPTS,
    H_ERROR_CLASS,
    H_ERROR_CODE,
    H_ERROR_MESSAGE,
    H_FIRST_FAILURE,
    H_LAST_FAILURE,
    H_ORIGINAL_EXCHANGE,
    H_ORIGINAL_QUEUE,
    H_ORIGINAL_ROUTING_KEY,
    H_REASON,
    H_TRACEBACK,
    Delivery,
    Failure,
    failure_properties,
    short_traceback,
)

QUEUE = "conveyor.orders"
T1 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)
T2 = datetime(2024, 5, 1, 12, 0, 5, tzinfo=timezone.utc)
T3 = datetime(2024, 5, 1, 12, 0, 35, tzinfo=timezone.utc)


def original_delivery(**header_items: object) -> Delivery:
    properties = BasicProperties(
        content_type="application/json", content_encoding="utf-8", message_id="msg-1",
        correlation_id="corr-1", type="order.created", timestamp=1714564800, app_id="shop",
        priority=3, reply_to="replies", headers={"x-shop-trace": "abc", **header_items}, delivery_mode=2,
    )
    return Delivery(generation=1, delivery_tag=1, exchange="orders", routing_key="order.created",
                    redelivered=False, properties=properties, body=b"{}")


def redelivered_from_retry_queue(properties: BasicProperties) -> Delivery:
    # A retry queue dead-letters back to the work queue through the default exchange.
    return Delivery(generation=2, delivery_tag=9, exchange="", routing_key=QUEUE,
                    redelivered=False, properties=properties, body=b"{}")


def raise_and_catch(error: Exception) -> Exception:
    try:
        raise error
    except Exception as caught:  # noqa: BLE001 - the test wants the traceback
        return caught


def failure(message: str = "database went away") -> Failure:
    return Failure(raise_and_catch(ConnectionError(message)), code="ConnectionError", reason="transient: retry")


def test_failure_properties_keep_the_original_properties_and_headers() -> None:
    # Given a delivery with the usual properties and a header of its own
    delivery = original_delivery()

    # When its failure properties are built
    props = failure_properties(delivery, failure(), queue=QUEUE, attempts=1, now=T1)

    # Then the identifying properties and the original header are unchanged
    assert props.message_id == "msg-1"
    assert props.correlation_id == "corr-1"
    assert props.type == "order.created"
    assert props.content_type == "application/json"
    assert props.content_encoding == "utf-8"
    assert props.timestamp == 1714564800
    assert props.app_id == "shop"
    assert props.priority == 3
    assert props.delivery_mode == 2
    assert props.headers["x-shop-trace"] == "abc"


def test_failure_properties_add_the_conveyor_headers() -> None:
    # Given a first-time delivery
    delivery = original_delivery()

    # When it fails for the first time
    props = failure_properties(delivery, failure("db down"), queue=QUEUE, attempts=1, now=T1)

    # Then the failure is described in x-conveyor-* headers
    headers = props.headers
    assert headers[H_ORIGINAL_EXCHANGE] == "orders"
    assert headers[H_ORIGINAL_ROUTING_KEY] == "order.created"
    assert headers[H_ORIGINAL_QUEUE] == QUEUE
    assert headers[H_ATTEMPTS] == 1
    assert headers[H_FIRST_FAILURE] == T1.isoformat()
    assert headers[H_LAST_FAILURE] == T1.isoformat()
    assert headers[H_ERROR_CLASS] == "ConnectionError"
    assert headers[H_ERROR_CODE] == "ConnectionError"
    assert headers[H_ERROR_MESSAGE] == "db down"
    assert headers[H_REASON] == "transient: retry"
    assert "raise_and_catch" in headers[H_TRACEBACK]


def test_the_original_delivery_headers_are_not_mutated() -> None:
    delivery = original_delivery()
    failure_properties(delivery, failure(), queue=QUEUE, attempts=1, now=T1)
    assert delivery.properties.headers == {"x-shop-trace": "abc"}


def test_repeated_failures_keep_the_first_origin_and_update_the_attempt() -> None:
    # Given a delivery that failed once and came back through a retry queue
    first = failure_properties(original_delivery(), failure(), queue=QUEUE, attempts=1, now=T1)
    second_delivery = redelivered_from_retry_queue(first)
    assert second_delivery.previous_attempts == 1
    assert second_delivery.original_routing_key == "order.created"

    # When it fails again, and again
    second = failure_properties(second_delivery, failure("still down"), queue=QUEUE, attempts=2, now=T2)
    third = failure_properties(redelivered_from_retry_queue(second), failure("nope"),
                               queue=QUEUE, attempts=3, now=T3)

    # Then the origin and the first failure time are those of the first failure,
    # while the attempt count, last failure and error are those of the latest
    headers = third.headers
    assert headers[H_ORIGINAL_EXCHANGE] == "orders"
    assert headers[H_ORIGINAL_ROUTING_KEY] == "order.created"
    assert headers[H_ORIGINAL_QUEUE] == QUEUE
    assert headers[H_FIRST_FAILURE] == T1.isoformat()
    assert headers[H_LAST_FAILURE] == T3.isoformat()
    assert headers[H_ATTEMPTS] == 3
    assert headers[H_ERROR_MESSAGE] == "nope"
    assert headers["x-shop-trace"] == "abc"
    assert third.message_id == "msg-1"


def test_a_header_number_beyond_64_bits_travels_as_text_so_the_copy_can_be_encoded() -> None:
    # Given a delivery whose header held an AMQP double (1e300) that pika decoded into an int,
    # alone and nested, next to ordinary values at the 64-bit edges
    huge = int(1e300)
    delivery = original_delivery(**{"x-score": huge, "x-nested": {"list": [huge, 1]},
                                    "x-edge": 2**63 - 1, "x-low": -2**63, "x-flag": True})

    # When its failure properties are built and encoded for the broker
    props = failure_properties(delivery, failure(), queue=QUEUE, attempts=1, now=T1)
    decoded = BasicProperties()
    decoded.decode(b"".join(props.encode()))

    # Then only the numbers that cannot be encoded became text; the rest is unchanged
    headers = decoded.headers
    assert headers["x-score"] == str(huge)
    assert headers["x-nested"] == {"list": [str(huge), 1]}
    assert (headers["x-edge"], headers["x-low"], headers["x-flag"]) == (2**63 - 1, -2**63, True)


def test_the_error_message_header_is_bounded() -> None:
    props = failure_properties(original_delivery(), failure("x" * 5000), queue=QUEUE, attempts=1, now=T1)
    assert len(props.headers[H_ERROR_MESSAGE]) == 1000


def _charge(card_number: str) -> None:
    secret_local = f"card={card_number};cvv=987"  # noqa: F841 - the value must not leak
    raise ValueError("payment gateway refused the request")


def test_the_traceback_header_holds_no_local_variable_values() -> None:
    # Given an error raised inside a function holding secrets in its locals and arguments
    try:
        _charge("4111111111111111")
    except ValueError as error:
        caught = error

    # When the failure properties are built
    props = failure_properties(original_delivery(), Failure(caught, "ValueError", "unexpected"),
                               queue=QUEUE, attempts=1, now=T1)

    # Then the traceback names the frames, but no secret appears in any header
    assert "_charge" in props.headers[H_TRACEBACK]
    assert "test_envelope.py:" in props.headers[H_TRACEBACK]
    for value in props.headers.values():
        assert "4111111111111111" not in str(value)
        assert "cvv" not in str(value)


def test_short_traceback_keeps_only_the_last_frames() -> None:
    def level(n: int) -> None:
        if n == 0:
            raise RuntimeError("deep")
        level(n - 1)

    try:
        level(10)
    except RuntimeError as error:
        text = short_traceback(error, frames=4)

    assert text.count(" | ") == 3
    assert all(part.endswith(" level") for part in text.split(" | "))


def test_short_traceback_of_an_error_never_raised_is_empty() -> None:
    assert short_traceback(ValueError("never raised")) == ""
