"""OpenTelemetry spans (``conveyor[otel]``) on real RabbitMQ and PostgreSQL: consume → commit →
publish in one trace that continues the shop's and crosses the outbox, and the published event
carries the relay's span on. Without an exporter, no spans and the inbound context passes as is."""

from __future__ import annotations

import json
import uuid

import pika
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from conveyor.workers.observability import tracing
from tests.support.workers import event_tap, order_body, running_workers, set_stock, take_all

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SHOP_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{SHOP_SPAN}-01"


@pytest.fixture
def spans(monkeypatch):
    monkeypatch.setattr(tracing, "_state", {"tracer": None, "configured": False})
    exporter = InMemorySpanExporter()
    assert tracing.configure(exporter=exporter)
    return exporter


def publish_order(amqp_url: str, body: dict, message_id: str) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.basic_publish("orders", "order.created", json.dumps(body).encode(), pika.BasicProperties(
            message_id=message_id, content_type="application/json", type="order.created", delivery_mode=2,
            headers={"traceparent": TRACEPARENT}), mandatory=True)
    finally:
        connection.close()


def test_consume_commit_and_publish_are_one_trace_across_the_outbox(settings, spans):
    set_stock(settings.database_url, "A", 5)
    message_id = f"created-{uuid.uuid4()}"
    with event_tap(settings.amqp_url) as tap, running_workers(settings, ["orders", "relay"]):
        publish_order(settings.amqp_url, order_body(("A", 1)), message_id)
        [(_, reserved, _)] = take_all(settings.amqp_url, tap, expect=1)

    finished = {span.name: span for span in spans.get_finished_spans()}
    process, commit, publish = (finished["order.created process"], finished["conveyor commit"],
                                finished["order.reserved publish"])
    assert process.kind is SpanKind.CONSUMER and publish.kind is SpanKind.PRODUCER
    assert {format(s.context.trace_id, "032x") for s in (process, publish)} == {TRACE_ID}  # the shop's trace
    assert format(process.parent.span_id, "016x") == SHOP_SPAN
    assert publish.parent.span_id == process.context.span_id  # across the outbox
    assert [link.context.span_id for link in commit.links] == [process.context.span_id]
    assert process.attributes["messaging.message.id"] == message_id
    # the event goes on with the relay's span as its parent, and still names its cause
    assert reserved.headers["traceparent"] == f"00-{TRACE_ID}-{format(publish.context.span_id, '016x')}-01"
    assert reserved.headers["x-conveyor-causation-id"] == message_id


def test_without_an_exporter_nothing_is_traced_and_the_context_passes_unchanged(settings, monkeypatch):
    monkeypatch.setattr(tracing, "_state", {"tracer": None, "configured": False})
    assert not tracing.configure(environ={})
    set_stock(settings.database_url, "A", 5)
    with event_tap(settings.amqp_url) as tap, running_workers(settings, ["orders", "relay"]):
        publish_order(settings.amqp_url, order_body(("A", 1)), f"created-{uuid.uuid4()}")
        [(_, reserved, _)] = take_all(settings.amqp_url, tap, expect=1)
    assert reserved.headers["traceparent"] == TRACEPARENT


def test_the_otel_variables_choose_the_exporter(monkeypatch):
    monkeypatch.setattr(tracing, "_state", {"tracer": None, "configured": False})
    assert tracing.configure(environ={"OTEL_TRACES_EXPORTER": "console"})
    monkeypatch.setattr(tracing, "_state", {"tracer": None, "configured": False})
    assert not tracing.configure(environ={"OTEL_TRACES_EXPORTER": "none",
                                          "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    monkeypatch.setattr(tracing, "_state", {"tracer": None, "configured": False})
    assert tracing.configure(environ={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"})
