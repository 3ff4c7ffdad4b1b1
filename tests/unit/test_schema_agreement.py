"""The exported JSON Schemas (schemas/json/) and the parser (schemas/parsing.py) agree on what
is a valid message, apart from the documented exceptions below (and in every schema's
description, from ``export.PARSER_ONLY`` and ``export.PARSER_LENIENT``).

Checked with the real ``jsonschema`` library, Draft 2020-12, format checking on (``date-time``
needs rfc3339-validator, ``uuid`` is built in), and ``pattern`` as JSON Schema defines it: an
ECMA-262 regular expression (``regress``), not Python's ``re`` (whose ``$`` also matches before
a final newline). Documents: valid ones generated from each schema, then mutated once at a
random place (a field dropped, a value of another type, a float for an integer, a string too
long or with a control character, an unknown field, ...). Consumed messages are read as the
worker reads them by default (tolerant: unknown fields dropped), published ones strictly.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from functools import cache
from typing import Any

import pytest
import regress
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator, ValidationError, validators
from pydantic import TypeAdapter

from conveyor.schemas import export, money, parsing
from conveyor.schemas.errors import InvalidMessage
from conveyor.schemas.parsing import read_message
from conveyor.schemas.registry import MESSAGES
from conveyor.schemas.types import Timestamp, UuidString

MAX_BYTES = 256 * 1024
MODELS = {spec.model.__name__: spec.model for spec in MESSAGES}
CONSUMED = {spec.model.__name__ for spec in MESSAGES if spec.direction == "consumed"}

# The documented exceptions, by name. The parser refuses these and the schema cannot say so:
PARSER_ONLY = {"body_size", "utf8", "duplicate_keys", "nan_infinity", "integral_fraction", "huge_integer",
               "deep_nesting", "utc_range", "model_rules"}
# The parser also accepts these, outside the contract; the schema refuses them:
PARSER_LENIENT = {"uuid_spellings", "timestamp_spellings", "whitespace_class"}


# --- the validator: jsonschema, Draft 2020-12, formats checked, patterns as ECMA-262 ------------------

@cache
def _ecma(pattern: str) -> regress.Regex:
    return regress.Regex(pattern, "u")


def _ecma_pattern(validator: Any, pattern: str, instance: Any, schema: dict) -> Any:
    if validator.is_type(instance, "string") and _ecma(pattern).find(instance) is None:
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


EcmaValidator = validators.extend(Draft202012Validator, {"pattern": _ecma_pattern})


@cache
def validator(name: str) -> Any:
    schema = json.loads((export.HERE / export.JSON_DIR / f"{name}.schema.json").read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return EcmaValidator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def schema_accepts(name: str, document: Any) -> bool:
    return validator(name).is_valid(document)


def parser_accepts(name: str, body: bytes) -> bool:
    try:
        read_message(body, MODELS[name], max_bytes=MAX_BYTES, tolerant=name in CONSUMED)
    except InvalidMessage:
        return False
    return True


def encode(document: Any) -> bytes:
    return json.dumps(document, ensure_ascii=False).encode("utf-8")


# --- valid documents, generated from the schema itself -----------------------------------------------

CONTROLS = "".join(chr(c) for c in [*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), *range(0x7F, 0xA0)])
TEXT = st.characters(exclude_categories=("Cs",), exclude_characters=CONTROLS + "\ufeff")
OFFSETS = st.integers(-(23 * 60 + 59), 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))


def _timestamp(moment: datetime) -> str:
    text = moment.isoformat()
    return text.replace("+00:00", "Z") if moment.microsecond % 2 else text


def _clean(text: str) -> bool:
    return not any(c in CONTROLS or c == "\ufeff" for c in text)


def from_schema(node: dict, root: dict) -> st.SearchStrategy[Any]:  # noqa: C901 - one branch per keyword
    if "$ref" in node:
        return st.deferred(lambda: from_schema(root["$defs"][node["$ref"].split("/")[-1]], root))
    if "enum" in node:
        return st.sampled_from(node["enum"])
    if "anyOf" in node:
        return st.one_of([from_schema(branch, root) for branch in node["anyOf"]])
    kind = node.get("type")
    if kind == "null":
        return st.none()
    if kind == "integer":
        low = node.get("minimum", node.get("exclusiveMinimum", -(10**30) - 1) + 1)
        return st.integers(low, node.get("maximum", 10**30))
    if kind == "string":
        return _string(node)
    if kind == "array":
        return st.lists(from_schema(node["items"], root), min_size=node.get("minItems", 0),
                        max_size=min(node.get("maxItems", 3), 3))
    if kind == "object":
        required = set(node.get("required", ()))
        fields = {key: from_schema(value, root) for key, value in node["properties"].items()}
        return st.fixed_dictionaries({k: v for k, v in fields.items() if k in required},
                                     optional={k: v for k, v in fields.items() if k not in required})
    raise AssertionError(f"no strategy for {node}")


def _string(node: dict) -> st.SearchStrategy[str]:
    if node.get("format") == "uuid":
        return st.uuids().map(str)
    if node.get("format") == "date-time":
        return st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                            timezones=OFFSETS).map(_timestamp)
    low, high = node.get("minLength", 0), node.get("maxLength", 40)
    if node["pattern"] == export.NO_CONTROL_CHARACTERS:
        return st.text(TEXT, min_size=low, max_size=min(high, 40))
    return st.from_regex(node["pattern"], fullmatch=True).filter(lambda s: low <= len(s) <= high and _clean(s))


# --- one mutation, tagged with the documented exception it may run into -----------------------------

ODD_VALUES: list[tuple[Any, str | None]] = [
    (None, None), (True, None), (0, None), (-1, None), (2**63, None), (1.5, None), (-0.25, None),
    (2.0, "integral_fraction"), (1e3, "integral_fraction"),
    ("", None), ("x" * 600, None), ("2.50", None), ("12.123456", None), ("abc\x00", None), ("a\x85b", None),
    ("line\nbreak", None), ("t\n", None), ("é", None), ([], None), ({}, None), ({"a": 1}, None), ([1.5], None),
    ("not-a-uuid", None), ("6f1c6f0e8f3a4c579d1e2b2f0c9d9a11", "uuid_spellings"),
    ("{6f1c6f0e-8f3a-4c57-9d1e-2b2f0c9d9a11}", "uuid_spellings"),
    ("2026-01-01T00:00:00", None), ("2026-02-30T00:00:00Z", None), ("2026-01-01T23:59:60Z", None),
    ("2026-01-01 00:00:00Z", "timestamp_spellings"), ("2026-01-01t00:00:00z", "timestamp_spellings"),
    ("2026-01-01T00:00:00+0100", "timestamp_spellings"), ("1700000000", "timestamp_spellings"),
    ("0001-01-01T00:00:00+01:00", "utc_range"),
    ("RESERVED", None), ("reserved", None), ("EUR", None), ("eur", None), ("shop-1", None), ("shop 1", None),
]
ODD = st.sampled_from(ODD_VALUES)
UNKNOWN_KEYS = st.sampled_from(["coupon", "x\x01y", "schema_version", "items", "é"])


def _places(value: Any, path: tuple = ()) -> list[tuple]:
    places = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            places += _places(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            places += _places(item, (*path, index))
    return places


def _get(value: Any, path: tuple) -> Any:
    for step in path:
        value = value[step]
    return value


def _set(value: Any, path: tuple, new: Any) -> Any:
    if not path:
        return new
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[path[0]] = _set(value[path[0]], path[1:], new)
    return copy


def _without(value: Any, path: tuple) -> Any:
    parent = _get(value, path[:-1])
    kept = {k: v for k, v in parent.items() if k != path[-1]} if isinstance(parent, dict) else \
        [v for i, v in enumerate(parent) if i != path[-1]]
    return _set(value, path[:-1], kept)


@st.composite
def mutated(draw: st.DrawFn, document: Any) -> tuple[Any, str | None]:
    path = draw(st.sampled_from(_places(document)))
    target = _get(document, path)
    how = draw(st.sampled_from(["drop", "replace", "extra", "string", "integer"]))
    if how == "drop" and path:
        return _without(document, path), None
    if how == "extra" and isinstance(target, dict):
        value, tag = draw(ODD)
        return _set(document, path, {**target, draw(UNKNOWN_KEYS): value}), tag
    if how == "string" and isinstance(target, str):
        extra = draw(st.sampled_from(["\x01", "\x7f", "\x9f", "\t", "\n", "é", "-", "0", "Z"]))
        new = draw(st.sampled_from([target + extra, extra + target, target * 200, target[:-1], ""]))
        return _set(document, path, new), None
    if how == "integer" and type(target) is int:
        return _set(document, path, draw(st.sampled_from([target + 1, target - 1, -target, 0, 10**21]))), None
    value, tag = draw(ODD)
    return _set(document, path, value), tag


# --- which documented exception a document falls in, whatever the mutation was ----------------------

def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for item in value.values() for s in _strings(item)]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return []


def _outside_utc(text: str) -> bool:
    if not re.fullmatch(r"\d{4}-\d\d-\d\dT[0-9:.]+(Z|[+-]\d\d:\d\d)", text):
        return False
    try:
        datetime.fromisoformat(text).astimezone(timezone.utc)
    except OverflowError:
        return True
    except ValueError:
        return False
    return False


def _over_total(name: str, document: Any) -> bool:
    try:
        total = sum(Decimal(i["unit_price"]) * i["quantity"] for i in document["items"])
    except (KeyError, TypeError, ArithmeticError, ValueError):
        return False
    return name == "OrderCreated" and total >= 10**20


def _breaks_currency(name: str, document: Any) -> bool:
    """An unknown currency or ship-to country, or a price finer than its currency (V019)."""
    if name != "OrderCreated":
        return False
    try:
        for item in document["items"]:
            money.check_amount(Decimal(item["unit_price"]), document["currency"])
        ship_to = document.get("ship_to")
        if isinstance(ship_to, dict) and isinstance(ship_to.get("country"), str):
            money.check_country(ship_to["country"])
    except money.MoneyError:
        return True
    except (KeyError, TypeError, ArithmeticError, ValueError, AttributeError):
        return False
    return False


TIMESTAMP, UUID = TypeAdapter(Timestamp), TypeAdapter(UuidString)


def _lenient(adapter: TypeAdapter, pattern: str, text: str) -> bool:
    """A spelling the parser reads as this type, outside the contract's pattern."""
    try:
        adapter.validate_python(text)
    except ValueError:
        return False
    return _ecma(pattern).find(text) is None


def exception_of(name: str, document: Any, tag: str | None) -> set[str]:
    found = {tag} if tag else set()
    strings = _strings(document)
    if any(_outside_utc(text) for text in strings):
        found.add("utc_range")
    if any(_lenient(TIMESTAMP, export.TIMESTAMP_PATTERN, text) for text in strings):
        found.add("timestamp_spellings")
    if any(_lenient(UUID, export.UUID_PATTERN, text) for text in strings):
        found.add("uuid_spellings")
    if _over_total(name, document) or _breaks_currency(name, document):
        found.add("model_rules")
    return found


# --- the tests -----------------------------------------------------------------------------------------

def test_the_documented_exceptions_are_the_ones_the_schemas_list():
    assert set(export.PARSER_ONLY) == PARSER_ONLY and set(export.PARSER_LENIENT) == PARSER_LENIENT
    for name, schema in export.json_schemas().items():
        for exception in PARSER_ONLY | PARSER_LENIENT:
            assert f"- {exception}:" in schema["description"], (name, exception)


def test_the_validator_checks_formats_and_ecma_patterns():
    assert {"date-time", "uuid"} <= set(Draft202012Validator.FORMAT_CHECKER.checkers)
    assert export.CONTROL_CHARACTERS == parsing._CONTROL.pattern
    # ECMA-262's $ is the end of the text; Python's re would also match before a final newline.
    assert _ecma("^a$").find("a\n") is None


@pytest.mark.parametrize("name", sorted(MODELS))
def test_a_document_generated_from_the_schema_is_accepted_by_both(name):
    schema = validator(name).schema

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(from_schema(schema, schema))
    def check(document: Any) -> None:
        exceptions = exception_of(name, document, None)
        assert schema_accepts(name, document), document
        assert parser_accepts(name, encode(document)) or exceptions & PARSER_ONLY, document

    check()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_a_mutated_document_gets_the_same_verdict_from_both_apart_from_documented_exceptions(name):
    schema = validator(name).schema

    @settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(from_schema(schema, schema).flatmap(mutated))
    def check(case: tuple[Any, str | None]) -> None:
        document, tag = case
        by_schema, by_parser = schema_accepts(name, document), parser_accepts(name, encode(document))
        if by_schema != by_parser:
            exceptions = exception_of(name, document, tag)
            allowed = PARSER_ONLY if by_schema else PARSER_LENIENT
            assert exceptions & allowed, (f"schema {'accepts' if by_schema else 'refuses'}, parser "
                                          f"{'accepts' if by_parser else 'refuses'} {document!r}")

    check()


CANCEL = {"order_id": "6f1c6f0e-8f3a-4c57-9d1e-2b2f0c9d9a11", "reason": "changed my mind"}
STOCK = export.EXAMPLES["StockChanged"]
EMAIL_ORDER = {**export.EXAMPLES["OrderCreated"], "customer": {"email": "a\ufeffb@example.com"}}
# (exception, model, the document a schema sees, the body the parser reads)
EXCEPTIONS = [
    ("body_size", "CancelOrder", CANCEL, encode(CANCEL) + b" " * MAX_BYTES),
    ("duplicate_keys", "CancelOrder", CANCEL, encode(CANCEL)[:-1] + b', "reason": "again"}'),
    ("integral_fraction", "StockChanged", {**STOCK, "version": 7.0}, encode({**STOCK, "version": 7.0})),
    ("huge_integer", "StockChanged", {**STOCK, "on_hand": 10**4400},
     encode(STOCK).replace(b'"on_hand": 10', b'"on_hand": 1' + b"0" * 4401)),
    ("utc_range", "StockChanged", {**STOCK, "occurred_at": "0001-01-01T00:00:00+01:00"},
     encode({**STOCK, "occurred_at": "0001-01-01T00:00:00+01:00"})),
    ("model_rules", "OrderCreated", {**export.EXAMPLES["OrderCreated"], "items": [
        {"sku": "A", "quantity": 10, "unit_price": "99999999999999999999"}]}, None),
    ("uuid_spellings", "CancelOrder", {**CANCEL, "order_id": "urn:uuid:" + CANCEL["order_id"]}, None),
    ("timestamp_spellings", "StockChanged", {**STOCK, "occurred_at": "2026-03-01 09:30Z"}, None),
    ("whitespace_class", "OrderCreated", EMAIL_ORDER, None),
]


@pytest.mark.parametrize(("exception", "name", "document", "body"), EXCEPTIONS, ids=[e[0] for e in EXCEPTIONS])
def test_each_documented_exception_is_a_real_disagreement(exception, name, document, body):
    by_schema = schema_accepts(name, document)
    by_parser = parser_accepts(name, body if body is not None else encode(document))

    assert (by_schema, by_parser) == ((True, False) if exception in PARSER_ONLY else (False, True))


@pytest.mark.parametrize("body", [b"\xff{}", b'{"reason": NaN}', b"[" * 5000 + b"]" * 5000])
def test_what_is_not_a_json_document_is_refused_by_the_parser(body):
    assert not parser_accepts("CancelOrder", body)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_the_example_of_every_schema_and_message_is_valid_for_both(name):
    schema_examples = validator(name).schema["examples"]
    message = export.asyncapi()["components"]["messages"][name]

    for example in [*schema_examples, *(e["payload"] for e in message["examples"])]:
        assert schema_accepts(name, example)
        assert parser_accepts(name, encode(example))
    headers = EcmaValidator(message["headers"], format_checker=Draft202012Validator.FORMAT_CHECKER)
    assert all(headers.is_valid(e["headers"]) for e in message["examples"])


@pytest.mark.parametrize("name", sorted(MODELS))
def test_only_consumed_messages_take_unknown_fields(name):
    schema = validator(name).schema
    known = {**schema["examples"][0], "coupon": {"code": "X", "n": 1}}

    assert schema_accepts(name, known) is (name in CONSUMED) is parser_accepts(name, encode(known))
    if name not in CONSUMED:
        assert schema["additionalProperties"] is False
