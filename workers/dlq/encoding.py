"""A dead-lettered message as JSON: the export line format and the ``--json`` of ``show``.

Pure. Bodies stay byte-exact: UTF-8 text as a JSON string (JSON escapes keep every
character), anything else as base64 (``body_encoding`` says which). AMQP header values
JSON has no type for are tagged: ``{"$bytes": base64}``, ``{"$decimal": "1.50"}``,
``{"$timestamp": ISO-8601}``; tables are JSON objects, arrays are lists.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime
from decimal import Decimal

from pika.spec import BasicProperties

from conveyor.workers.dlq.letters import parse_stamp

FORMAT = "conveyor-dlq-export/1"
PROPERTY_NAMES = ("content_type", "content_encoding", "delivery_mode", "priority", "correlation_id",
                  "reply_to", "expiration", "message_id", "timestamp", "type", "user_id", "app_id",
                  "cluster_id")
_INT_PROPERTIES = frozenset({"delivery_mode", "priority", "timestamp"})
_TAGS = ("$bytes", "$decimal", "$timestamp")


class BadRecord(ValueError):
    """A line of an export file that is not a Conveyor DLQ record."""


def encode_body(body: bytes) -> tuple[str, str]:
    """(encoding, text): ``utf-8`` when the bytes are valid UTF-8, else ``base64``."""
    try:
        return "utf-8", body.decode("utf-8")
    except UnicodeDecodeError:
        return "base64", base64.b64encode(body).decode("ascii")


def decode_body(encoding: str, text: str) -> bytes:
    if encoding == "utf-8":
        return text.encode("utf-8")
    if encoding == "base64":
        return base64.b64decode(text.encode("ascii"), validate=True)
    raise BadRecord(f"unknown body_encoding {encoding!r}")


def encode_value(value: object) -> object:
    if isinstance(value, bytes):
        return {"$bytes": base64.b64encode(value).decode("ascii")}
    if isinstance(value, Decimal):
        return {"$decimal": str(value)}
    if isinstance(value, datetime):
        return {"$timestamp": value.isoformat()}
    if isinstance(value, dict):
        return {str(k): encode_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [encode_value(v) for v in value]
    return value


def decode_value(value: object) -> object:
    if isinstance(value, dict):
        if len(value) == 1 and next(iter(value)) in _TAGS:
            return _decode_tagged(*next(iter(value.items())))
        return {k: decode_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode_value(v) for v in value]
    return value


def _decode_tagged(tag: str, text: str) -> object:
    if tag == "$bytes":
        return base64.b64decode(text.encode("ascii"), validate=True)
    if tag == "$decimal":
        return Decimal(text)
    return parse_stamp(text)


def properties_to_dict(properties: BasicProperties) -> dict:
    found = {name: getattr(properties, name) for name in PROPERTY_NAMES if getattr(properties, name) is not None}
    if properties.headers:
        found["headers"] = encode_value(properties.headers)
    return found


def properties_from_dict(data: dict) -> BasicProperties:
    unknown = set(data) - set(PROPERTY_NAMES) - {"headers"}
    if unknown:
        raise BadRecord(f"unknown properties {sorted(unknown)}")
    values = {name: data[name] for name in PROPERTY_NAMES if data.get(name) is not None}
    for name, value in values.items():
        expected = int if name in _INT_PROPERTIES else str
        if not isinstance(value, expected) or isinstance(value, bool):
            raise BadRecord(f"property {name} must be {expected.__name__}")
    if data.get("headers"):
        values["headers"] = decode_value(data["headers"])
    return BasicProperties(**values)


def to_line(properties: BasicProperties, body: bytes, *, queue: str, position: int) -> str:
    encoding, text = encode_body(body)
    record = {"format": FORMAT, "queue": queue, "position": position,
              "properties": properties_to_dict(properties), "body_encoding": encoding, "body": text}
    return json.dumps(record, separators=(",", ":"))


def from_line(line: str) -> tuple[str, BasicProperties, bytes]:
    """(queue, properties, body) from one export line; ``BadRecord`` when it is not one."""
    try:
        record = json.loads(line)
    except ValueError as error:
        raise BadRecord(f"not JSON ({error})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise BadRecord(f"not a {FORMAT} record")
    try:
        queue, properties = record["queue"], record["properties"]
        body = decode_body(record["body_encoding"], record["body"])
    except (KeyError, TypeError, ValueError) as error:
        raise BadRecord(f"incomplete record ({error})") from None
    if not isinstance(queue, str) or not queue or not isinstance(properties, dict):
        raise BadRecord("queue must be a name and properties an object")
    return queue, properties_from_dict(properties), body
