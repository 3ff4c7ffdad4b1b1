"""Deliveries and their headers: what attempt this is, where it came from, and the
properties of the retry and dead-letter copies (body and original properties untouched)."""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from datetime import datetime, timezone

from pika.spec import BasicProperties

from conveyor.workers.runtime.tracecontext import copy_headers

H_ATTEMPTS = "x-conveyor-attempts"
H_ORIGINAL_EXCHANGE = "x-conveyor-original-exchange"
H_ORIGINAL_ROUTING_KEY = "x-conveyor-original-routing-key"
H_ORIGINAL_QUEUE = "x-conveyor-original-queue"
H_FIRST_FAILURE = "x-conveyor-first-failure-at"
H_LAST_FAILURE = "x-conveyor-last-failure-at"
H_ERROR_CLASS = "x-conveyor-error-class"
H_ERROR_CODE = "x-conveyor-error-code"
H_ERROR_MESSAGE = "x-conveyor-error-message"
H_TRACEBACK = "x-conveyor-traceback"
H_REASON = "x-conveyor-reason"
H_DEFERRALS = "x-conveyor-deferrals"          # times deferred for tenant fairness (not attempts)
H_DEFERRED_UNTIL = "x-conveyor-deferred-until-ms"  # the slot it was given (Unix ms)
H_DEFERRED_REASON = "x-conveyor-deferred-reason"
MAX_ATTEMPTS_HEADER = 1_000_000


@dataclass(frozen=True)
class Delivery:
    generation: int          # which channel delivered it: acks for a dead channel are dropped
    delivery_tag: int
    exchange: str
    routing_key: str
    redelivered: bool
    properties: BasicProperties
    body: bytes

    @property
    def headers(self) -> dict:
        return self.properties.headers or {}

    @property
    def previous_attempts(self) -> int:
        value = self.headers.get(H_ATTEMPTS, 0)
        # Ours never exceeds the attempt limit; a publisher's 2**63 would not fit the copy's header.
        return value if isinstance(value, int) and 0 <= value <= MAX_ATTEMPTS_HEADER else 0

    @property
    def original_exchange(self) -> str:
        return str(self.headers.get(H_ORIGINAL_EXCHANGE, self.exchange))

    @property
    def original_routing_key(self) -> str:
        return str(self.headers.get(H_ORIGINAL_ROUTING_KEY, self.routing_key))

    @property
    def deferred_until(self) -> float | None:
        """The slot (Unix seconds) a fairness deferral gave it, if it was deferred."""
        value = self.headers.get(H_DEFERRED_UNTIL)
        return value / 1000 if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


@dataclass(frozen=True)
class Failure:
    error: BaseException
    code: str
    reason: str


def failure_properties(delivery: Delivery, failure: Failure, *, queue: str, attempts: int,
                       now: datetime | None = None) -> BasicProperties:
    """The original properties with failure headers added; used for retry and DLQ copies."""
    stamp = (now or datetime.now(timezone.utc)).isoformat()
    headers = {key: _encodable(value) for key, value in delivery.headers.items()}
    headers.setdefault(H_ORIGINAL_EXCHANGE, delivery.exchange)
    headers.setdefault(H_ORIGINAL_ROUTING_KEY, delivery.routing_key)
    headers.setdefault(H_ORIGINAL_QUEUE, queue)
    headers.setdefault(H_FIRST_FAILURE, stamp)
    headers.update(copy_headers(delivery.properties.message_id))
    headers.update({
        H_ATTEMPTS: attempts,
        H_LAST_FAILURE: stamp,
        H_ERROR_CLASS: type(failure.error).__name__,
        H_ERROR_CODE: failure.code,
        H_ERROR_MESSAGE: str(failure.error)[:1000],
        H_TRACEBACK: short_traceback(failure.error),
        H_REASON: failure.reason,
    })
    return _copy(delivery.properties, headers)


def deferral_properties(delivery: Delivery, *, queue: str, until: float, reason: str) -> BasicProperties:
    """The original properties with the deferral's headers; attempts stay as they were."""
    headers = {key: _encodable(value) for key, value in delivery.headers.items()}
    headers.setdefault(H_ORIGINAL_EXCHANGE, delivery.exchange)
    headers.setdefault(H_ORIGINAL_ROUTING_KEY, delivery.routing_key)
    headers.setdefault(H_ORIGINAL_QUEUE, queue)
    headers.update(copy_headers(delivery.properties.message_id))
    deferrals = headers.get(H_DEFERRALS, 0)
    headers[H_DEFERRALS] = (deferrals if isinstance(deferrals, int) and 0 <= deferrals < 2**31 else 0) + 1
    headers[H_DEFERRED_UNTIL] = int(until * 1000)
    headers[H_DEFERRED_REASON] = reason[:300]
    return _copy(delivery.properties, headers)


def _copy(source: BasicProperties, headers: dict) -> BasicProperties:
    return BasicProperties(
        content_type=source.content_type, content_encoding=source.content_encoding,
        headers=headers, delivery_mode=2, priority=source.priority,
        correlation_id=source.correlation_id, reply_to=source.reply_to,
        message_id=source.message_id, timestamp=source.timestamp, type=source.type,
        user_id=None, app_id=source.app_id,
    )


def _encodable(value):
    """A header value pika can encode again. pika decodes an AMQP double into an int (1e300
    becomes a 301-digit int) that it cannot encode back: such a number travels as text."""
    if isinstance(value, int) and not isinstance(value, bool) and not -2**63 <= value < 2**63:
        return str(value)
    if isinstance(value, dict):
        return {k: _encodable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_encodable(v) for v in value]
    return value


def short_traceback(error: BaseException, *, frames: int = 4) -> str:
    """The last few frames, file:line function only: no local variables, no message bodies."""
    summary = traceback.extract_tb(error.__traceback__)[-frames:]
    return " | ".join(f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno} {f.name}" for f in summary)[:1000]
