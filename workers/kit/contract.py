"""The consumed message types and the worker's verdict on a document, without a broker.

``check`` builds the delivery a worker would receive (the contract's properties, the type as
routing key) and runs the worker's own parser on it, so what it accepts and the reason it
gives for a refusal are exactly the worker's (``x-conveyor-error-message``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from conveyor.schemas.errors import InvalidMessage
from conveyor.schemas.registry import MESSAGES, MessageSpec
from conveyor.workers.config import Settings, load_settings

CONTENT_TYPE = "application/json"
CONSUMED: dict[str, MessageSpec] = {spec.routing_key: spec for spec in MESSAGES if spec.direction == "consumed"}
# The header the worker writes is the error's text cut to this length (runtime/envelope.py).
REASON_LIMIT = 1000


@dataclass(frozen=True)
class Verdict:
    """What a worker would make of the document: accepted (with the parsed model) or refused."""

    accepted: bool
    type: str
    error_code: str | None = None
    reason: str | None = None
    message: Any = None
    ignored_fields: tuple[str, ...] = ()   # unknown fields a (tolerant) worker would drop

    def as_dict(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "type": self.type, "error_code": self.error_code,
                "reason": self.reason, "ignored_fields": list(self.ignored_fields)}


def spec_for(message_type: str) -> MessageSpec:
    """The registry's entry for a type Conveyor consumes; ``ValueError`` for any other."""
    try:
        return CONSUMED[message_type]
    except KeyError:
        raise ValueError(f"Conveyor does not consume {message_type!r}; "
                         f"choose from {', '.join(CONSUMED)}") from None


def check(message_type: str, body: bytes, *, message_id: str | None = None,
          settings: Settings | None = None) -> Verdict:
    """The worker's verdict on ``body`` published as ``message_type`` (size limit and default
    tenant from ``settings``, else from the environment's ``CONVEYOR_*``)."""
    from pika.spec import BasicProperties

    from conveyor.workers.bootstrap import WORKERS
    from conveyor.workers.runtime.envelope import Delivery
    from conveyor.workers.runtime.messages import parse_delivery

    spec = spec_for(message_type)
    worker = next(w for w in WORKERS.values() if message_type in w.routes)
    properties = BasicProperties(message_id=str(uuid.uuid4()) if message_id is None else message_id,
                                 content_type=CONTENT_TYPE, type=message_type, delivery_mode=2)
    delivery = Delivery(generation=0, delivery_tag=0, exchange=spec.exchange, routing_key=message_type,
                        redelivered=False, properties=properties, body=body)
    try:
        parsed = parse_delivery(delivery, worker, settings=settings or load_settings())
    except InvalidMessage as error:
        return Verdict(False, message_type, error.code, str(error)[:REASON_LIMIT])
    return Verdict(True, message_type, message=parsed.message, ignored_fields=parsed.ignored_fields)
