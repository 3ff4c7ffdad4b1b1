"""Property tests over every message type Conveyor consumes (test_message_parsing.py has the
order.created-only ones): valid messages round-trip, and whatever the bytes or AMQP
properties, parsing ends in a model or in ``InvalidMessage``, never in anything else, in
strict mode and with the tolerant reader (which reads a message plus unknown fields as the
message without them)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from pika.spec import BasicProperties
from pydantic import BaseModel

from conveyor.schemas.errors import InvalidMessage
from conveyor.schemas.lifecycle import (
    CancelOrder,
    PaymentAuthorized,
    PaymentFailed,
    ShipmentDelivered,
    ShipmentDispatched,
)
from conveyor.schemas.orders import OrderCreated
from conveyor.schemas.parsing import parse_message, read_message
from conveyor.schemas.registry import MESSAGES
from conveyor.workers.config import Settings
from conveyor.workers.handlers.orders import SPEC as ORDERS
from conveyor.workers.handlers.payments import SPEC as PAYMENTS
from conveyor.workers.handlers.shipping import SPEC as SHIPMENTS
from conveyor.workers.runtime.envelope import H_ATTEMPTS, H_ORIGINAL_ROUTING_KEY, Delivery
from conveyor.workers.runtime.messages import parse_delivery

MAX_BYTES = 64 * 1024
FUZZ = settings(max_examples=75, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- valid documents of every consumed type --------------------------------------------------

_id_text = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=128)
_reason = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=500)
_money = st.from_regex(r"[0-9]{1,20}(\.[0-9]{1,4})?", fullmatch=True)
_currency = st.from_regex(r"[A-Z]{3}", fullmatch=True)
_uuid = st.uuids().map(str)
_offsets = st.integers(-(23 * 60 + 59), 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))
_moment = st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9999, 12, 30), timezones=_offsets)

VALID: dict[type[BaseModel], st.SearchStrategy[dict]] = {
    OrderCreated: st.fixed_dictionaries(
        {"order_id": _uuid, "customer_id": _id_text,
         "currency": st.sampled_from(["CLF", "UYW", "XAU"]),  # 4 minor units: any price of the pattern
         "items": st.lists(st.fixed_dictionaries({"sku": _id_text, "quantity": st.integers(1, 1_000_000),
                                                  "unit_price": _money}), min_size=1, max_size=4),
         "placed_at": _moment.map(datetime.isoformat)},
        optional={"tenant_id": st.from_regex(r"[A-Za-z0-9_.-]{1,64}", fullmatch=True)}),
    CancelOrder: st.fixed_dictionaries({"order_id": _uuid, "reason": _reason}),
    PaymentAuthorized: st.fixed_dictionaries({"order_id": _uuid, "payment_id": _id_text, "amount": _money,
                                              "currency": _currency}),
    PaymentFailed: st.fixed_dictionaries({"order_id": _uuid, "payment_id": _id_text, "reason": _reason}),
    ShipmentDispatched: st.fixed_dictionaries({"order_id": _uuid, "shipment_id": _id_text, "carrier": _id_text,
                                               "tracking_number": _id_text}),
    ShipmentDelivered: st.fixed_dictionaries({"order_id": _uuid, "shipment_id": _id_text}),
}
CONSUMED = [spec.model for spec in MESSAGES if spec.direction == "consumed"]
LIFECYCLE = [model for model in CONSUMED if model is not OrderCreated]


def test_every_consumed_type_has_a_generator() -> None:
    assert set(CONSUMED) == set(VALID)


def parse(body: bytes, model: type[BaseModel]) -> BaseModel:
    return parse_message(body, model, max_bytes=MAX_BYTES)


def parsed_or_refused(body: bytes, model: type[BaseModel], *, tolerant: bool = False) -> BaseModel | None:
    """The property under test: a model, or InvalidMessage; any other exception fails."""
    try:
        return read_message(body, model, max_bytes=MAX_BYTES, tolerant=tolerant).message
    except InvalidMessage:
        return None


MODES = pytest.mark.parametrize("tolerant", [False, True], ids=["strict", "tolerant"])


def round_trips(message: BaseModel) -> bool:
    """What Conveyor would write back (JSON mode) parses to the same message."""
    return parse(json.dumps(message.model_dump(mode="json")).encode(), type(message)) == message


def _expected(key: str, value: Any) -> Any:
    """The parsed form of a sent value: ids are UUIDs, money is an exact Decimal."""
    return {"order_id": UUID, "amount": Decimal}.get(key, lambda v: v)(value)


@pytest.mark.parametrize("model", LIFECYCLE, ids=lambda m: m.__name__)
@FUZZ
@given(data=st.data())
def test_valid_lifecycle_messages_round_trip_with_the_same_values(model: type[BaseModel], data) -> None:
    # Given any valid message of the type, as JSON
    document = data.draw(VALID[model])

    # When it is parsed
    message = parse(json.dumps(document).encode(), model)

    # Then every field holds the sent value and what Conveyor writes back parses the same
    assert {key: getattr(message, key) for key in document} == {
        key: _expected(key, value) for key, value in document.items()}
    assert round_trips(message)


# --- anything at all --------------------------------------------------------------------------

# A number too long for Python's int conversion cannot be built as an int (neither json.dumps
# nor hypothesis's reporting could print it): it is a marker, replaced in the serialised text.
HUGE = "\u2063huge-number\u2063"
_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(2**63, 10**100), st.floats(), st.text(),
    st.sampled_from(["\ud800", "\x00", "\u202e", "NaN", "1e400", "-0", HUGE]),
)
_json_values = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)), max_leaves=12)


def dumps(value: Any, **kwargs: Any) -> str:
    return json.dumps(value, **kwargs).replace(json.dumps(HUGE, **kwargs), "9" * 5_000)


@MODES
@pytest.mark.parametrize("model", CONSUMED, ids=lambda m: m.__name__)
@FUZZ
@given(value=_json_values)
def test_any_json_value_as_the_body_parses_or_is_refused(model: type[BaseModel], tolerant: bool, value: Any) -> None:
    # json.dumps writes NaN/Infinity and escapes lone surrogates: the parser sees them all
    message = parsed_or_refused(dumps(value).encode(), model, tolerant=tolerant)
    assert message is None or round_trips(message)


# --- valid messages, damaged one way or another ----------------------------------------------

def _paths(value: Any, path: tuple = ()) -> list[tuple]:
    found = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*path, index))
    return found


def _get(document: Any, path: tuple) -> Any:
    for step in path:
        document = document[step]
    return document


def _set(document: Any, path: tuple, new: Any, *, remove: bool = False) -> Any:
    if not path:
        return new
    document = json.loads(json.dumps(document))
    target = document
    for step in path[:-1]:
        target = target[step]
    if remove and isinstance(target, dict):
        del target[path[-1]]
    else:
        target[path[-1]] = new
    return document


def _mutate(document: dict, data) -> bytes:
    kind = data.draw(st.sampled_from([
        "replace", "remove", "add-field", "duplicate-key", "trailing-bytes", "truncate", "insert-byte",
        "latin-1", "utf-16", "bom"]), label="mutation")
    text = json.dumps(document, ensure_ascii=False)
    if kind in ("replace", "remove", "add-field"):
        paths = [p for p in _paths(document) if kind != "add-field" or isinstance(_get(document, p), dict)]
        path = data.draw(st.sampled_from(paths), label="path")
        if kind == "add-field":
            path = (*path, data.draw(st.text(max_size=8), label="key"))
        new = data.draw(_json_values, label="value") if kind != "remove" else None
        return dumps(_set(document, path, new, remove=kind == "remove")).encode()
    if kind == "duplicate-key":
        key = data.draw(st.sampled_from(sorted(document)), label="key")
        return ("{" + json.dumps(key) + ": " + json.dumps(document[key]) + ", " + text[1:]).encode()
    body = text.encode()
    if kind == "trailing-bytes":
        return body + data.draw(st.binary(min_size=1, max_size=8), label="tail")
    if kind == "truncate":
        return body[:data.draw(st.integers(0, len(body) - 1), label="at")]
    if kind == "insert-byte":
        at = data.draw(st.integers(0, len(body)), label="at")
        return body[:at] + bytes([data.draw(st.integers(0, 255), label="byte")]) + body[at:]
    if kind == "latin-1":
        return text.encode("latin-1", errors="replace")
    if kind == "utf-16":
        return text.encode("utf-16")
    return b"\xef\xbb\xbf" + body


@MODES
@pytest.mark.parametrize("model", CONSUMED, ids=lambda m: m.__name__)
@FUZZ
@given(data=st.data())
def test_a_damaged_valid_message_parses_or_is_refused(model: type[BaseModel], tolerant: bool, data) -> None:
    # Given a valid message damaged in one way (a value, a key, a byte, its encoding)
    body = _mutate(data.draw(VALID[model], label="valid"), data)

    # When it is parsed, then it is refused with InvalidMessage, or it is still a valid message
    message = parsed_or_refused(body, model, tolerant=tolerant)
    assert message is None or round_trips(message)


# Refusals that do not depend on the model: the tolerant reader drops an unknown field only
# once the whole body passed them.
BODY_REFUSALS = {"float_number", "not_json", "control_character"}


@pytest.mark.parametrize("model", CONSUMED, ids=lambda m: m.__name__)
@FUZZ
@given(data=st.data())
def test_a_valid_message_plus_an_unknown_field_reads_as_the_message_without_it(model: type[BaseModel],
                                                                               data) -> None:
    # Given a valid message with a field no model declares, holding any JSON value, in any object
    document = data.draw(VALID[model], label="valid")
    expected = parsed_or_refused(json.dumps(document).encode(), model)
    assume(expected is not None)  # the generator's orders may total 10^20 or more
    path = data.draw(st.sampled_from([p for p in _paths(document) if isinstance(_get(document, p), dict)]),
                     label="object")
    key = "x-" + data.draw(st.text(max_size=8), label="key")
    body = dumps(_set(document, (*path, key), data.draw(_json_values, label="value"))).encode()

    # When it is read tolerantly and strictly
    try:
        reading = read_message(body, model, max_bytes=MAX_BYTES, tolerant=True)
    except InvalidMessage as error:
        # Then either the body itself is refused, in both modes alike ...
        assert error.code in BODY_REFUSALS
        with pytest.raises(InvalidMessage) as strict:
            parse(body, model)
        assert strict.value.code == error.code
        return
    # ... or it is the valid message, the field named by its dotted path, and strict mode refuses it
    assert reading.message == expected
    assert reading.unknown_fields == (".".join([*(str(p) for p in path if isinstance(p, str)), key]),)
    with pytest.raises(InvalidMessage) as strict:
        parse(body, model)
    assert strict.value.code == "schema_violation"


# --- targeted properties ---------------------------------------------------------------------

@FUZZ
@given(document=VALID[PaymentAuthorized], amount=st.floats(allow_nan=False, allow_infinity=False))
def test_a_payment_amount_sent_as_a_json_number_is_refused(document: dict, amount: float) -> None:
    with pytest.raises(InvalidMessage) as caught:
        parse(json.dumps({**document, "amount": amount}).encode(), PaymentAuthorized)
    assert caught.value.code == "float_number"


_any_moment = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59),
                           timezones=_offsets)


_EDGE_ORDER = {"order_id": "3f1c6a52-6a0e-4a4f-8d8f-1c1e8a3a9b10", "customer_id": "c", "currency": "EUR",
               "items": [{"sku": "A", "quantity": 1, "unit_price": "1"}], "placed_at": ""}


@FUZZ
@given(document=VALID[OrderCreated], placed_at=_any_moment)
@example(document=_EDGE_ORDER, placed_at=datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14))))
@example(document=_EDGE_ORDER, placed_at=datetime(9999, 12, 31, 23, 59, tzinfo=timezone(timedelta(hours=-14))))
def test_an_accepted_timestamp_can_always_be_stored_and_read_back_in_utc(document: dict,
                                                                         placed_at: datetime) -> None:
    # Given an order placed at any moment in any offset, even at the ends of the calendar
    body = json.dumps({**document, "placed_at": placed_at.isoformat()}).encode()

    # When it is parsed, then it is refused or it converts to UTC (PostgreSQL stores UTC and
    # Python must read it back: year 1 at +14:00 is 1 BC in UTC)
    message = parsed_or_refused(body, OrderCreated)
    if message is not None:
        assert message.placed_at.astimezone(timezone.utc) == placed_at


# --- AMQP properties --------------------------------------------------------------------------

ROUTES = [(spec, key) for spec in (ORDERS, PAYMENTS, SHIPMENTS) for key in spec.routes]
# pika hands over a property that is not UTF-8 as bytes
_property = st.one_of(st.none(), st.text(max_size=300), st.binary(max_size=255))
_header_value = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=20), st.binary(max_size=8),
                          st.integers(min_value=2**63, max_value=10**300))


@pytest.mark.parametrize(("spec", "routing_key"), ROUTES, ids=[key for _, key in ROUTES])
@FUZZ
@given(message_id=_property, content_type=_property, type_=_property, attempts=_header_value,
       original=_header_value, data=st.data())
def test_any_properties_parse_or_are_refused(spec, routing_key: str, message_id, content_type, type_,
                                             attempts, original, data) -> None:
    # Given a valid body for the route with arbitrary AMQP properties and Conveyor headers
    model = spec.routes[routing_key].model
    body = json.dumps(data.draw(VALID[model], label="body")).encode()
    headers = {H_ATTEMPTS: attempts} | ({H_ORIGINAL_ROUTING_KEY: original} if original is not None else {})
    properties = BasicProperties(message_id=message_id, content_type=content_type, type=type_, headers=headers)
    delivery = Delivery(generation=1, delivery_tag=1, exchange="x", routing_key=routing_key,
                        redelivered=False, properties=properties, body=body)

    # When it is parsed, then it is routed or refused with InvalidMessage, nothing else
    try:
        parsed = parse_delivery(delivery, spec, settings=Settings())
    except InvalidMessage:
        return
    assert parsed.context.attempt >= 1
    assert isinstance(parsed.message, spec.routes[parsed.context.routing_key].model)
