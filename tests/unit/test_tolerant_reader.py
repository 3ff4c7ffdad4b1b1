"""The tolerant reader and the contract's major version (docs/contracts.md): unknown fields of
consumed messages are dropped and named, at any depth, unless strict mode refuses them as
before; everything else the parser refuses stays refused in both modes; ``schema_version``
selects the major, and a major Conveyor does not read is refused with its own code."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from pika.spec import BasicProperties
from prometheus_client import REGISTRY
from pydantic import BaseModel

from conveyor.schemas.errors import InvalidMessage
from conveyor.schemas.orders import OrderCreated
from conveyor.schemas.parsing import Reading, parse_message, read_message
from conveyor.schemas.registry import MESSAGES
from conveyor.schemas.tolerance import strip_unknown
from conveyor.workers.config import Settings
from conveyor.workers.handlers.orders import SPEC
from conveyor.workers.runtime import messages
from conveyor.workers.runtime.envelope import Delivery
from conveyor.workers.runtime.messages import parse_delivery

MAX_BYTES = 64 * 1024


class RecordedLog:
    """Stands in for the runtime's logger: structlog's capture_logs() cannot see a logger
    that was bound and cached before (an earlier test in the same process used it)."""

    def __init__(self) -> None:
        self.events: list[dict] = []

    def __getattr__(self, level: str):
        def record(event: str, **fields) -> None:
            self.events.append({"event": event, "log_level": level, **fields})
        return record


@pytest.fixture
def logs(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    recorded = RecordedLog()
    monkeypatch.setattr(messages, "log", recorded)
    return recorded.events
CONSUMED = {spec.routing_key: spec.model for spec in MESSAGES if spec.direction == "consumed"}
PUBLISHED = {spec.model for spec in MESSAGES if spec.direction == "published"}
ORDER_ID = "3f1c6a52-6a0e-4a4f-8d8f-1c1e8a3a9b10"
VALID: dict[str, dict[str, Any]] = {
    "order.created": {"order_id": ORDER_ID, "customer_id": "cust-42", "currency": "EUR",
                      "items": [{"sku": "SKU-1", "quantity": 2, "unit_price": "19.99"}],
                      "placed_at": "2024-05-01T12:30:00Z"},
    "order.cancelled": {"order_id": ORDER_ID, "reason": "changed my mind"},
    "payment.authorized": {"order_id": ORDER_ID, "payment_id": "pay-1", "amount": "39.98", "currency": "EUR"},
    "payment.failed": {"order_id": ORDER_ID, "payment_id": "pay-1", "reason": "card declined"},
    "shipment.dispatched": {"order_id": ORDER_ID, "shipment_id": "ship-1", "carrier": "DHL",
                            "tracking_number": "T-1"},
    "shipment.delivered": {"order_id": ORDER_ID, "shipment_id": "ship-1"},
}
BOTH_MODES = pytest.mark.parametrize("tolerant", [True, False], ids=["tolerant", "strict"])


def order(**changes: Any) -> dict[str, Any]:
    return {**json.loads(json.dumps(VALID["order.created"])), **changes}


def with_extras() -> dict[str, Any]:
    """An order.created carrying a top-level and an item-level field Conveyor does not know."""
    document = order(coupon="SPRING-10")
    document["items"][0]["gift_wrap"] = True
    return document


def read(document: Any, *, tolerant: bool, model: type[BaseModel] = OrderCreated,
         message_type: str = "order.created", max_bytes: int = MAX_BYTES) -> Reading:
    body = document if isinstance(document, bytes) else json.dumps(document).encode()
    return read_message(body, model, max_bytes=max_bytes, tolerant=tolerant, message_type=message_type)


def refusal(document: Any, *, tolerant: bool, **kw: Any) -> InvalidMessage:
    with pytest.raises(InvalidMessage) as caught:
        read(document, tolerant=tolerant, **kw)
    return caught.value


# --- unknown fields --------------------------------------------------------------------------

def test_unknown_fields_at_the_top_and_in_an_item_are_dropped_and_named() -> None:
    # Given an order.created with a coupon and an unknown key inside an item
    document = with_extras()

    # When it is read tolerantly
    reading = read(document, tolerant=True)

    # Then the order is accepted without them, and their dotted paths are reported
    assert isinstance(reading.message, OrderCreated)
    assert not hasattr(reading.message, "coupon")
    assert not hasattr(reading.message.items[0], "gift_wrap")
    assert "coupon" not in reading.message.model_dump()
    assert set(reading.unknown_fields) == {"coupon", "items.gift_wrap"}
    assert reading.message.items[0].quantity == 2


def test_strict_mode_refuses_unknown_fields_with_todays_reason() -> None:
    # Given the same order
    body = json.dumps(with_extras()).encode()

    # When it is read strictly, and by the strict parse_message used until now
    strict = refusal(body, tolerant=False)
    with pytest.raises(InvalidMessage) as today:
        parse_message(body, OrderCreated, max_bytes=MAX_BYTES)

    # Then it is refused as a schema violation naming both fields, exactly as before
    assert (strict.code, strict.detail) == (today.value.code, today.value.detail)
    assert strict.code == "schema_violation"
    assert "coupon: Extra inputs are not permitted" in strict.detail
    assert "items.0.gift_wrap: Extra inputs are not permitted" in strict.detail


def test_an_unknown_key_in_the_shipping_address_is_never_kept() -> None:
    # Given a customer whose address carries a field Conveyor does not know
    document = order(customer={"email": "ada@example.org", "lucky_number": 7,
                               "shipping_address": {"line1": "1 Main St", "city": "Paris", "country": "FR",
                                                    "door_code": "1234"}})

    # When it is read tolerantly
    reading = read(document, tolerant=True)

    # Then neither reaches the data that would be sealed and stored
    assert reading.message.customer is not None
    assert set(reading.unknown_fields) == {"customer.lucky_number", "customer.shipping_address.door_code"}
    assert "1234" not in json.dumps(reading.message.customer.fields())


def test_an_unknown_key_in_every_item_is_named_once() -> None:
    document = order(items=[{"sku": f"S{i}", "quantity": 1, "unit_price": "1", "note": "x"} for i in range(3)])
    assert read(document, tolerant=True).unknown_fields == ("items.note",)


def test_a_known_message_has_no_unknown_fields_in_either_mode() -> None:
    for tolerant in (True, False):
        assert read(order(), tolerant=tolerant).unknown_fields == ()


@pytest.mark.parametrize("message_type", sorted(CONSUMED))
def test_every_consumed_type_reads_an_unknown_field_tolerantly_and_refuses_it_strictly(message_type: str) -> None:
    document = {**VALID[message_type], "trace_note": "from the new producer"}
    model = CONSUMED[message_type]
    assert read(document, tolerant=True, model=model).unknown_fields == ("trace_note",)
    assert refusal(document, tolerant=False, model=model).code == "schema_violation"


def test_stripping_leaves_the_sent_document_alone() -> None:
    document = with_extras()
    stripped, unknown = strip_unknown(document, OrderCreated)
    assert document == with_extras() and "coupon" not in stripped and unknown


def test_a_wrong_value_in_a_known_field_is_still_refused_tolerantly() -> None:
    assert refusal(order(coupon="X", currency="eur"), tolerant=True).code == "schema_violation"


# --- what stays refused in both modes ------------------------------------------------------------

def _duplicate_key() -> bytes:
    return b'{"order_id": "%s", ' % ORDER_ID.encode() + json.dumps(order())[1:].encode()


def _float_quantity() -> bytes:
    return json.dumps(order()).replace('"quantity": 2', '"quantity": 2.0').encode()


REFUSED = [
    ("duplicate-key", _duplicate_key(), "duplicate_key"),
    ("duplicate-unknown-key", json.dumps(order())[:-1].encode() + b', "coupon": 1, "coupon": 2}', "duplicate_key"),
    ("NaN", json.dumps(order()).replace('"cust-42"', "NaN").encode(), "not_json"),
    ("NaN-in-an-unknown-field", json.dumps(order(score=float("nan"))).encode(), "not_json"),
    ("float-quantity", _float_quantity(), "float_number"),
    ("float-in-an-unknown-field", json.dumps(order(discount=5.5)).encode(), "float_number"),
    ("control-character", json.dumps(order(customer_id="a\u0000b")).encode(), "control_character"),
    ("control-character-in-an-unknown-field", json.dumps(order(note="a\u001bb")).encode(), "control_character"),
    ("control-character-in-an-unknown-key", json.dumps(order(**{"no\u0007te": "x"})).encode(), "control_character"),
    ("oversize", json.dumps(order(padding="x" * MAX_BYTES)).encode(), "too_large"),
    ("quantity-as-string", json.dumps(order(items=[{"sku": "A", "quantity": "2", "unit_price": "1"}])).encode(),
     "schema_violation"),
    ("money-as-a-number", json.dumps(order(items=[{"sku": "A", "quantity": 2, "unit_price": 1}])).encode(),
     "schema_violation"),
]


@BOTH_MODES
@pytest.mark.parametrize(("body", "code"), [(b, c) for _, b, c in REFUSED], ids=[n for n, _, _ in REFUSED])
def test_what_the_parser_refuses_stays_refused(tolerant: bool, body: bytes, code: str) -> None:
    assert refusal(body, tolerant=tolerant).code == code


# --- the contract's major version ----------------------------------------------------------------

@BOTH_MODES
def test_a_message_without_a_version_is_version_1(tolerant: bool) -> None:
    assert read(order(), tolerant=tolerant).message.schema_version == 1


@BOTH_MODES
def test_version_1_is_read(tolerant: bool) -> None:
    assert read(order(schema_version=1), tolerant=tolerant).message.schema_version == 1


@BOTH_MODES
@pytest.mark.parametrize("message_type", sorted(CONSUMED))
def test_a_major_this_conveyor_does_not_read_is_refused_with_its_own_code(tolerant: bool,
                                                                         message_type: str) -> None:
    # Given a message of a family declaring major version 2 (whatever else its body holds)
    document = {**VALID[message_type], "schema_version": 2, "a_v2_field": {"x": "y"}}

    # When it is read
    error = refusal(document, tolerant=tolerant, model=CONSUMED[message_type], message_type=message_type)

    # Then the reason names the family, the version sent and the one read
    assert error.code == "unsupported_schema_version"
    assert str(error) == f"unsupported_schema_version: {message_type} version 2, this Conveyor reads 1"


@BOTH_MODES
@pytest.mark.parametrize("version", ["2", "1", 0, -1, True, None, 1.0, [1]], ids=repr)
def test_a_version_that_is_not_an_integer_of_at_least_1_is_a_schema_violation(tolerant: bool, version: Any) -> None:
    body = json.dumps(order()).replace('"placed_at"', f'"schema_version": {json.dumps(version)}, "placed_at"')
    expected = "float_number" if isinstance(version, float) else "schema_violation"
    assert refusal(body.encode(), tolerant=tolerant).code == expected


def test_a_huge_version_is_refused_with_a_short_reason() -> None:
    error = refusal(order(schema_version=10**40), tolerant=True)
    assert error.code == "unsupported_schema_version" and len(error.detail) < 80


@pytest.mark.parametrize("message_type", sorted(CONSUMED))
def test_every_consumed_model_declares_the_version_in_its_json_schema(message_type: str) -> None:
    schema = CONSUMED[message_type].model_json_schema()
    assert schema["properties"]["schema_version"] == {
        "type": "integer", "minimum": 1, "default": 1, "title": "Schema Version",
        "description": "major version of the message's contract (docs/contracts.md); 1 when absent"}
    assert "schema_version" not in schema.get("required", [])


def test_published_models_stay_strict() -> None:
    for model in PUBLISHED:
        assert model.model_config.get("extra") == "forbid", model.__name__


# --- a delivery: counted, logged once, or refused in strict mode --------------------------------

def delivery(body: dict[str, Any]) -> Delivery:
    properties = BasicProperties(message_id=str(uuid.uuid4()), content_type="application/json",
                                 type="order.created", delivery_mode=2)
    return Delivery(generation=1, delivery_tag=1, exchange="orders", routing_key="order.created",
                    redelivered=False, properties=properties, body=json.dumps(body).encode())


def counted(field: str) -> float:
    return REGISTRY.get_sample_value("conveyor_unknown_fields_total",
                                     {"type": "order.created", "field": field}) or 0.0


def test_a_delivery_with_unknown_fields_is_counted_and_logged_once_per_field(logs: list[dict]) -> None:
    # Given a field name this process has not seen yet, and an item field
    top, item = f"coupon_{uuid.uuid4().hex[:8]}", f"wrap_{uuid.uuid4().hex[:8]}"
    document = order(**{top: "SECRET-CODE"})
    document["items"][0][item] = "SECRET-WRAP"

    # When three such orders are parsed by the default (tolerant) runtime
    for _ in range(3):
        parsed = parse_delivery(delivery(document), SPEC, settings=Settings())

    # Then each is accepted, each field counted per message, logged once, never with its value
    assert isinstance(parsed.message, OrderCreated)
    assert (counted(top), counted(f"items.{item}")) == (3, 3)
    warnings = [e for e in logs if e["event"] == "unknown_field_ignored"]
    assert sorted(e["field"] for e in warnings) == sorted([top, f"items.{item}"])
    assert all(e["type"] == "order.created" and e["log_level"] == "warning" for e in warnings)
    assert "SECRET" not in repr(logs)


def test_strict_contracts_refuse_the_delivery() -> None:
    with pytest.raises(InvalidMessage) as caught:
        parse_delivery(delivery(with_extras()), SPEC, settings=Settings(strict_contracts=True))
    assert caught.value.code == "schema_violation"


def test_the_setting_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().strict_contracts is False
    monkeypatch.setenv("CONVEYOR_STRICT_CONTRACTS", "true")
    assert Settings().strict_contracts is True


def test_odd_field_names_and_too_many_of_them_keep_the_labels_bounded(monkeypatch: pytest.MonkeyPatch,
                                                                      logs: list[dict]) -> None:
    # Given a field name no label should carry, and a process that has seen its share of names
    assert parse_delivery(delivery(order(**{"a b ü" * 50: 1})), SPEC, settings=Settings()).message
    assert counted(messages.UNNAMED_FIELD) >= 1
    monkeypatch.setattr(messages, "_UNKNOWN", messages._UnknownFields())
    monkeypatch.setattr(messages, "MAX_UNKNOWN_LABELS", 2)
    before = counted(messages.OTHER_FIELD)
    logs.clear()

    # When ever more new names arrive
    names = [f"field_{uuid.uuid4().hex[:8]}" for _ in range(4)]
    for name in names:
        parse_delivery(delivery(order(**{name: 1})), SPEC, settings=Settings())

    # Then past the bound they share one label, logged once
    assert [counted(name) for name in names] == [1, 1, 0, 0]
    assert counted(messages.OTHER_FIELD) - before == 2
    assert [e["field"] for e in logs if e["event"] == "unknown_field_ignored"] == [*names[:2], messages.OTHER_FIELD]
