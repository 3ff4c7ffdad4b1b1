"""Every case of the bad-input corpus, as data: the bytes and AMQP properties of one message
and what must become of it.

Dispositions:
- ``Dead(code)``: in ``<queue>.dlq`` at the first attempt with ``x-conveyor-error-code = code``,
  body byte for byte; ``Dead(code, retried=True)``: the same after every attempt;
- ``Done(status, event)``: processed and acknowledged, the order ends in ``status`` and
  ``event`` is published for it (a business rejection or refusal is a ``Done`` too);
- ``NoOp()``: acknowledged with no effect on the order, its stock or the bus (idempotence);
- ``Unroutable()``: no binding matches, so a mandatory publish comes back to the publisher.

Each case has its own order id (and message id, unless ``properties`` sets one). ``seed`` names
the state that order is in before the workers start (``corpus_support.seed_world`` builds it
with the real handlers: one SKU per order, total 10.00 EUR), so "nothing changed" is checked
against an order the message could have changed.
"""

from __future__ import annotations

import copy
import gzip
import json
import struct
import uuid
from dataclasses import dataclass, field
from typing import Any

MAX_BYTES = 256 * 1024  # CONVEYOR_MAX_MESSAGE_BYTES's default, which the corpus run keeps
NAMESPACE = uuid.UUID("5d0c6f9e-8f43-4f7b-9a43-7c1d2b8f0a11")

EXCHANGES = {"order.created": "orders", "order.cancelled": "orders",
             "payment.authorized": "payments", "payment.failed": "payments",
             "shipment.dispatched": "shipments", "shipment.delivered": "shipments"}
QUEUES = {"order.created": "conveyor.orders", "order.cancelled": "conveyor.orders",
          "payment.authorized": "conveyor.payments", "payment.failed": "conveyor.payments",
          "shipment.dispatched": "conveyor.shipments", "shipment.delivered": "conveyor.shipments"}


@dataclass(frozen=True)
class Dead:
    code: str
    retried: bool = False


@dataclass(frozen=True)
class Done:
    status: str
    event: str


@dataclass(frozen=True)
class NoOp:
    pass


@dataclass(frozen=True)
class Unroutable:
    pass


@dataclass(frozen=True)
class Case:
    name: str
    routing_key: str                 # the message type, and so the queue it is meant for
    body: bytes
    expect: Dead | Done | NoOp | Unroutable
    order_id: str
    seed: str | None = None          # state of the order before the workers start
    properties: dict = field(default_factory=dict)  # AMQP property overrides; None removes one
    raw_headers: bytes = b""         # header-table fields encoded by hand (types pika cannot write)
    exchange: str | None = None      # None: the type's exchange; "" publishes straight to a queue
    publish_key: str | None = None   # routing key on the wire, when it is not `routing_key`
    copies: int = 1                  # published this many times with the same message id
    seeded_message: bool = False     # its message id is in the inbox before the workers start
    stored: tuple[str, str, str] | None = None  # (table, column, value): kept verbatim

    @property
    def message_id(self) -> Any:
        return self.properties.get("message_id", str(uuid.uuid5(NAMESPACE, "message/" + self.name)))

    @property
    def queue(self) -> str:
        return self.publish_key if self.exchange == "" else QUEUES[self.routing_key]


def order_id_for(name: str) -> str:
    return str(uuid.uuid5(NAMESPACE, "order/" + name))


def seed_payment_id(order_id: str) -> str:
    return f"seed-pay-{order_id}"


def seed_shipment_id(order_id: str) -> str:
    return f"seed-ship-{order_id}"


def seed_sku(order_id: str) -> str:
    return f"seed-{order_id}"


# --- valid messages, and the state in which each changes its order --------------------------

def valid(routing_key: str, order_id: str) -> dict:
    short = order_id[:8]
    return {
        "order.created": lambda: {
            "order_id": order_id, "tenant_id": "default", "customer_id": "customer-7",
            "currency": "EUR", "items": [{"sku": "A", "quantity": 1, "unit_price": "10.00"}],
            "placed_at": "2026-01-15T10:00:00Z"},
        "order.cancelled": lambda: {"order_id": order_id, "reason": "customer changed their mind"},
        "payment.authorized": lambda: {"order_id": order_id, "payment_id": f"pay-{short}",
                                       "amount": "10.00", "currency": "EUR"},
        "payment.failed": lambda: {"order_id": order_id, "payment_id": f"pay-{short}",
                                   "reason": "card declined"},
        "shipment.dispatched": lambda: {"order_id": order_id, "shipment_id": f"ship-{short}",
                                        "carrier": "DHL", "tracking_number": "TRACK-1"},
        "shipment.delivered": lambda: {"order_id": order_id, "shipment_id": f"ship-{short}"},
    }[routing_key]()


ACCEPTS: dict[str, tuple[str | None, Done]] = {
    "order.created": (None, Done("RESERVED", "order.reserved")),
    "order.cancelled": ("RESERVED", Done("CANCELLED", "order.cancelled")),
    "payment.authorized": ("RESERVED", Done("PAID", "order.paid")),
    "payment.failed": ("RESERVED", Done("CANCELLED", "order.cancelled")),
    "shipment.dispatched": ("PAID", Done("SHIPPED", "order.shipped")),
    "shipment.delivered": ("SHIPPED", Done("DELIVERED", "order.delivered")),
}
# A free-text field of each type: where encodings and hostile strings are planted.
TEXT_FIELD = {"order.created": "customer_id", "order.cancelled": "reason", "payment.authorized": "payment_id",
              "payment.failed": "reason", "shipment.dispatched": "carrier", "shipment.delivered": "shipment_id"}
# Where a free-text field ends up in the database: (table, column, prefix added by Conveyor).
STORED_AS = {
    ("order.created", "customer_id"): ("orders", "customer_id", ""),
    ("order.created", "items.0.sku"): ("order_lines", "sku", ""),
    ("order.cancelled", "reason"): ("order_transitions", "reason", "cancelled by shop: "),
    ("payment.authorized", "payment_id"): ("payments", "payment_id", ""),
    ("payment.failed", "payment_id"): ("payments", "payment_id", ""),
    ("payment.failed", "reason"): ("payments", "detail", ""),
    ("shipment.dispatched", "shipment_id"): ("shipments", "shipment_id", ""),
    ("shipment.dispatched", "carrier"): ("shipments", "carrier", ""),
    ("shipment.dispatched", "tracking_number"): ("shipments", "tracking_reference", ""),
    ("shipment.delivered", "shipment_id"): ("shipments", "shipment_id", ""),
}


def encode(document: Any) -> bytes:
    """Compact UTF-8 JSON; text that cannot be UTF-8 (a lone surrogate) travels \\u-escaped."""
    try:
        return json.dumps(document, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return json.dumps(document).encode()


def changed(document: dict, path: str, value: Any = ..., *, remove: bool = False) -> dict:
    document = copy.deepcopy(document)
    *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
    target = document
    for step in parents:
        target = target[step]
    if remove:
        del target[last]
    else:
        target[last] = value
    return document


def _case(routing_key: str, name: str, make_body, expect, *, seed: Any = ..., **kw) -> Case:
    """``make_body(order_id) -> bytes | dict``. Unless told, a case the workers must act on gets its
    order seeded in the state where the valid message changes it; one refused before the
    database (``Dead``) gets none: its checks are the dead letter and the absence of any row."""
    full = f"{routing_key}/{name}"
    order_id = order_id_for(full)
    body = make_body(order_id)
    if seed is ...:
        seed = None if isinstance(expect, Dead) else ACCEPTS[routing_key][0]
    return Case(full, routing_key, body if isinstance(body, bytes) else encode(body), expect, order_id,
                seed=seed, **kw)


# --- the same families for every consumed type ------------------------------------------------

def _padded(document: dict, size: int) -> bytes:
    text = encode(document)
    return text[:-1] + b" " * (size - len(text)) + b"}"


def _raw_text(routing_key: str, order_id: str, raw: bytes) -> bytes:
    """The valid body with its free-text value (quotes included) replaced by raw bytes."""
    marker = "\u2603MARKER\u2603"
    document = changed(valid(routing_key, order_id), TEXT_FIELD[routing_key], marker)
    return encode(document).replace(f'"{marker}"'.encode(), raw)


def _text(routing_key: str, order_id: str, json_text: str) -> bytes:
    return _raw_text(routing_key, order_id, json_text.encode())


def _with_value_text(routing_key: str, order_id: str, literal: str) -> bytes:
    """The valid body with its order_id's *value* replaced by a literal JSON token."""
    return encode(valid(routing_key, order_id)).replace(f'"{order_id}"'.encode(), literal.encode(), 1)


def header_field(name: str, kind: bytes, payload: bytes) -> bytes:
    """One field of an AMQP header table, encoded by hand (pika cannot write every type)."""
    return bytes([len(name)]) + name.encode() + kind + payload


def generic(routing_key: str) -> list[Case]:
    rk, ok = routing_key, ACCEPTS[routing_key][1]
    v = lambda o: valid(rk, o)  # noqa: E731
    cases = [
        _case(rk, "valid", v, ok),
        _case(rk, "size-exactly-at-the-limit", lambda o: _padded(v(o), MAX_BYTES), ok),
        _case(rk, "size-one-byte-over-the-limit", lambda o: _padded(v(o), MAX_BYTES + 1), Dead("too_large")),
        _case(rk, "latin-1", lambda o: _raw_text(rk, o, '"M\u00fcller"'.encode("latin-1")), Dead("bad_encoding")),
        _case(rk, "utf-16-with-bom", lambda o: encode(v(o)).decode().encode("utf-16"), Dead("bad_encoding")),
        _case(rk, "overlong-utf-8", lambda o: _raw_text(rk, o, b'"a\xc0\xafb"'), Dead("bad_encoding")),
        _case(rk, "surrogate-encoded-as-utf-8", lambda o: _raw_text(rk, o, b'"\xed\xa0\x80"'), Dead("bad_encoding")),
        _case(rk, "gzip-body", lambda o: gzip.compress(encode(v(o))), Dead("bad_encoding"),
              properties={"content_encoding": "gzip"}),
        _case(rk, "utf-8-bom", lambda o: b"\xef\xbb\xbf" + encode(v(o)), Dead("not_json")),
        _case(rk, "escaped-lone-surrogate", lambda o: _text(rk, o, '"a\\ud800b"'), Dead("schema_violation")),
        _case(rk, "escaped-nul", lambda o: _text(rk, o, '"a\\u0000b"'), Dead("control_character")),
        _case(rk, "raw-c1-control", lambda o: _text(rk, o, '"a\u0085b"'), Dead("control_character")),
        _case(rk, "duplicate-key", lambda o: b'{"order_id": "%s", ' % o.encode() + encode(v(o))[1:],
              Dead("duplicate_key")),
        _case(rk, "duplicate-key-by-escape", lambda o: b'{"\\u006frder_id": "%s", ' % o.encode() + encode(v(o))[1:],
              Dead("duplicate_key")),
        _case(rk, "NaN", lambda o: _with_value_text(rk, o, "NaN"), Dead("not_json")),
        _case(rk, "Infinity", lambda o: _with_value_text(rk, o, "Infinity"), Dead("not_json")),
        _case(rk, "minus-Infinity", lambda o: _with_value_text(rk, o, "-Infinity"), Dead("not_json")),
        _case(rk, "integer-of-5000-digits", lambda o: _with_value_text(rk, o, "9" * 5000), Dead("not_json")),
        _case(rk, "integer-of-40-digits", lambda o: _with_value_text(rk, o, "9" * 40), Dead("schema_violation")),
        _case(rk, "number-1e400", lambda o: _with_value_text(rk, o, "1e400"), Dead("float_number")),
        _case(rk, "nesting-5000-deep", lambda o: _with_value_text(rk, o, "[" * 5000 + "]" * 5000), Dead("not_json")),
        _case(rk, "nesting-500-deep", lambda o: _with_value_text(rk, o, "[" * 500 + "]" * 500),
              Dead("schema_violation")),
        _case(rk, "trailing-garbage", lambda o: encode(v(o)) + b" x", Dead("not_json")),
        _case(rk, "two-documents", lambda o: encode(v(o)) * 2, Dead("not_json")),
        _case(rk, "truncated", lambda o: encode(v(o))[:-1], Dead("not_json")),
        _case(rk, "empty-body", lambda o: b"", Dead("not_json")),
        _case(rk, "whitespace-only", lambda o: b" \n\t ", Dead("not_json")),
        _case(rk, "top-level-array", lambda o: encode([v(o)]), Dead("schema_violation")),
        _case(rk, "top-level-string", lambda o: encode(json.dumps(v(o))), Dead("schema_violation")),
        _case(rk, "top-level-null", lambda o: b"null", Dead("schema_violation")),
        _case(rk, "top-level-number", lambda o: b"42", Dead("schema_violation")),
        # The tolerant reader (docs/contracts.md): an unknown field is dropped, the message
        # processed (CONVEYOR_STRICT_CONTRACTS=true refuses it: tests/integration/test_contract_evolution.py).
        _case(rk, "unknown-field", lambda o: {**v(o), "admin": True}, ok),
        _case(rk, "unknown-field-with-a-float", lambda o: {**v(o), "score": 0.5}, Dead("float_number")),
        _case(rk, "schema-version-1", lambda o: {**v(o), "schema_version": 1}, ok),
        _case(rk, "schema-version-2", lambda o: {**v(o), "schema_version": 2}, Dead("unsupported_schema_version")),
        _case(rk, "schema-version-as-string", lambda o: {**v(o), "schema_version": "1"}, Dead("schema_violation")),
        _case(rk, "schema-version-0", lambda o: {**v(o), "schema_version": 0}, Dead("schema_violation")),
        _case(rk, "no-message-id", v, Dead("missing_message_id"), properties={"message_id": None}),
        _case(rk, "blank-message-id", v, Dead("missing_message_id"), properties={"message_id": "   "}),
        # AMQP carries at most 255 bytes: a longer id cannot even be sent.
        _case(rk, "message-id-of-255-bytes", v, ok, properties={"message_id": f"{rk}-" + "m" * (254 - len(rk))}),
        _case(rk, "message-id-with-a-control-character", v, Dead("bad_message_id"),
              properties={"message_id": "m-\u0007"}),
        _case(rk, "message-id-not-utf-8", v, Dead("bad_message_id"), properties={"message_id": b"\xff\xfe-id"}),
        _case(rk, "content-type-text-plain", v, Dead("wrong_content_type"), properties={"content_type": "text/plain"}),
        _case(rk, "content-type-not-utf-8", v, Dead("wrong_content_type"), properties={"content_type": b"\xff/json"}),
        _case(rk, "type-of-another-message", v, Dead("type_mismatch"),
              properties={"type": "order.deleted" if rk == "order.created" else "order.created"}),
        _case(rk, "straight-to-the-queue-without-type", v, Dead("unknown_type"), exchange="",
              publish_key=QUEUES[rk], properties={"type": None}),
        _case(rk, "spoofed-original-routing-key", v, Dead("type_mismatch"),
              properties={"headers": {"x-conveyor-original-routing-key": "order.deleted"}}),
        # A publisher's attempt counter that would not fit the dead letter's header (2**63).
        _case(rk, "attempts-header-of-2-63-minus-1", lambda o: encode(v(o))[:-1], Dead("not_json"),
              properties={"headers": {"x-conveyor-attempts": 2**63 - 1}}),
        # An AMQP double that pika turns into a 301-digit int, which it cannot encode again.
        _case(rk, "double-header-of-1e300", lambda o: encode(v(o))[:-1], Dead("not_json"),
              raw_headers=header_field("x-partner-score", b"d", struct.pack(">d", 1e300))),
    ]
    return cases


def unroutable() -> list[Case]:
    return [_case(rk, f"unknown-routing-key-{key}", lambda o, rk=rk: valid(rk, o), Unroutable(),
                  publish_key=key, properties={"type": key}, seed=None)
            for rk, key in (("order.created", "order.deleted"), ("payment.authorized", "payment.refunded"),
                            ("shipment.dispatched", "shipment.lost"))]


# --- every field: missing, null, and the wrong values of its kind ----------------------------

FIELDS = {
    "order.created": [("order_id", "uuid"), ("tenant_id", "tenant"), ("customer_id", "text"),
                      ("currency", "currency"), ("items", "items"), ("items.0.sku", "text"),
                      ("items.0.quantity", "quantity"), ("items.0.unit_price", "money"),
                      ("placed_at", "timestamp")],
    "order.cancelled": [("order_id", "uuid"), ("reason", "reason")],
    "payment.authorized": [("order_id", "uuid"), ("payment_id", "text"), ("amount", "money"),
                           ("currency", "currency")],
    "payment.failed": [("order_id", "uuid"), ("payment_id", "text"), ("reason", "reason")],
    "shipment.dispatched": [("order_id", "uuid"), ("shipment_id", "text"), ("carrier", "text"),
                            ("tracking_number", "text")],
    "shipment.delivered": [("order_id", "uuid"), ("shipment_id", "text")],
}
OPTIONAL = {("order.created", "tenant_id")}
ITEM = {"sku": "A", "quantity": 1, "unit_price": "10.00"}
S, F, C = "schema_violation", "float_number", "control_character"
WRONG = {
    "uuid": [("not-a-uuid", "not-a-uuid", S), ("truncated", "5d0c6f9e-8f43-4f7b-9a43-7c1d2b8f0a1", S),
             ("number", 12345, S), ("empty", "", S), ("bool", True, S)],
    "text": [("empty", "", S), ("129-characters", "x" * 129, S), ("10-kb", "x" * 10_240, S),
             ("number", 42, S), ("bool", True, S), ("object", {"a": "b"}, S), ("array", ["a"], S),
             ("json-float", 4.2, F), ("escape-character", "\u001b[2J", C)],
    "reason": [("empty", "", S), ("501-characters", "r" * 501, S), ("10-kb", "r" * 10_240, S),
               ("number", 42, S), ("array", ["late"], S)],
    "money": [("json-float", 10.0, F), ("json-integer", 10, S), ("exponent", "1e1", S),
              ("negative", "-10.00", S), ("five-decimals", "10.00001", S), ("nan-string", "NaN", S),
              ("comma", "10,00", S), ("bool", True, S), ("21-digits", "1" * 21, S),
              ("arabic-indic-digits", "\u0661\u0660.\u0660\u0660", S)],
    "currency": [("lowercase", "eur", S), ("four-letters", "EURO", S), ("symbol", "\u20ac", S),
                 ("number", 978, S)],
    "quantity": [("zero", 0, S), ("negative", -1, S), ("over-1000000", 1_000_001, S),
                 ("string", "1", S), ("bool", True, S), ("json-float", 1.0, F), ("30-digits", 10**30, S)],
    "timestamp": [("naive", "2026-01-15T10:00:00", S), ("garbage", "yesterday", S),
                  ("february-30", "2026-02-30T10:00:00Z", S), ("unix-number", 1768471200, S),
                  ("date-only", "2026-01-15", S), ("before-year-1-in-utc", "0001-01-01T00:00:00+14:00", S),
                  ("after-year-9999-in-utc", "9999-12-31T23:59:59-14:00", S)],
    "tenant": [("space", "a b", S), ("65-characters", "t" * 65, S), ("empty", "", S), ("slash", "a/b", S),
               ("number", 7, S)],
    "items": [("empty-list", [], S), ("201-items", [ITEM] * 201, S), ("object", ITEM, S),
              ("null-item", [None], S), ("item-with-unknown-field", [{**ITEM, "colour": "red"}], None),
              ("item-without-price", [{"sku": "A", "quantity": 1}], S)],
}


def field_cases(routing_key: str) -> list[Case]:
    rk, ok = routing_key, ACCEPTS[routing_key][1]
    cases = []
    for path, kind in FIELDS[rk]:
        optional = (rk, path) in OPTIONAL
        cases.append(_case(rk, f"{path}-missing", lambda o, p=path: changed(valid(rk, o), p, remove=True),
                           ok if optional else Dead(S)))
        cases.append(_case(rk, f"{path}-null", lambda o, p=path: changed(valid(rk, o), p, None),
                           ok if optional else Dead(S)))
        for label, value, code in WRONG[kind]:  # code None: accepted (an unknown field is dropped)
            cases.append(_case(rk, f"{path}-{label}", lambda o, p=path, x=value: changed(valid(rk, o), p, x),
                               ok if code is None else Dead(code)))
    return cases


# --- hostile strings that are valid: stored verbatim, never interpreted ----------------------

INJECTION_PAYLOADS = (
    "'; DROP TABLE orders; --",
    "x' OR '1'='1",
    "$$; TRUNCATE stock_levels; $$",
    "%s %(order_id)s {0} \\'; DELETE FROM inbox; --",
)
UNICODE_STRINGS = (
    ("rtl-override", "\u202egnp.exe\u202c"),
    ("emoji-zwj", "\U0001f469\u200d\U0001f4bb\U0001f4e6\U0001f69a"),
    ("bom-inside", "\ufeffcustomer"),
    ("zero-width", "cust\u200bomer"),
    ("noncharacter", "x\uffff"),
    ("128-emoji", "\U0001f600" * 128),
    ("128-characters", "c" * 128),
)


def _stored_case(rk: str, path: str, label: str, text: str) -> Case:
    table, column, prefix = STORED_AS[(rk, path)]
    ok = Done("REJECTED", "order.rejected") if path == "items.0.sku" else ACCEPTS[rk][1]
    return _case(rk, f"{path}-{label}", lambda o: changed(valid(rk, o), path, text), ok,
                 stored=(table, column, prefix + text))


def injection_cases() -> list[Case]:
    """SQL injection through every field of every consumed type and through the message id:
    free text is stored verbatim, constrained fields refuse it."""
    cases = []
    for rk, fields in FIELDS.items():
        for path, _kind in fields:
            if (rk, path) in STORED_AS:
                # The type in the text keeps payment and shipment ids unique across types.
                cases += [_stored_case(rk, path, f"sql-injection-{n}", f"{payload} {rk}")
                          for n, payload in enumerate(INJECTION_PAYLOADS, start=1)]
            else:
                cases.append(_case(rk, f"{path}-sql-injection", lambda o, p=path, rk=rk: changed(
                    valid(rk, o), p, INJECTION_PAYLOADS[0]), Dead(S)))
        cases.append(_case(rk, "message-id-sql-injection", lambda o, rk=rk: valid(rk, o), ACCEPTS[rk][1],
                           properties={"message_id": f"{INJECTION_PAYLOADS[0]} {rk}"},
                           stored=("inbox", "message_id", f"{INJECTION_PAYLOADS[0]} {rk}")))
    return cases


def unicode_cases() -> list[Case]:
    return [_stored_case(rk, TEXT_FIELD[rk], label, text)
            for rk in ACCEPTS for label, text in UNICODE_STRINGS
            if not (label.startswith("128") and TEXT_FIELD[rk] == "reason")]


# Seeded with stock (tenant "default"): an order for them is reserved like any other.
HOSTILE_SKUS = ("'; DROP TABLE stock_levels; --", "SKU.#*", "\U0001f4e6 box", "\u202eKS-1")


def hostile_sku_cases() -> list[Case]:
    return [_case("order.created", f"stocked-hostile-sku-{n}",
                  lambda o, s=sku: changed(valid("order.created", o), "items.0.sku", s),
                  Done("RESERVED", "order.reserved"), stored=("reservations", "sku", sku))
            for n, sku in enumerate(HOSTILE_SKUS, start=1)]


# --- business outcomes and wrong-state orders -------------------------------------------------

def order_cases() -> list[Case]:
    rk = "order.created"
    v = lambda o: valid(rk, o)  # noqa: E731
    rejected = Done("REJECTED", "order.rejected")
    reserved = Done("RESERVED", "order.reserved")
    long_skus = [{"sku": f"{n:03d}" + "s" * 125, "quantity": 1, "unit_price": "0.01"} for n in range(200)]
    return [
        _case(rk, "unknown-sku", lambda o: changed(v(o), "items.0.sku", "NO-SUCH-SKU"), rejected),
        _case(rk, "insufficient-stock", lambda o: changed(v(o), "items.0.quantity", 1_000_000), rejected),
        _case(rk, "one-good-line-one-unknown", lambda o: changed(v(o), "items", [ITEM, {**ITEM, "sku": "NOPE"}]),
              rejected),
        _case(rk, "sku-stocked-only-for-another-tenant", lambda o: changed(v(o), "tenant_id", "tenant-b"),
              rejected),
        _case(rk, "same-sku-on-two-lines", lambda o: changed(v(o), "items", [ITEM, ITEM]), reserved),
        _case(rk, "200-items-of-128-character-skus", lambda o: changed(v(o), "items", long_skus), rejected),
        _case(rk, "placed-in-year-1", lambda o: changed(v(o), "placed_at", "0001-01-01T00:00:00Z"), reserved),
        _case(rk, "placed-in-year-9999", lambda o: changed(v(o), "placed_at", "9999-12-31T23:59:59Z"), reserved),
        _case(rk, "uppercase-uuid", lambda o: changed(v(o), "order_id", o.upper()), reserved),
        _case(rk, "content-type-with-charset", v, reserved,
              properties={"content_type": "application/json; charset=utf-8"}),
        _case(rk, "no-content-type", v, reserved, properties={"content_type": None}),
        _case(rk, "no-type", v, reserved, properties={"type": None}),
        _case(rk, "same-message-twice", v, reserved, copies=2),
        _case(rk, "message-id-already-processed", v, NoOp(), seeded_message=True),
        _case(rk, "order-id-already-known", lambda o: changed(v(o), "customer_id", "someone-else"), NoOp(),
              seed="RESERVED"),
    ]


def _state_case(rk: str, state: str | None, expect, *, label: str = "", **changes) -> Case:
    """``changes`` values may be functions of the order id (the seeded payment id, say)."""
    name = f"{(state or 'unknown').lower()}-order{'-' + label if label else ''}"

    def body(order_id: str) -> dict:
        return {**valid(rk, order_id),
                **{key: value(order_id) if callable(value) else value for key, value in changes.items()}}
    return _case(rk, name, body, expect, seed=state)


def lifecycle_cases() -> list[Case]:
    retried, invalid = Dead("retryable", retried=True), Dead("permanent")
    paid, refused = "order.payment_refused", "order.cancel_refused"
    return [
        _state_case("payment.authorized", None, retried),
        _state_case("payment.authorized", "RESERVED", invalid, label="amount-too-low", amount="9.99"),
        _state_case("payment.authorized", "RESERVED", invalid, label="amount-zero", amount="0"),
        _state_case("payment.authorized", "RESERVED", invalid, label="other-currency", currency="USD"),
        _state_case("payment.authorized", "RESERVED", Done("PAID", "order.paid"), label="amount-10-0000",
                    amount="10.0000"),
        _state_case("payment.authorized", "REJECTED", Done("REJECTED", paid)),
        _state_case("payment.authorized", "CANCELLED", Done("CANCELLED", paid)),
        _state_case("payment.authorized", "EXPIRED", Done("EXPIRED", paid)),
        _state_case("payment.authorized", "PAID", Done("PAID", paid), label="second-payment"),
        _state_case("payment.authorized", "DELIVERED", Done("DELIVERED", paid)),
        _state_case("payment.authorized", "PAID", NoOp(), label="same-payment-id", payment_id=seed_payment_id),
        _state_case("payment.failed", None, retried),
        _state_case("payment.failed", "SHIPPED", invalid),
        _state_case("payment.failed", "DELIVERED", invalid),
        _state_case("payment.failed", "CANCELLED", NoOp()),
        _state_case("payment.failed", "REJECTED", NoOp()),
        _state_case("payment.failed", "PAID", NoOp(), label="same-payment-id", payment_id=seed_payment_id),
        _state_case("shipment.dispatched", None, retried),
        _state_case("shipment.dispatched", "RESERVED", retried),
        _state_case("shipment.dispatched", "CANCELLED", invalid),
        _state_case("shipment.dispatched", "EXPIRED", invalid),
        _state_case("shipment.dispatched", "REJECTED", invalid),
        _state_case("shipment.dispatched", "SHIPPED", NoOp(), label="other-shipment"),
        _state_case("shipment.dispatched", "SHIPPED", NoOp(), label="same-shipment-id", shipment_id=seed_shipment_id),
        _state_case("shipment.delivered", None, retried),
        _state_case("shipment.delivered", "PAID", retried),
        _state_case("shipment.delivered", "CANCELLED", invalid),
        _state_case("shipment.delivered", "DELIVERED", NoOp(), shipment_id=seed_shipment_id),
        _state_case("order.cancelled", None, retried),
        _state_case("order.cancelled", "PAID", Done("CANCELLED", "order.cancelled")),
        _state_case("order.cancelled", "SHIPPED", Done("SHIPPED", refused)),
        _state_case("order.cancelled", "DELIVERED", Done("DELIVERED", refused)),
        _state_case("order.cancelled", "CANCELLED", NoOp()),
        _state_case("order.cancelled", "REJECTED", NoOp()),
        _state_case("order.cancelled", "EXPIRED", NoOp()),
    ]


def _all_cases() -> list[Case]:
    cases = [c for rk in ACCEPTS for c in generic(rk) + field_cases(rk)]
    cases += unroutable() + injection_cases() + unicode_cases() + hostile_sku_cases()
    cases += order_cases() + lifecycle_cases()
    names = [c.name for c in cases]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    assert not duplicates, f"corpus case names must be unique: {duplicates}"
    return cases


CASES: list[Case] = _all_cases()
# Published after every other case: valid work each worker must still do.
CONTROLS: list[Case] = [_case(rk, "valid-after-the-corpus", lambda o, rk=rk: valid(rk, o), ACCEPTS[rk][1])
                        for rk in ACCEPTS]
