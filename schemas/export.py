"""Contract documents generated from the message registry (``conveyor.schemas.registry``): a JSON
Schema per model in ``schemas/json/`` and ``schemas/asyncapi.yaml`` (AsyncAPI 3.0:
exchanges, routing keys, payloads). They are generated, never edited by hand:

    python -m conveyor.schemas.export           # (re)write them
    python -m conveyor.schemas.export --check   # exit 1 and list what differs from the models

``tests/unit/test_schema_contract.py`` fails when the committed files drift from the models.

The JSON Schemas refuse what the parser (``schemas/parsing.py``) refuses wherever JSON Schema
can say it (``_tighten``: control characters, UUID and timestamp spellings, unknown fields);
what it cannot say is listed in each schema's description (``PARSER_ONLY``, ``PARSER_LENIENT``)
and held to by ``tests/unit/test_schema_agreement.py``. ``schemas/released/<major>/`` keeps the
last released schemas; ``tests/unit/test_schema_compatibility.py`` refuses a breaking change.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from conveyor.schemas.registry import MESSAGES, MessageSpec
from conveyor.schemas.tolerance import READ_MAJORS, SCHEMA_VERSION_FIELD

HERE = Path(__file__).resolve().parent
JSON_DIR = "json"
ASYNCAPI_FILE = "asyncapi.yaml"
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
CONTRACT_VERSION = "1.0.0"
GENERATED = "Generated from schemas/registry.py by `python -m conveyor.schemas.export`; do not edit."
AMQP_BINDING_VERSION = "0.3.0"
ROUTING_KEY_PARAMETERS = {
    "tenant": "The tenant id as one routing-key word: letters, digits, '_' and '-' as they are, "
              "any other character as %XX per UTF-8 byte (schemas/inventory.py: routing_word).",
    "sku": "The SKU as one routing-key word, encoded like the tenant (a dot is %2E, a space %20); "
           "when the whole key would pass 255 bytes, '=' and 32 hex digits of the SKU's SHA-256.",
}
INFO = """\
What Conveyor consumes and publishes on RabbitMQ. Every exchange is a durable topic exchange; \
messages are JSON (application/json), persistent, with a unique message_id and type set. \
Published messages are delivered at least once (de-duplicate by message_id), through a \
transactional outbox; the outbound exchanges send what nobody is bound for to \
conveyor.unrouted. stock.changed messages are ordered per SKU and carry a version that grows \
by one per change. See README.md and docs/inventory-topic.md."""

# --- what the parser refuses, said in JSON Schema where it can be (patterns are ECMA-262) ---------
# parsing._CONTROL: C0 controls but tab, newline and carriage return; DEL; C1 controls.
CONTROL_CHARACTERS = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]"
NO_CONTROL_CHARACTERS = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*$"
UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
# RFC 3339 with a time zone offset (Z or +hh:mm) and seconds, years 0001 to 9999.
TIMESTAMP_PATTERN = (r"^(000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
                     r"T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]+)?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$")
UNKNOWN_VALUE = "UnknownFieldValue"
# A pattern of only literal characters, escaped punctuation and positive ranges of them
# admits no control character; anything else ([^...], \s, ., \x escapes) may, and gets a
# `not` of CONTROL_CHARACTERS beside it.
_MAY_ADMIT_CONTROLS = re.compile(r"\[\^|\\[^\-.+*?()\[\]{}|^$/]|(?<!\\)\.(?![^\[]*\])|[\x00-\x1f\x7f-\x9f]")

# The documented exceptions: tests/unit/test_schema_agreement.py holds the parser and the schemas
# to agree on everything else. The parser refuses these; a JSON Schema cannot say them.
PARSER_ONLY = {
    "body_size": "a body over the size limit (CONVEYOR_MAX_MESSAGE_BYTES, 256 KiB by default): "
                 "a JSON Schema sees a document, not its bytes",
    "utf8": "a body that is not UTF-8, or not JSON at all",
    "duplicate_keys": "an object with a key twice: the JSON data model a schema sees keeps one",
    "nan_infinity": "NaN, Infinity and -Infinity: they are not JSON",
    "integral_fraction": "a number written with a fraction or an exponent, anywhere, even when "
                         "integral (2.0, 2e0): JSON Schema's \"integer\" (draft 2020-12) is about the "
                         "value and accepts 2.0",
    "huge_integer": "an integer of more than 4300 digits",
    "deep_nesting": "arrays or objects nested deeper than about 900 levels",
    "utc_range": "a timestamp that falls outside years 1 to 9999 once in UTC "
                 "(0001-01-01T00:00:00+01:00)",
    "model_rules": "rules over several fields, named in the object's description",
}
# The parser accepts these spellings too; they are not part of the contract (senders must not
# rely on them), so the schemas refuse them.
PARSER_LENIENT = {
    "uuid_spellings": "a UUID as 32 hex digits without hyphens, in braces or as urn:uuid:",
    "timestamp_spellings": "a timestamp with t or z in lower case, a space for T, no seconds, "
                           "an offset without a colon (+0100), a comma before the fraction, or "
                           "Unix seconds as a string",
    "whitespace_class": "in a pattern with \\s, U+FEFF: whitespace to ECMA-262, not to the parser",
}
INTEGER_NOTE = "A JSON integer: the parser refuses 2.0 and 2e0, which JSON Schema's \"integer\" accepts."
UUID_NOTE = "A UUID in its hyphenated 8-4-4-4-12 form."
TIMESTAMP_NOTE = ("An RFC 3339 timestamp with seconds and a time zone offset (Z or +hh:mm); "
                  "it must fall within years 1 to 9999 in UTC too.")
WHITESPACE_NOTE = "\\s in the pattern: U+FEFF counts as whitespace here, not to the parser."


def documents() -> dict[str, str]:
    """Every generated file: path relative to ``schemas/`` -> its exact text."""
    files = {f"{JSON_DIR}/{name}.schema.json": _json_text(schema) for name, schema in json_schemas().items()}
    files[ASYNCAPI_FILE] = f"# {GENERATED}\n" + to_yaml(asyncapi())
    return files


def json_schemas() -> dict[str, dict]:
    """One JSON Schema per model, with the messages (exchange, routing key) that carry it."""
    schemas: dict[str, dict] = {}
    for model, mode in _models():
        if model.__name__ in schemas:
            raise ValueError(f"two message models are named {model.__name__}")
        carried_by = [{"exchange": s.exchange, "routing_key": s.routing_key, "direction": s.direction}
                      for s in MESSAGES if s.model is model]
        schema = model.model_json_schema(mode=mode)
        tolerant = mode == "validation"
        schema = _tighten(schema, unknown_ref=f"#/$defs/{UNKNOWN_VALUE}", tolerant=tolerant)
        schema = _describe_model(schema, model, tolerant=tolerant)
        if tolerant:
            schema.setdefault("$defs", {})[UNKNOWN_VALUE] = _unknown_value(f"#/$defs/{UNKNOWN_VALUE}")
        examples = {"examples": [EXAMPLES[model.__name__]]} if model.__name__ in EXAMPLES else {}
        schemas[model.__name__] = {"$schema": JSON_SCHEMA_DIALECT, "$comment": GENERATED, **schema, **examples,
                                   "x-conveyor-messages": carried_by}
    return schemas


def asyncapi() -> dict:
    refs, shared = models_json_schema(_models(), ref_template="#/components/schemas/{model}")
    unknown_ref = f"#/components/schemas/{UNKNOWN_VALUE}"
    consumed = _consumed_schema_names()
    components = {name: _tighten(schema, unknown_ref=unknown_ref, tolerant=name in consumed)
                  for name, schema in shared.get("$defs", {}).items()}
    for model, mode in _models():
        components[model.__name__] = _describe_model(components[model.__name__], model,
                                                     tolerant=mode == "validation")
    components[UNKNOWN_VALUE] = _unknown_value(unknown_ref)
    channels: dict[str, dict] = {}
    operations: dict[str, dict] = {}
    messages: dict[str, dict] = {}
    for spec in MESSAGES:
        name = spec.model.__name__
        channel_id = _identifier(f"{spec.exchange}-{spec.routing_key}")
        channels[channel_id] = _channel(spec, name)
        action = "send" if spec.direction == "published" else "receive"
        operations[f"{action}-{channel_id}"] = _operation(spec, action, channel_id, name)
        messages[name] = _message(spec, refs[(spec.model, _mode(spec))])
    messages[DEAD_LETTER] = _dead_letter_message()
    return {
        "asyncapi": "3.0.0",
        "info": {"title": "Conveyor", "version": CONTRACT_VERSION, "description": INFO},
        "defaultContentType": "application/json",
        "servers": SERVERS,
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": components},
    }


# --------------------------------------------------------------------------- JSON Schema as the parser


def _tighten(node: Any, *, unknown_ref: str, tolerant: bool) -> Any:
    """A copy of a pydantic JSON Schema that refuses what the parser refuses: strings without
    control characters, UUIDs and timestamps in their one spelling, integers noted. A tolerant
    (consumed) object takes unknown fields: the worker's reading drops them (schemas/tolerance.py)
    after refusing their floats and control characters, which ``UnknownFieldValue`` says."""
    if isinstance(node, list):
        return [_tighten(item, unknown_ref=unknown_ref, tolerant=tolerant) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict = {}
    for key, value in node.items():
        if key in ("properties", "$defs"):
            out[key] = {name: _tighten(item, unknown_ref=unknown_ref, tolerant=tolerant)
                        for name, item in value.items()}
        elif key in ("items", "additionalProperties", "not", "anyOf", "allOf", "oneOf", "prefixItems"):
            out[key] = _tighten(value, unknown_ref=unknown_ref, tolerant=tolerant)
        else:
            out[key] = value
    kind = out.get("type")
    if kind == "string":
        _tighten_string(out)
    elif kind == "integer":
        out["description"] = _sentences(out.get("description"), INTEGER_NOTE)
    elif kind == "object" and "properties" in out and tolerant and out.get("additionalProperties") is not True:
        # Consumed: unknown fields are read tolerantly by default (CONVEYOR_STRICT_CONTRACTS refuses them).
        out["additionalProperties"] = {"$ref": unknown_ref}
        out["propertyNames"] = {"pattern": NO_CONTROL_CHARACTERS}
    return out


def _tighten_string(node: dict) -> None:
    form = node.get("format")
    if form == "uuid":
        node["pattern"] = UUID_PATTERN
        node["description"] = _sentences(node.get("description"), UUID_NOTE)
    elif form == "date-time":
        node["pattern"] = TIMESTAMP_PATTERN
        node["description"] = _sentences(node.get("description"), TIMESTAMP_NOTE)
    elif "pattern" not in node:
        node["pattern"] = NO_CONTROL_CHARACTERS
    elif _MAY_ADMIT_CONTROLS.search(node["pattern"]):
        node["not"] = {"pattern": CONTROL_CHARACTERS}
    if "\\s" in node.get("pattern", ""):
        node["description"] = _sentences(node.get("description"), WHITESPACE_NOTE)


def _unknown_value(ref: str) -> dict:
    return {
        "title": UNKNOWN_VALUE,
        "description": "An unknown field of a consumed message: accepted and dropped (tolerant reading; "
                       "refused with CONVEYOR_STRICT_CONTRACTS), but still JSON as the parser reads it: "
                       "no number with a fraction, no control character in a string or a key.",
        "anyOf": [
            {"type": ["null", "boolean", "integer"]},
            {"type": "string", "pattern": NO_CONTROL_CHARACTERS},
            {"type": "array", "items": {"$ref": ref}},
            {"type": "object", "propertyNames": {"pattern": NO_CONTROL_CHARACTERS},
             "additionalProperties": {"$ref": ref}},
        ],
    }


def _describe_model(schema: dict, model: type[BaseModel], *, tolerant: bool) -> dict:
    """The message's description with what the parser checks beyond the schema; a consumed
    message's ``schema_version`` limited to the majors this Conveyor reads."""
    schema = dict(schema)
    rules = [" ".join((decorator.func.__doc__ or "").split())
             for decorator in model.__pydantic_decorators__.model_validators.values()]
    lines = [f"- {name}: {text}" for name, text in PARSER_ONLY.items()]
    lines += [f"- {name}: {text}" for name, text in PARSER_LENIENT.items()]
    schema["description"] = "\n".join([
        " ".join((schema.get("description") or model.__name__).split()),
        *(f"Rule over several fields (model_rules): {rule}" for rule in rules if rule),
        "",
        "Beyond this schema, the parser refuses (the first list) and also accepts, outside the contract "
        "(the second):",
        *lines[:len(PARSER_ONLY)], "", *lines[len(PARSER_ONLY):],
    ])
    version = schema.get("properties", {}).get(SCHEMA_VERSION_FIELD)
    if tolerant and version is not None:
        schema["properties"] = {**schema["properties"], SCHEMA_VERSION_FIELD: {**version, "enum": list(READ_MAJORS)}}
    return schema


def _consumed_schema_names() -> set[str]:
    names: set[str] = set()
    for model, mode in _models():
        if mode == "validation":
            names |= {model.__name__, *model.model_json_schema(mode=mode).get("$defs", {})}
    return names


def _sentences(*parts: str | None) -> str:
    return " ".join(part.strip().rstrip(".") + "." for part in parts if part)


# --------------------------------------------------------------------------- AsyncAPI


SERVERS = {"production": {
    "host": "rabbitmq:5672",
    "protocol": "amqp",
    "protocolVersion": "0.9.1",
    "pathname": "/{vhost}",
    "description": "The deployment's RabbitMQ (deploy/, docker-compose.yml); CONVEYOR_AMQP_URL names it.",
    "variables": {"vhost": {"default": "%2F",
                            "description": "The virtual host, percent-encoded as in an AMQP URI (%2F is /)."}},
}}
DEAD_LETTER = "DeadLetter"
ID = "6f1c6f0e-8f3a-4c57-9d1e-2b2f0c9d9a11"
AT = "2026-03-01T09:30:00Z"
EXAMPLES: dict[str, dict] = {
    "OrderCreated": {"order_id": ID, "tenant_id": "shop-1", "customer_id": "c-42", "currency": "EUR",
                     "items": [{"sku": "SKU-1", "quantity": 2, "unit_price": "12.50"}], "placed_at": AT},
    "CancelOrder": {"order_id": ID, "reason": "customer changed their mind"},
    "PaymentAuthorized": {"order_id": ID, "payment_id": "pay-7", "amount": "25.00", "currency": "EUR"},
    "PaymentFailed": {"order_id": ID, "payment_id": "pay-7", "reason": "card declined"},
    "ShipmentDispatched": {"order_id": ID, "shipment_id": "sh-3", "carrier": "dhl", "tracking_number": "00340434"},
    "ShipmentDelivered": {"order_id": ID, "shipment_id": "sh-3"},
    "OrderReserved": {"order_id": ID, "tenant_id": "shop-1", "customer_id": "c-42", "currency": "EUR",
                      "total": "25.00", "lines": [{"line_no": 1, "sku": "SKU-1", "quantity": 2, "unit_price": "12.50"}],
                      "occurred_at": AT},
    "OrderRejected": {"order_id": ID, "tenant_id": "shop-1", "customer_id": "c-42",
                      "lines": [{"line_no": 1, "sku": "SKU-1", "requested": 2, "available": 1,
                                 "reason": "insufficient_stock"}], "occurred_at": AT},
    "OrderStatusChanged": {"order_id": ID, "tenant_id": "shop-1", "status": "PAID", "previous_status": "RESERVED",
                           "payment_id": "pay-7", "occurred_at": AT},
    "RequestRefused": {"order_id": ID, "tenant_id": "shop-1", "status": "CANCELLED", "reason": "order is cancelled",
                       "payment_id": "pay-7", "amount": "25.00", "currency": "EUR", "occurred_at": AT},
    "StockChanged": {"sku": "SKU-1", "tenant_id": "shop-1", "on_hand": 10, "reserved": 2, "available": 8,
                     "version": 7, "occurred_at": AT, "cause": f"order.reserved:{ID}"},
}
GUARANTEES = {
    "consumed": {
        "delivery": "at-least-once: acknowledged after the transaction commits; a failure is retried later "
                    "or dead-lettered to <queue>.dlq (components/messages/DeadLetter), never dropped",
        "idempotency": "by message_id: a message_id seen before (the inbox) is acknowledged without effect",
        "ordering": "not relied on: the order state machine refuses a step that does not fit",
    },
    "published": {
        "delivery": "at-least-once, through the transactional outbox, with publisher confirms; "
                    "unroutable messages go to conveyor.unrouted",
        "idempotency": "by message_id: a copy repeats the message_id; de-duplicate on it",
        "ordering": "in order per order (order_id), as the outbox wrote them",
    },
    "stock": {
        "delivery": "at-least-once, through the outbox, with publisher confirms",
        "idempotency": "by message_id; version grows by one per change, so a version at or below the last "
                       "one applied is a repeat",
        "ordering": "in order per SKU (tenant_id, sku); a gap in version means a missed change",
    },
}
AMQP_PROPERTIES_NOTE = (
    "message_id, correlation_id, type, content_type, delivery_mode and timestamp are AMQP 0-9-1 basic "
    "properties, not entries of the AMQP headers table; they are listed here because AsyncAPI has no other "
    "place for them. Everything else is in the headers table.")


def _guarantees(spec: MessageSpec) -> dict:
    if spec.direction == "consumed":
        return GUARANTEES["consumed"]
    return GUARANTEES["stock" if spec.model.__name__ == "StockChanged" else "published"]


def _message_types(model: type[BaseModel]) -> list[str]:
    return sorted({s.routing_key.split(".{")[0] for s in MESSAGES if s.model is model})


def _headers(model: type[BaseModel]) -> dict:
    return {
        "type": "object",
        "description": AMQP_PROPERTIES_NOTE,
        "required": ["message_id"],
        "properties": {
            "message_id": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": NO_CONTROL_CHARACTERS,
                           "description": "AMQP property: unique per message; what consumers de-duplicate on"},
            "correlation_id": {"type": "string", "description": "AMQP property: the id that ties a "
                               "conversation together (for an event, the message it answers)"},
            "type": {"type": "string", "enum": _message_types(model),
                     "description": "AMQP property: the message type; when set, it equals the routing key "
                                    "(stock.changed for the inventory exchange)"},
            "content_type": {"type": "string", "enum": ["application/json"], "description": "AMQP property"},
            "delivery_mode": {"type": "integer", "enum": [2], "description": "AMQP property: 2, persistent"},
            "timestamp": {"type": "integer", "description": "AMQP property: when it was published, Unix seconds"},
            "x-conveyor-causation-id": {"type": "string",
                                        "description": "AMQP header, set by Conveyor on what it publishes: the "
                                                       "message_id of the consumed message that caused it"},
            "traceparent": {"type": "string", "pattern": "^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$",
                            "description": "AMQP header: W3C trace context; Conveyor passes a consumed message's on "
                                           "to the events it causes (or its own span's, with conveyor[otel])"},
            "tracestate": {"type": "string", "maxLength": 512, "description": "AMQP header: W3C trace state"},
        },
    }


def _message(spec: MessageSpec, payload: dict) -> dict:
    name = spec.model.__name__
    types = _message_types(spec.model)
    amqp: dict = {"bindingVersion": AMQP_BINDING_VERSION}
    if len(types) == 1:
        amqp["messageType"] = types[0]
    return {
        "name": name, "title": name, "summary": _summary(spec.model),
        "contentType": "application/json",
        "headers": _headers(spec.model),
        "correlationId": {"location": "$message.header#/correlation_id",
                          "description": "The AMQP correlation_id property."},
        "payload": payload,
        "bindings": {"amqp": amqp},
        "examples": [{"name": f"{name}-example", "summary": f"A {types[0]} message.",
                      "headers": {"message_id": "5b0d2c1e-4f7a-4e8b-9c3d-1a2b3c4d5e6f", "type": types[0],
                                  "content_type": "application/json", "delivery_mode": 2},
                      "payload": EXAMPLES[name]}],
    }


DEAD_LETTER_HEADERS = {
    "x-conveyor-attempts": ("integer", "attempts so far"),
    "x-conveyor-original-exchange": ("string", "the exchange it was published to"),
    "x-conveyor-original-routing-key": ("string", "its routing key"),
    "x-conveyor-original-queue": ("string", "the work queue it was consumed from"),
    "x-conveyor-first-failure-at": ("string", "when it first failed (RFC 3339)"),
    "x-conveyor-last-failure-at": ("string", "when it last failed (RFC 3339)"),
    "x-conveyor-error-class": ("string", "the failure's class: invalid, transient, permanent, ..."),
    "x-conveyor-error-code": ("string", "a short code (for an invalid message: schema_violation, float_number, ...)"),
    "x-conveyor-error-message": ("string", "the failure's message, shortened"),
    "x-conveyor-traceback": ("string", "the traceback's last lines, when there is one"),
    "x-conveyor-reason": ("string", "why it was dead-lettered"),
    "x-conveyor-replayed-at": ("string", "set by conveyor dlq replay: when"),
    "x-conveyor-replayed-by": ("string", "set by conveyor dlq replay: who"),
    "x-conveyor-replay-id": ("string", "set by conveyor dlq replay: the replay's id"),
}


def _dead_letter_message() -> dict:
    headers = {name: {"type": kind, "description": text} for name, (kind, text) in DEAD_LETTER_HEADERS.items()}
    return {
        "name": DEAD_LETTER, "title": DEAD_LETTER,
        "summary": "A consumed message that failed for good, in <queue>.dlq (default exchange).",
        "description": "The original body and properties, untouched, with x-conveyor-* entries in the AMQP "
                       "headers table saying where it came from and why it failed; earlier values move to "
                       "x-conveyor-previous-* on a replay. Read it with `conveyor dlq`. Queues: every work "
                       "queue <queue> has <queue>.dlq (quorum), bound to the default exchange.",
        "headers": {"type": "object", "required": ["x-conveyor-original-exchange", "x-conveyor-original-routing-key"],
                    "properties": headers},
        "payload": {"description": "The original body, byte for byte: it need not be valid JSON (an invalid "
                                   "message is dead-lettered as it came)."},
    }


def _channel(spec: MessageSpec, message_name: str) -> dict:
    guarantees = _guarantees(spec)
    channel: dict = {
        "address": spec.routing_key,
        "description": " ".join(f"{aspect.capitalize()}: {text}." for aspect, text in guarantees.items()),
        "messages": {message_name: {"$ref": f"#/components/messages/{message_name}"}},
        "bindings": {"amqp": {
            "is": "routingKey",
            "exchange": {"name": spec.exchange, "type": "topic", "durable": True, "autoDelete": False,
                         "vhost": "/"},
            "bindingVersion": AMQP_BINDING_VERSION,
        }},
    }
    parameters = re.findall(r"\{(\w+)\}", spec.routing_key)
    if parameters:
        channel["parameters"] = {p: {"description": ROUTING_KEY_PARAMETERS[p]} for p in parameters}
    channel["x-conveyor-guarantees"] = guarantees
    return channel


def _operation(spec: MessageSpec, action: str, channel_id: str, message_name: str) -> dict:
    operation: dict = {
        "action": action,
        "channel": {"$ref": f"#/channels/{channel_id}"},
        "messages": [{"$ref": f"#/channels/{channel_id}/messages/{message_name}"}],
    }
    if action == "send":
        operation["bindings"] = {"amqp": {"deliveryMode": 2, "mandatory": True, "timestamp": True,
                                          "bindingVersion": AMQP_BINDING_VERSION}}
    return operation


def _models() -> list[tuple[type[BaseModel], JsonSchemaMode]]:
    """Each model once, in registry order, with the JSON Schema mode of its direction."""
    seen: dict[type[BaseModel], JsonSchemaMode] = {}
    for spec in MESSAGES:
        seen.setdefault(spec.model, _mode(spec))
    return list(seen.items())


def _mode(spec: MessageSpec) -> JsonSchemaMode:
    # What we validate on the way in; what we produce on the way out.
    consumed = any(s.model is spec.model and s.direction == "consumed" for s in MESSAGES)
    return "validation" if consumed else "serialization"


def _identifier(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-")


def _summary(model: type[BaseModel]) -> str:
    doc = " ".join((model.__doc__ or model.__name__).split())
    return doc.split(". ")[0].rstrip(".") + "."


def _json_text(document: dict) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


# --------------------------------------------------------------------------- YAML

_PLAIN = re.compile(r"^[A-Za-z_$][A-Za-z0-9_./$-]*$")
_YAML_WORDS = {"true", "false", "null", "yes", "no", "on", "off", "y", "n", "~"}


def to_yaml(value: object, indent: int = 0) -> str:
    """Block-style YAML for JSON-like data (no PyYAML needed): strings that could be read
    as anything else are double-quoted with JSON escapes, which YAML accepts as they are."""
    pad = "  " * indent
    if isinstance(value, dict) and value:
        return "".join(f"{pad}{_scalar(key)}:{_nested(item, indent)}" for key, item in value.items())
    if isinstance(value, list) and value:
        lines = []
        for item in value:
            text = to_yaml(item, indent + 1) if _is_block(item) else f"{'  ' * (indent + 1)}{_scalar(item)}\n"
            lines.append(f"{pad}- {text[len(pad) + 2:]}")
        return "".join(lines)
    return f"{pad}{_scalar(value)}\n"


def _nested(value: object, indent: int) -> str:
    return "\n" + to_yaml(value, indent + 1) if _is_block(value) else f" {_scalar(value)}\n"


def _is_block(value: object) -> bool:
    return isinstance(value, (dict, list)) and bool(value)


def _scalar(value: object) -> str:
    if isinstance(value, str):
        plain = _PLAIN.match(value) and value.lower() not in _YAML_WORDS
        return value if plain else json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[]"
    return json.dumps(value)


# --------------------------------------------------------------------------- files


def drift(directory: Path = HERE) -> list[str]:
    """What differs between the models and the committed files (empty: nothing)."""
    expected = documents()
    problems = []
    for path, text in expected.items():
        target = directory / path
        if not target.exists():
            problems.append(f"missing {path}")
        elif target.read_text(encoding="utf-8") != text:
            problems.append(f"out of date {path}")
    for target in sorted((directory / JSON_DIR).glob("*.schema.json")):
        if f"{JSON_DIR}/{target.name}" not in expected:
            problems.append(f"no longer generated {JSON_DIR}/{target.name}")
    return problems


def write(directory: Path = HERE) -> list[str]:
    """Write every document, delete schemas of models that are gone; returns what changed."""
    changed = drift(directory)
    (directory / JSON_DIR).mkdir(exist_ok=True)
    for path, text in documents().items():
        (directory / path).write_text(text, encoding="utf-8")
    for problem in changed:
        if problem.startswith("no longer generated "):
            (directory / problem.removeprefix("no longer generated ")).unlink()
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m conveyor.schemas.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed files differ")
    args = parser.parse_args(argv)
    if args.check:
        problems = drift()
        for problem in problems:
            print(problem)
        return 1 if problems else 0
    changes = write()
    print("\n".join(f"updated: {change}" for change in changes) or "contract documents are up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
