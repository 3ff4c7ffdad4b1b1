"""The W3C trace context a delivery carries (https://www.w3.org/TR/trace-context/): its
``traceparent`` and ``tracestate`` AMQP headers, checked and passed on to the events the
delivery causes. An invalid ``traceparent`` is dropped with its ``tracestate`` (the
recommendation says to restart the trace rather than propagate garbage)."""

from __future__ import annotations

import re
from collections.abc import Mapping

from conveyor.db.outbox import EventContext
from conveyor.workers.runtime.spec import CAUSATION_HEADER, HandlerContext

TRACEPARENT = re.compile(r"^(?!ff)[0-9a-f]{2}-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}$")
TRACESTATE = re.compile(r"^[\x20-\x7e]{1,512}$")


def trace_context(headers: Mapping[str, object]) -> dict[str, str]:
    """``traceparent`` (and ``tracestate``) from a delivery's headers, when valid; else empty."""
    parent = _text(headers.get("traceparent"))
    if parent is None or not TRACEPARENT.match(parent):
        return {}
    state = _text(headers.get("tracestate"))
    return {"traceparent": parent, **({"tracestate": state} if state and TRACESTATE.match(state) else {})}


def event_context(ctx: HandlerContext) -> EventContext:
    """The transaction's context for the events SQL writes (the stock trigger's partner rows)."""
    return EventContext(causation_id=ctx.message_id, traceparent=ctx.trace.get("traceparent", ""),
                        tracestate=ctx.trace.get("tracestate", ""))


def copy_headers(message_id: str | None) -> dict[str, str]:
    """What a retry, deferral or DLQ copy adds: the message it copies is its cause."""
    return {CAUSATION_HEADER: message_id} if message_id else {}


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            return None
    return value.strip() if isinstance(value, str) else None
