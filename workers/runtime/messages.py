"""From a raw delivery to a routed, validated message: properties first, then the body.

Everything refused here is an ``InvalidMessage`` and goes to the DLQ without a retry. Unknown
fields of a body are dropped and counted (``conveyor_unknown_fields``), logged once per
(type, field) per process, unless ``CONVEYOR_STRICT_CONTRACTS`` refuses them.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Any

from conveyor.schemas.errors import InvalidMessage
from conveyor.schemas.parsing import read_message
from conveyor.workers.config import Settings
from conveyor.workers.logging import get_logger
from conveyor.workers.observability.metrics import UNKNOWN_FIELDS
from conveyor.workers.runtime.envelope import Delivery
from conveyor.workers.runtime.spec import HandlerContext, Route, WorkerSpec
from conveyor.workers.runtime.tracecontext import trace_context

_C0_CONTROL = re.compile(r"[\x00-\x1f]")

ACCEPTED_CONTENT_TYPES = frozenset({"application/json"})

log = get_logger("conveyor.messages")


@dataclass(frozen=True)
class ParsedMessage:
    route: Route
    message: Any
    context: HandlerContext
    lock_pairs: list[tuple[str, str]]
    ignored_fields: tuple[str, ...] = ()   # unknown fields the tolerant reader dropped (dotted paths)


def parse_delivery(delivery: Delivery, spec: WorkerSpec, *, settings: Settings) -> ParsedMessage:
    message_id = _message_id(delivery)
    message_type = _message_type(delivery)
    route = spec.routes.get(message_type)
    if route is None:
        raise InvalidMessage("unknown_type", f"{spec.name} does not handle {message_type!r}")
    reading = read_message(delivery.body, route.model, max_bytes=settings.max_message_bytes,
                           tolerant=not settings.strict_contracts, message_type=message_type)
    message = reading.message
    for path in reading.unknown_fields:
        UNKNOWN_FIELDS.labels(type=message_type, field=_UNKNOWN.label(message_type, path)).inc()
    context = HandlerContext(message_id=message_id, routing_key=message_type,
                             attempt=delivery.previous_attempts + 1,
                             default_tenant=settings.default_tenant, trace=trace_context(delivery.headers))
    pairs = route.lock_pairs(message, context) if route.lock_pairs else []
    return ParsedMessage(route, message, context, pairs, tuple(reading.unknown_fields))


def _message_id(delivery: Delivery) -> str:
    message_id = delivery.properties.message_id
    if isinstance(message_id, bytes):  # not UTF-8: pika hands it over undecoded
        raise InvalidMessage("bad_message_id", "message_id is not valid UTF-8")
    if not message_id or not message_id.strip():
        raise InvalidMessage("missing_message_id", "the message_id property is required for de-duplication")
    if len(message_id) > 255:
        raise InvalidMessage("bad_message_id", "message_id is longer than 255 characters")
    if _C0_CONTROL.search(message_id):
        raise InvalidMessage("bad_message_id", "message_id contains control characters")
    return message_id


def _message_type(delivery: Delivery) -> str:
    content_type = delivery.properties.content_type
    if isinstance(content_type, bytes):  # not UTF-8: pika hands it over undecoded
        raise InvalidMessage("wrong_content_type", f"content_type {content_type[:100]!r} is not UTF-8")
    if content_type is not None and content_type.split(";")[0].strip().lower() not in ACCEPTED_CONTENT_TYPES:
        raise InvalidMessage("wrong_content_type", f"content_type {content_type[:100]!r} is not application/json")
    routing_key = delivery.original_routing_key
    declared = delivery.properties.type
    if declared and declared != routing_key:
        raise InvalidMessage("type_mismatch", f"type {declared[:100]!r} differs from routing key {routing_key!r}")
    return routing_key


# A field's name is the sender's text: as a metric label and a log key it is kept to a short
# plain name, and to a bounded number of (type, field) pairs per process, past which every
# new one is counted as OTHER_FIELD (a hostile or buggy sender cannot grow the series forever).
_FIELD_NAME = re.compile(r"[A-Za-z0-9_.-]{1,128}")
UNNAMED_FIELD, OTHER_FIELD = "<unnamed>", "<other>"
MAX_UNKNOWN_LABELS = 500


class _UnknownFields:
    """The (type, field) pairs seen by this process: each is logged the first time only."""

    def __init__(self) -> None:
        self._seen: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def label(self, message_type: str, path: str) -> str:
        field = path if _FIELD_NAME.fullmatch(path) else UNNAMED_FIELD
        with self._lock:
            if (message_type, field) in self._seen:
                return field
            if len(self._seen) >= MAX_UNKNOWN_LABELS:
                field = OTHER_FIELD
                if (message_type, field) in self._seen:
                    return field
            self._seen.add((message_type, field))
        log.warning("unknown_field_ignored", type=message_type, field=field)
        return field


_UNKNOWN = _UnknownFields()
