"""The kit's in-memory Conveyor: the worker's parser and real handlers, no servers."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from conveyor.schemas.orders import OrderCreated
from conveyor.workers.cli.contracts import CONSUMED_TYPES
from conveyor.workers.kit.contract import CONSUMED, check
from conveyor.workers.kit.publisher import DocumentRefused, encode
from conveyor.workers.kit.testing import DEAD_LETTERED, DUPLICATE, InMemoryConveyor


def order(*items: tuple[str, int], order_id: str | None = None) -> dict:
    return {"order_id": order_id or str(uuid.uuid4()), "customer_id": "customer-1", "currency": "EUR",
            "items": [{"sku": sku, "quantity": qty, "unit_price": "9.99"} for sku, qty in items],
            "placed_at": "2026-11-25T10:00:00Z"}


def test_an_order_in_stock_is_reserved_and_its_event_recorded():
    conveyor = InMemoryConveyor()
    conveyor.set_stock("SKU-1", 5)

    outcome = conveyor.send("order.created", order(("SKU-1", 2)))

    assert outcome.outcome == "reserved" and outcome.accepted
    assert conveyor.stock("SKU-1") == {"on_hand": 5, "reserved": 2, "available": 3}
    [event] = outcome.events
    assert event["exchange"] == "order-events" and event["routing_key"] == "order.reserved"
    assert conveyor.events("order.reserved") == [event]


def test_an_order_beyond_the_stock_is_rejected_and_takes_nothing():
    conveyor = InMemoryConveyor()
    conveyor.set_stock("SKU-1", 1)

    outcome = conveyor.send("order.created", order(("SKU-1", 2)))

    assert outcome.outcome == "rejected"
    assert conveyor.stock("SKU-1")["reserved"] == 0
    assert [e["routing_key"] for e in conveyor.events()] == ["order.rejected"]


def test_a_refused_document_is_dead_lettered_with_the_workers_reason():
    conveyor = InMemoryConveyor()
    body = order(("SKU-1", 1))
    body["items"][0]["unit_price"] = 9.99  # a float: money travels as a string

    outcome = conveyor.send("order.created", body)

    assert outcome.outcome == DEAD_LETTERED and not outcome.accepted
    assert outcome.error_code == "float_number"
    assert outcome.reason == "float_number: number 9.99 has a fraction; send money as a string"
    assert conveyor.events() == []


def test_the_same_message_id_twice_is_a_duplicate():
    conveyor = InMemoryConveyor()
    conveyor.set_stock("SKU-1", 5)
    body = order(("SKU-1", 1))

    first = conveyor.send("order.created", body, message_id="m-1")
    again = conveyor.send("order.created", body, message_id="m-1")

    assert (first.outcome, again.outcome) == ("reserved", DUPLICATE)
    assert conveyor.stock("SKU-1")["reserved"] == 1


def test_a_model_is_sent_as_the_contract_has_it():
    conveyor = InMemoryConveyor()
    conveyor.set_stock("SKU-1", 5)
    model = OrderCreated.model_validate(order(("SKU-1", 1)))

    assert conveyor.send("order.created", model).outcome == "reserved"


def test_cancelling_a_reserved_order_releases_its_stock():
    conveyor = InMemoryConveyor()
    conveyor.set_stock("SKU-1", 5)
    body = order(("SKU-1", 2))
    conveyor.send("order.created", body)

    outcome = conveyor.send("order.cancelled", {"order_id": body["order_id"], "reason": "customer changed mind"})

    assert outcome.accepted
    assert conveyor.order_status(body["order_id"]) == "CANCELLED"
    assert conveyor.stock("SKU-1")["reserved"] == 0
    assert "order.cancelled" in [e["routing_key"] for e in conveyor.events()]


def test_a_handler_that_raises_leaves_nothing_behind():
    # Given a payment for an order nobody has seen
    conveyor = InMemoryConveyor()
    payment = {"order_id": str(uuid.uuid4()), "payment_id": "pay-1", "amount": "1.00", "currency": "EUR"}

    # When it is sent
    outcome = conveyor.send("payment.authorized", payment, message_id="p-1")

    # Then it is not accepted now, and its message id was not kept (a redelivery runs again)
    assert not outcome.accepted and outcome.error_code
    assert "p-1" not in conveyor.world.inbox and conveyor.world.payments == set()


def test_a_type_conveyor_does_not_consume_is_a_value_error():
    with pytest.raises(ValueError, match="does not consume"):
        InMemoryConveyor().send("order.reserved", {})


def test_the_cli_lists_exactly_the_consumed_types():
    assert set(CONSUMED_TYPES) == set(CONSUMED)


def test_check_gives_the_header_the_worker_would_write():
    verdict = check("order.created", b'{"a": 1, "a": 2}')

    assert verdict.as_dict() == {"accepted": False, "type": "order.created", "error_code": "duplicate_key",
                                 "reason": "duplicate_key: key 'a' appears more than once", "ignored_fields": []}


def test_the_verdict_names_the_unknown_fields_a_worker_would_ignore():
    body = {"order_id": "6f1c0c5e-8d1e-4a53-9a55-0e7f2d0b9a11", "customer_id": "c", "currency": "EUR",
            "placed_at": "2026-11-25T10:00:00Z", "coupon": "XMAS",
            "items": [{"sku": "A", "quantity": 1, "unit_price": "1.00", "gift": True}]}
    verdict = check("order.created", json.dumps(body).encode())
    assert verdict.accepted and verdict.ignored_fields == ("coupon", "items.gift")


def test_a_refused_document_error_carries_the_verdict():
    verdict = check("order.created", b"[]")
    error = DocumentRefused(verdict)

    assert error.code == "schema_violation" and str(error) == verdict.reason


def test_encode_keeps_money_and_times_as_the_parser_wants_them():
    model = OrderCreated.model_validate(order(("SKU-1", 1)))
    assert check("order.created", encode(model)).accepted
    assert isinstance(model.items[0].unit_price, Decimal)
    assert model.placed_at == datetime(2026, 11, 25, 10, tzinfo=timezone.utc)
