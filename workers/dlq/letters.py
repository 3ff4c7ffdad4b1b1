"""What a dead letter says about itself: its ids, where it came from, why and when it failed.

Pure: built from the AMQP properties and the body. Conveyor's ``x-conveyor-*`` failure
headers (``conveyor.workers.runtime.envelope``) come first. A message the broker dead-lettered by
itself (a quorum queue's delivery limit, after crash loops) carries only ``x-death``,
which is read as the fallback. Also here: the replay headers and a letter's identity.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone

from conveyor.workers.runtime import envelope as h

H_REPLAYED_AT = "x-conveyor-replayed-at"
H_REPLAYED_BY = "x-conveyor-replayed-by"
H_REPLAY_ID = "x-conveyor-replay-id"
H_IMPORTED_AT = "x-conveyor-imported-at"
H_IMPORTED_BY = "x-conveyor-imported-by"
PREVIOUS_PREFIX = "x-conveyor-previous-"

# Why the broker dead-letters by itself; "expired" is a retry tier handing a message back.
BROKER_DEAD_LETTER_REASONS = frozenset({"delivery_limit", "rejected", "maxlen"})
ORDER_ID_MAX_BODY = 1024 * 1024  # larger bodies are not parsed for their order id


@dataclass(frozen=True)
class DeadLetter:
    position: int                  # 0 = head of the DLQ
    message_id: str | None
    order_id: str | None
    exchange: str | None           # where it was first published: a replay goes back there
    routing_key: str | None
    original_queue: str | None
    error_class: str
    error_code: str
    error_message: str
    reason: str
    where: str                     # innermost traceback frame, "file.py:123 function"
    attempts: int
    first_failed_at: datetime | None
    failed_at: datetime | None     # the last failure
    replay_id: str | None          # set when a replay put it back and it failed again
    replayed_by: str | None
    body_size: int

    @property
    def routable(self) -> bool:
        return self.exchange is not None and self.routing_key is not None


def read_letter(properties, body: bytes, *, position: int) -> DeadLetter:
    headers = properties.headers or {}
    death = broker_death(headers)
    return DeadLetter(
        position=position,
        message_id=properties.message_id,
        order_id=order_id_of(body),
        exchange=_text(headers.get(h.H_ORIGINAL_EXCHANGE, death.get("exchange"))),
        routing_key=_text(headers.get(h.H_ORIGINAL_ROUTING_KEY, _first(death.get("routing-keys")))),
        original_queue=_text(headers.get(h.H_ORIGINAL_QUEUE, death.get("queue"))),
        replay_id=_text(headers.get(H_REPLAY_ID)),
        replayed_by=_text(headers.get(H_REPLAYED_BY)),
        body_size=len(body),
        **(_broker_failure(death, headers) if death else _conveyor_failure(headers)),
    )


def _conveyor_failure(headers: dict) -> dict:
    return {
        "error_class": _text(headers.get(h.H_ERROR_CLASS)) or "unknown",
        "error_code": _text(headers.get(h.H_ERROR_CODE)) or "",
        "error_message": _text(headers.get(h.H_ERROR_MESSAGE)) or "",
        "reason": _text(headers.get(h.H_REASON)) or "",
        "where": innermost_frame(_text(headers.get(h.H_TRACEBACK)) or ""),
        "attempts": _count(headers.get(h.H_ATTEMPTS)),
        "first_failed_at": parse_stamp(headers.get(h.H_FIRST_FAILURE)),
        "failed_at": parse_stamp(headers.get(h.H_LAST_FAILURE)),
    }


def _broker_failure(death: dict, headers: dict) -> dict:
    reason = str(death.get("reason"))
    failed_at = parse_stamp(death.get("time"))
    return {
        "error_class": "BrokerDeadLetter",
        "error_code": reason,
        "error_message": f"dead-lettered by the broker from {death.get('queue')}: {reason}",
        "reason": f"broker: {reason}",
        "where": "",
        "attempts": _count(headers.get(h.H_ATTEMPTS)),
        "first_failed_at": parse_stamp(headers.get(h.H_FIRST_FAILURE)) or failed_at,
        "failed_at": failed_at,
    }


def broker_death(headers: dict) -> dict:
    """The newest ``x-death`` entry when the broker itself dead-lettered the message, else {}."""
    deaths = headers.get("x-death")
    if not isinstance(deaths, list) or not deaths or not isinstance(deaths[0], dict):
        return {}
    newest = deaths[0]
    return newest if newest.get("reason") in BROKER_DEAD_LETTER_REASONS else {}


def innermost_frame(traceback_text: str) -> str:
    """``"a.py:1 f | b.py:2 g"`` (outermost first, as the runtime writes it) → ``"b.py:2 g"``."""
    return traceback_text.rsplit("|", 1)[-1].strip()


def order_id_of(body: bytes) -> str | None:
    if len(body) > ORDER_ID_MAX_BODY:
        return None
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):  # not JSON, not UTF-8: no order id to show
        return None
    value = document.get("order_id") if isinstance(document, dict) else None
    return value[:64] if isinstance(value, str) else None


def parse_stamp(value: object) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, (str, bytes)):
        try:
            stamp = datetime.fromisoformat(value.decode() if isinstance(value, bytes) else value)
        except (ValueError, UnicodeDecodeError):
            return None
        return stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)
    return None


def letter_key(properties, body: bytes) -> str:
    """Identity of one dead-lettered copy: message id, body, last failure and replay run.

    Two copies of the same failure (an export imported twice) share a key; the same
    message failing again later does not.
    """
    headers = properties.headers or {}
    digest = hashlib.sha256()
    for part in (properties.message_id, headers.get(h.H_LAST_FAILURE), headers.get(H_REPLAY_ID),
                 headers.get(h.H_ERROR_CODE)):
        digest.update(repr(part).encode() + b"\x00")
    digest.update(body)
    return digest.hexdigest()


def _text(value: object) -> str | None:
    if value is None:
        return None
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _first(values: object) -> object:
    return values[0] if isinstance(values, list) and values else None


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0
