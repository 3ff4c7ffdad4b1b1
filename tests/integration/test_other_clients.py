"""Nothing in the contract is pika's: an upstream shop publishing with aio-pika, a partner
consuming the inventory topic and the order events with aio-pika, against real RabbitMQ and a
running Conveyor (orders worker + relay). Properties and headers are checked as aio-pika sees them."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import datetime, timezone

import aio_pika
import pytest

from conveyor.workers.runtime.spec import CAUSATION_HEADER
from tests.support.workers import order_body, running_workers, set_stock

pytestmark = pytest.mark.timeout(120)


async def bind_partner_queue(channel: aio_pika.abc.AbstractChannel) -> aio_pika.abc.AbstractQueue:
    queue = await channel.declare_queue(f"partner-{uuid.uuid4().hex[:8]}", durable=True,
                                        arguments={"x-queue-type": "quorum"})
    await queue.bind("inventory", routing_key="stock.changed.default.*")
    await queue.bind("order-events", routing_key="order.*")
    return queue


async def publish_upstream(channel: aio_pika.abc.AbstractChannel, body: dict, **properties) -> None:
    """The shop's side: the contract's properties, persistent, confirmed, mandatory."""
    exchange = await channel.get_exchange("orders", ensure=True)
    message = aio_pika.Message(json.dumps(body).encode(), delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                               **{"content_type": "application/json", "type": "order.created", **properties})
    await exchange.publish(message, routing_key="order.created", mandatory=True)


async def take(queue: aio_pika.abc.AbstractQueue, count: int, *, timeout: float = 30.0) -> list:
    got: list = []
    async with queue.iterator(timeout=timeout) as messages:
        async for message in messages:
            async with message.process():
                got.append(message)
            if len(got) >= count:
                break
    return got


def test_an_aio_pika_shop_and_partner_speak_the_contract(settings):
    set_stock(settings.database_url, "SKU-1", 5)  # version 1, in the outbox until the relay runs
    body = order_body(("SKU-1", 2))
    message_id = f"shop-{uuid.uuid4()}"

    async def scenario() -> list:
        connection = await aio_pika.connect(settings.amqp_url)
        async with connection:
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            queue = await bind_partner_queue(channel)
            await publish_upstream(channel, body, message_id=message_id,
                                   timestamp=datetime.now(timezone.utc))
            return await take(queue, 3)

    with running_workers(settings, ["orders", "relay"]):
        messages = asyncio.run(scenario())

    assert sorted(m.type for m in messages) == ["order.reserved", "stock.changed", "stock.changed"]
    for message in messages:
        assert message.content_type == "application/json"
        assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
        assert message.app_id == "conveyor"
        assert message.message_id and message.message_id != message_id  # each event its own id
        assert isinstance(message.timestamp, datetime)
    stock = [m for m in messages if m.type == "stock.changed"]
    assert {(m.exchange, m.routing_key) for m in stock} == {("inventory", "stock.changed.default.SKU-1")}
    levels = sorted((json.loads(m.body) for m in stock), key=lambda level: level["version"])
    assert [{k: level[k] for k in ("sku", "on_hand", "reserved", "available", "version")} for level in levels] == [
        {"sku": "SKU-1", "on_hand": 5, "reserved": 0, "available": 5, "version": 1},
        {"sku": "SKU-1", "on_hand": 5, "reserved": 2, "available": 3, "version": 2}]
    [reserved] = [m for m in messages if m.type == "order.reserved"]
    assert (reserved.exchange, reserved.routing_key) == ("order-events", "order.reserved")
    assert reserved.correlation_id == body["order_id"] == json.loads(reserved.body)["order_id"]
    assert _text(reserved.headers[CAUSATION_HEADER]) == message_id  # the shop's message caused it


def test_aio_pika_fills_in_a_message_id_when_the_shop_sets_none(settings):
    # aio-pika (aiormq, at publish time) gives a message without one a random message_id: the
    # worker accepts it, but a re-send gets another id and is not de-duplicated. Shops set their
    # own, stable per order message (docs/clients.md).
    async def scenario() -> aio_pika.abc.AbstractIncomingMessage | None:
        connection = await aio_pika.connect(settings.amqp_url)
        async with connection:
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            await publish_upstream(channel, order_body(("SKU-1", 1)))
            queue = await channel.declare_queue("conveyor.orders", passive=True)
            return await queue.get(no_ack=True, fail=False)

    message = asyncio.run(scenario())

    assert message is not None and message.message_id and len(message.message_id) == 32


def test_an_aio_pika_shop_reads_the_dead_letter_of_a_refused_message(settings):
    # Given an upstream that sends the right body with the wrong content type
    body = order_body(("SKU-1", 1))

    async def scenario() -> aio_pika.abc.AbstractIncomingMessage:
        connection = await aio_pika.connect(settings.amqp_url)
        async with connection:
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            await publish_upstream(channel, body, message_id="shop-wrong-type", content_type="text/plain")
            dlq = await channel.declare_queue("conveyor.orders.dlq", passive=True)
            [letter] = await take(dlq, 1)
            return letter

    with running_workers(settings, ["orders"]):
        letter = asyncio.run(scenario())

    # Then the dead letter keeps the body and properties, and its headers read fine in aio-pika
    assert json.loads(letter.body) == body
    assert (letter.message_id, letter.content_type, letter.type) == ("shop-wrong-type", "text/plain", "order.created")
    assert _text(letter.headers["x-conveyor-error-code"]) == "wrong_content_type"
    assert _text(letter.headers["x-conveyor-error-message"]) == (
        "wrong_content_type: content_type 'text/plain' is not application/json")
    assert _text(letter.headers["x-conveyor-original-routing-key"]) == "order.created"


def _text(value: object) -> str:
    """AMQP long strings: aio-pika (pamqp) may hand them over as bytes."""
    return value.decode() if isinstance(value, bytes) else str(value)
