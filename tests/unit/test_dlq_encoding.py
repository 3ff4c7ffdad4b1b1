"""Export lines: bodies byte-exact (base64 when not UTF-8), every property and header type round-trips."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pika.spec import BasicProperties

from conveyor.workers.dlq.encoding import BadRecord, encode_body, from_line, properties_to_dict, to_line

PROPERTIES = BasicProperties(
    message_id="m-1", content_type="application/json", type="order.created", delivery_mode=2, priority=3,
    correlation_id="c", timestamp=1764064800, app_id="shop",
    headers={"x-conveyor-attempts": 3, "x-conveyor-error-class": "InvalidMessage", "flag": True, "none": None,
             "raw": b"\x00\xff", "price": Decimal("19.90"),
             "x-death": [{"queue": "conveyor.orders", "count": 1, "routing-keys": ["order.created"],
                          "time": datetime(2026, 11, 25, 10, tzinfo=timezone.utc)}]})


def test_a_utf8_body_is_stored_as_text_and_anything_else_as_base64():
    assert encode_body('{"note": "Zoë ✓"}'.encode()) == ("utf-8", '{"note": "Zoë ✓"}')
    assert encode_body(b"\xff\xfe") == ("base64", "//4=")


@given(st.binary(max_size=300))
def test_any_body_round_trips_byte_for_byte(body):
    _, _, decoded = from_line(to_line(BasicProperties(message_id="m"), body, queue="q.dlq", position=0))
    assert decoded == body


@given(st.text(max_size=200))
def test_any_text_body_round_trips_including_separators_and_escapes(text):
    body = text.encode("utf-8")
    line = to_line(BasicProperties(), body, queue="q.dlq", position=0)
    assert "\n" not in line
    assert from_line(line)[2] == body


def test_properties_and_typed_headers_round_trip():
    queue, properties, body = from_line(to_line(PROPERTIES, b"{}", queue="conveyor.orders.dlq", position=4))

    assert (queue, body) == ("conveyor.orders.dlq", b"{}")
    assert properties_to_dict(properties) == properties_to_dict(PROPERTIES)
    assert properties.headers["raw"] == b"\x00\xff" and properties.headers["price"] == Decimal("19.90")
    assert properties.headers["x-death"][0]["time"] == datetime(2026, 11, 25, 10, tzinfo=timezone.utc)


def test_the_json_shape_is_readable():
    record = json.loads(to_line(PROPERTIES, b"\xff", queue="q.dlq", position=0))

    assert record["format"] == "conveyor-dlq-export/1" and record["body_encoding"] == "base64"
    assert record["properties"]["headers"]["raw"] == {"$bytes": "AP8="}
    assert record["properties"]["headers"]["price"] == {"$decimal": "19.90"}


@pytest.mark.parametrize(("line", "problem"), [
    ("not json", "not JSON"),
    ('{"format": "other"}', "not a conveyor-dlq-export/1 record"),
    ('{"format": "conveyor-dlq-export/1", "queue": "q"}', "incomplete"),
    ('{"format": "conveyor-dlq-export/1", "queue": "q", "properties": {}, "body_encoding": "rot13", "body": ""}',
     "unknown body_encoding"),
    ('{"format": "conveyor-dlq-export/1", "queue": "q", "properties": {}, "body_encoding": "base64", "body": "%%"}',
     "incomplete"),
    ('{"format": "conveyor-dlq-export/1", "queue": "q", "properties": {"colour": "red"}, "body_encoding": "utf-8",'
     ' "body": ""}', "unknown properties"),
    ('{"format": "conveyor-dlq-export/1", "queue": "q", "properties": {"delivery_mode": "2"},'
     ' "body_encoding": "utf-8", "body": ""}', "delivery_mode must be int"),
])
def test_a_bad_line_is_refused_with_a_reason(line, problem):
    with pytest.raises(BadRecord, match=problem):
        from_line(line)
