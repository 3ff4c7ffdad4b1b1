"""From a raw delivery to a routed, validated message: properties first, then the body.

Everything refused here is an ``InvalidMessage`` and goes to the DLQ without a retry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from conveyor.schemas.errors import InvalidMessage
from conveyor.schemas.parsing import parse_message
from conveyor.workers.config import Settings
from conveyor.workers.runtime.envelope import Delivery
from conveyor.workers.runtime.spec import HandlerContext, Route, WorkerSpec

_C0_CONTROL = re.compile(r"[\x00-\x1f]")

ACCEPTED_CONTENT_TYPES = frozenset({"application/json"})


@dataclass(frozen=True)
class ParsedMessage:
    route: Route
    message: Any
    context: HandlerContext
    lock_pairs: list[tuple[str, str]]


def parse_delivery(delivery: Delivery, spec: WorkerSpec, *, settings: Settings) -> ParsedMessage:
    message_id = _message_id(delivery)
    message_type = _message_type(delivery)
    route = spec.routes.get(message_type)
    if route is None:
        raise InvalidMessage("unknown_type", f"{spec.name} does not handle {message_type!r}")
    message = parse_message(delivery.body, route.model, max_bytes=settings.max_message_bytes)
    context = HandlerContext(message_id=message_id, routing_key=message_type,
                             attempt=delivery.previous_attempts + 1,
                             default_tenant=settings.default_tenant)
    pairs = route.lock_pairs(message, context) if route.lock_pairs else []
    return ParsedMessage(route, message, context, pairs)


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
