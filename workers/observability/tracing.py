"""OpenTelemetry spans for consume → commit → publish, when the optional ``conveyor[otel]``
extra is installed and the standard ``OTEL_*`` variables ask for an exporter
(``OTEL_TRACES_EXPORTER=otlp`` or ``console``, or an ``OTEL_EXPORTER_OTLP_*ENDPOINT``; service
name from ``OTEL_SERVICE_NAME``, default ``conveyor``).

- every consumed message gets a CONSUMER span ``<type> process``, a child of the trace context
  it arrived with (W3C ``traceparent``), ended after its batch committed;
- the batch's transaction is an INTERNAL span ``conveyor commit`` linked to each of them;
- the events the message causes carry the process span's context in their outbox headers, so
  the relay's PRODUCER span ``<routing key> publish`` continues the trace across the outbox,
  and the published event carries the publish span's ``traceparent`` on.

Without the extra or the variables every function here is a no-op that passes the inbound
trace context on unchanged (``conveyor.workers.runtime.tracecontext``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

_state: dict[str, Any] = {"tracer": None, "configured": False}


def configure(*, exporter: Any = None, environ: Mapping[str, str] = os.environ) -> bool:
    """Set up the tracer once per process; ``exporter`` (a span exporter) overrides the
    environment (tests). True when spans are being made."""
    if _state["configured"] and exporter is None:
        return _state["tracer"] is not None
    _state["configured"] = True
    given = exporter is not None
    exporter = exporter or _exporter_from(environ)
    if exporter is None:
        _state["tracer"] = None
        return False
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": environ.get("OTEL_SERVICE_NAME",
                                                                                     "conveyor")}))
    # Exported in the background (a collector's latency never reaches the hot path); a given
    # exporter (tests) sees each span as it ends.
    provider.add_span_processor(SimpleSpanProcessor(exporter) if given else BatchSpanProcessor(exporter))
    _state["tracer"] = provider.get_tracer("conveyor")
    return True


def _exporter_from(environ: Mapping[str, str]) -> Any:
    wanted = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if wanted == "none" or not (wanted or endpoint):
        return None
    try:
        if wanted == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter
            return ConsoleSpanExporter()
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        return OTLPSpanExporter()
    except ImportError:  # the extra is not installed: no spans, as documented
        return None


def enabled() -> bool:
    return _state["tracer"] is not None


@contextmanager
def consume_spans(queue: str, messages: Sequence[tuple[str, str, Mapping[str, str]]]) -> Iterator[list[dict]]:
    """One CONSUMER span per (type, message_id, inbound trace) and the batch's commit span
    linked to them; yields, per message, the trace headers its events carry on."""
    if not enabled():
        yield [dict(trace) for _, _, trace in messages]
        return
    from opentelemetry import trace as otel
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    tracer, propagator = _state["tracer"], TraceContextTextMapPropagator()
    spans = [tracer.start_span(f"{kind} process", context=propagator.extract(dict(inbound)),
                               kind=otel.SpanKind.CONSUMER,
                               attributes={"messaging.system": "rabbitmq", "messaging.destination.name": queue,
                                           "messaging.message.id": message_id, "messaging.operation": "process"})
             for kind, message_id, inbound in messages]
    carried = [_inject(propagator, span) for span in spans]
    try:
        with tracer.start_as_current_span("conveyor commit", links=[otel.Link(s.get_span_context()) for s in spans]):
            yield carried
    finally:
        for span in spans:
            span.end()


@contextmanager
def publish_span(routing_key: str, message_id: str, headers: Mapping[str, Any] | None) -> Iterator[dict]:
    """The relay's PRODUCER span for one event, a child of the context its outbox row carries;
    yields the headers to publish (with the publish span's ``traceparent``)."""
    outgoing = dict(headers or {})
    if not enabled():
        yield outgoing
        return
    from opentelemetry import trace as otel
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    propagator = TraceContextTextMapPropagator()
    parent = propagator.extract({k: str(v) for k, v in outgoing.items() if k in ("traceparent", "tracestate")})
    with _state["tracer"].start_as_current_span(
            f"{routing_key} publish", context=parent, kind=otel.SpanKind.PRODUCER,
            attributes={"messaging.system": "rabbitmq", "messaging.destination.name": routing_key,
                        "messaging.message.id": message_id, "messaging.operation": "publish"}) as span:
        outgoing.update(_inject(propagator, span))
        yield outgoing


def _inject(propagator: Any, span: Any) -> dict[str, str]:
    from opentelemetry import trace as otel

    carrier: dict[str, str] = {}
    propagator.inject(carrier, context=otel.set_span_in_context(span))
    return carrier
