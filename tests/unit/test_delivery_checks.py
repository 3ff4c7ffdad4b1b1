"""parse_delivery: the property checks done before a body is even parsed, routing by the
original routing key, and the (tenant, SKU) lock pairs of an order."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pika.spec import BasicProperties

from conveyor.schemas.errors import InvalidMessage
from conveyor.schemas.orders import OrderCreated
from conveyor.workers.config import Settings
from conveyor.workers.handlers.orders import SPEC
from conveyor.workers.runtime.envelope import H_ATTEMPTS, H_ORIGINAL_EXCHANGE, H_ORIGINAL_ROUTING_KEY, Delivery
from conveyor.workers.runtime.messages import parse_delivery

ORDER = {
    "order_id": "3f1c6a52-6a0e-4a4f-8d8f-1c1e8a3a9b10",
    "customer_id": "cust-42",
    "currency": "EUR",
    "items": [
        {"sku": "SKU-B", "quantity": 1, "unit_price": "5.00"},
        {"sku": "SKU-A", "quantity": 2, "unit_price": "2.50"},
    ],
    "placed_at": "2024-05-01T12:30:00Z",
}

_UNSET: Any = object()


def delivery(*, message_id: Any = "msg-1", content_type: Any = "application/json",
             type: Any = _UNSET, routing_key: str = "order.created", exchange: str = "orders",
             headers: dict | None = None, body: dict | None = None) -> Delivery:
    properties = BasicProperties(
        message_id=message_id, content_type=content_type,
        type=routing_key if type is _UNSET else type, headers=headers, delivery_mode=2,
    )
    return Delivery(generation=1, delivery_tag=7, exchange=exchange, routing_key=routing_key,
                    redelivered=False, properties=properties,
                    body=json.dumps(ORDER if body is None else body).encode())


@pytest.fixture
def settings() -> Settings:
    return Settings()


def test_a_well_formed_delivery_is_routed_and_parsed(settings: Settings) -> None:
    # Given an order.created delivery with every property set
    given = delivery()

    # When it is parsed
    parsed = parse_delivery(given, SPEC, settings=settings)

    # Then it is routed to the order route with a first-attempt context
    assert parsed.route is SPEC.routes["order.created"]
    assert isinstance(parsed.message, OrderCreated)
    assert parsed.context.message_id == "msg-1"
    assert parsed.context.routing_key == "order.created"
    assert parsed.context.attempt == 1


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        pytest.param({"message_id": None}, "missing_message_id", id="missing-message-id"),
        pytest.param({"message_id": ""}, "missing_message_id", id="empty-message-id"),
        pytest.param({"message_id": "   "}, "missing_message_id", id="blank-message-id"),
        pytest.param({"message_id": "x" * 256}, "bad_message_id", id="message-id-too-long"),
        pytest.param({"message_id": "msg\n1"}, "bad_message_id", id="message-id-with-control-char"),
        # Regression: pika hands over a property that is not UTF-8 as bytes, which crashed
        # the checks (TypeError) and with them the worker thread.
        pytest.param({"message_id": b"\xff\xfe-id"}, "bad_message_id", id="message-id-not-utf-8"),
        pytest.param({"content_type": b"\xff/json"}, "wrong_content_type", id="content-type-not-utf-8"),
        pytest.param({"type": b"\xff"}, "type_mismatch", id="type-not-utf-8"),
        pytest.param({"content_type": "text/plain"}, "wrong_content_type", id="text-plain"),
        pytest.param({"content_type": "application/xml"}, "wrong_content_type", id="xml"),
        pytest.param({"content_type": "application/json-patch+json"}, "wrong_content_type", id="json-patch"),
        pytest.param({"type": "order.cancelled"}, "type_mismatch", id="type-differs-from-routing-key"),
        pytest.param({"routing_key": "order.deleted"}, "unknown_type", id="unknown-routing-key"),
        pytest.param({"routing_key": "order.deleted", "type": None}, "unknown_type",
                     id="unknown-routing-key-without-type"),
        pytest.param({"body": {**ORDER, "currency": "eur"}}, "schema_violation", id="bad-body"),
    ],
)
def test_bad_deliveries_are_refused_with_the_right_code(overrides: dict, code: str, settings: Settings) -> None:
    # Given a delivery with one property (or the body) wrong
    given = delivery(**overrides)

    # When it is parsed
    with pytest.raises(InvalidMessage) as caught:
        parse_delivery(given, SPEC, settings=settings)

    # Then it is refused with the code naming what is wrong
    assert caught.value.code == code


def test_message_id_is_checked_before_the_content_type(settings: Settings) -> None:
    with pytest.raises(InvalidMessage) as caught:
        parse_delivery(delivery(message_id=None, content_type="text/plain"), SPEC, settings=settings)
    assert caught.value.code == "missing_message_id"


@pytest.mark.parametrize(
    ("content_type", "type"),
    [
        (None, "order.created"),
        ("application/json; charset=utf-8", "order.created"),
        ("Application/JSON", "order.created"),
        ("application/json", None),
        ("application/json", ""),
    ],
)
def test_lenient_but_correct_properties_are_accepted(content_type: Any, type: Any, settings: Settings) -> None:
    # Given a delivery with no content type, a charset parameter, odd casing or no type
    given = delivery(content_type=content_type, type=type)

    # When it is parsed
    parsed = parse_delivery(given, SPEC, settings=settings)

    # Then it is routed by its routing key
    assert parsed.context.routing_key == "order.created"


def test_a_retried_delivery_is_routed_by_its_original_routing_key(settings: Settings) -> None:
    # Given a delivery coming back from a retry queue through the default exchange:
    # its routing key is now the work queue, the original one travels in a header
    given = delivery(
        exchange="", routing_key="conveyor.orders", type="order.created",
        headers={H_ORIGINAL_ROUTING_KEY: "order.created", H_ORIGINAL_EXCHANGE: "orders", H_ATTEMPTS: 2},
    )

    # When it is parsed
    parsed = parse_delivery(given, SPEC, settings=settings)

    # Then it is routed as order.created and knows this is the third attempt
    assert parsed.route is SPEC.routes["order.created"]
    assert parsed.context.routing_key == "order.created"
    assert parsed.context.attempt == 3


def test_a_retried_delivery_without_the_header_is_unknown(settings: Settings) -> None:
    # Given the same retried delivery but without the original routing key header
    given = delivery(exchange="", routing_key="conveyor.orders", type=None)

    # When it is parsed
    # Then the work queue name is not mistaken for a message type
    with pytest.raises(InvalidMessage) as caught:
        parse_delivery(given, SPEC, settings=settings)
    assert caught.value.code == "unknown_type"


# 2**63 - 1 regression: attempts + 1 no longer fitted the dead letter's header and the I/O thread died.
@pytest.mark.parametrize("attempts", [-1, "3", None, 2**63 - 1, 1_000_001])
def test_a_malformed_attempts_header_counts_as_no_previous_attempt(attempts: Any, settings: Settings) -> None:
    parsed = parse_delivery(delivery(headers={H_ATTEMPTS: attempts}), SPEC, settings=settings)
    assert parsed.context.attempt == 1


def test_lock_pairs_use_the_default_tenant_when_the_order_has_none(settings: Settings) -> None:
    # Given an order without tenant_id
    given = delivery()

    # When it is parsed
    parsed = parse_delivery(given, SPEC, settings=settings)

    # Then each line is locked under the configured default tenant
    assert parsed.context.default_tenant == "default"
    assert sorted(parsed.lock_pairs) == [("default", "SKU-A"), ("default", "SKU-B")]


def test_lock_pairs_follow_a_configured_default_tenant() -> None:
    parsed = parse_delivery(delivery(), SPEC, settings=Settings(default_tenant="shop-9"))
    assert sorted(parsed.lock_pairs) == [("shop-9", "SKU-A"), ("shop-9", "SKU-B")]


def test_lock_pairs_use_the_order_tenant_when_present(settings: Settings) -> None:
    parsed = parse_delivery(delivery(body={**ORDER, "tenant_id": "acme"}), SPEC, settings=settings)
    assert sorted(parsed.lock_pairs) == [("acme", "SKU-A"), ("acme", "SKU-B")]


def test_the_size_limit_comes_from_settings() -> None:
    # Given a limit smaller than the order body
    small = Settings(max_message_bytes=1024)
    big_order = {**ORDER, "customer_id": "c" * 128,
                 "items": [{"sku": f"SKU-{n}", "quantity": 1, "unit_price": "1.00"} for n in range(30)]}

    # When it is parsed
    with pytest.raises(InvalidMessage) as caught:
        parse_delivery(delivery(body=big_order), SPEC, settings=small)

    # Then it is too large
    assert caught.value.code == "too_large"
