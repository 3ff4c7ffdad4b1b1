"""``ConveyorPublisher``: publish what Conveyor consumes, the way the contract asks.

Every document is first checked by the worker's own parser (``contract.check``): what a
worker would dead-letter is never sent (``DocumentRefused``). Then it goes to the type's
exchange with the type as routing key, ``message_id`` (a new UUID unless given; reuse it when
you re-send, so Conveyor de-duplicates), ``type``, ``content_type`` ``application/json``,
``delivery_mode`` 2, ``mandatory``, and waits for the broker's confirm. A channel or
connection found closed is reopened and the publish tried once more (same ``message_id``);
a nack or an unroutable message raises ``NotDelivered``.

    with ConveyorPublisher("amqp://guest:guest@localhost:5672/%2F") as publisher:
        message_id = publisher.order_created({"order_id": ..., "items": [...], ...})
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pika
import pika.exceptions
from pydantic import BaseModel

from conveyor.schemas.errors import InvalidMessage
from conveyor.workers.config import Settings, load_settings
from conveyor.workers.kit.contract import CONTENT_TYPE, Verdict, check, spec_for

Document = BaseModel | dict[str, Any] | bytes | str

# A connection or channel that went away: reconnect and try once more.
_GONE = (pika.exceptions.AMQPConnectionError, pika.exceptions.StreamLostError,
         pika.exceptions.ConnectionWrongStateError, pika.exceptions.ChannelWrongStateError,
         pika.exceptions.ChannelClosed, ConnectionError)


class DocumentRefused(InvalidMessage):
    """A worker would dead-letter this document; nothing was published. ``verdict`` says why."""

    def __init__(self, verdict: Verdict) -> None:
        super().__init__(verdict.error_code or "invalid", (verdict.reason or "").partition(": ")[2])
        self.verdict = verdict


class NotDelivered(Exception):
    """The broker did not take the message: nacked (e.g. the queue is full) or unroutable."""


def encode(document: Document) -> bytes:
    """The body for a model, a dict, or JSON text/bytes given as they are."""
    if isinstance(document, BaseModel):
        return document.model_dump_json(exclude_none=True).encode()
    if isinstance(document, dict):
        return json.dumps(document, default=str).encode()
    return document.encode() if isinstance(document, str) else document


class ConveyorPublisher:
    """One connection and confirmed channel; a context manager (``close()`` otherwise)."""

    def __init__(self, amqp_url: str, *, settings: Settings | None = None, name: str = "conveyor-kit",
                 blocked_connection_timeout: float = 60.0) -> None:
        self.amqp_url = amqp_url
        self.settings = settings or load_settings()
        self._parameters = pika.URLParameters(amqp_url)
        self._parameters.blocked_connection_timeout = blocked_connection_timeout
        self._parameters.client_properties = {"connection_name": name}
        self._connection: pika.BlockingConnection | None = None
        self._channel: Any = None

    def order_created(self, order: Document, *, message_id: str | None = None) -> str:
        return self.publish("order.created", order, message_id=message_id)

    def order_cancelled(self, cancel: Document, *, message_id: str | None = None) -> str:
        return self.publish("order.cancelled", cancel, message_id=message_id)

    def payment_authorized(self, payment: Document, *, message_id: str | None = None) -> str:
        return self.publish("payment.authorized", payment, message_id=message_id)

    def payment_failed(self, payment: Document, *, message_id: str | None = None) -> str:
        return self.publish("payment.failed", payment, message_id=message_id)

    def shipment_dispatched(self, shipment: Document, *, message_id: str | None = None) -> str:
        return self.publish("shipment.dispatched", shipment, message_id=message_id)

    def shipment_delivered(self, shipment: Document, *, message_id: str | None = None) -> str:
        return self.publish("shipment.delivered", shipment, message_id=message_id)

    def publish(self, message_type: str, document: Document, *, message_id: str | None = None) -> str:
        """Validate, publish with a confirm, return the ``message_id``. ``ValueError`` for a
        type Conveyor does not consume, ``DocumentRefused``, ``NotDelivered``; pika's
        connection errors when the broker cannot be reached (twice)."""
        spec = spec_for(message_type)
        body = encode(document)
        message_id = str(uuid.uuid4()) if message_id is None else message_id
        verdict = check(message_type, body, message_id=message_id, settings=self.settings)
        if not verdict.accepted:
            raise DocumentRefused(verdict)
        properties = pika.BasicProperties(message_id=message_id, type=message_type, content_type=CONTENT_TYPE,
                                          delivery_mode=2)
        had_connection = self._connection is not None
        try:
            self._send(spec.exchange, message_type, body, properties)
        except _GONE:
            self._drop()
            if not had_connection:  # the broker did not answer at all: no second knock
                raise
            self._send(spec.exchange, message_type, body, properties)  # same message_id: de-duplicated
        return message_id

    def _send(self, exchange: str, routing_key: str, body: bytes, properties: pika.BasicProperties) -> None:
        channel = self._open_channel()
        try:
            channel.basic_publish(exchange, routing_key, body, properties, mandatory=True)
        except pika.exceptions.UnroutableError:
            raise NotDelivered(f"{routing_key} on exchange {exchange!r} is bound to no queue "
                               f"(is Conveyor's topology declared in this vhost?)") from None
        except pika.exceptions.ChannelClosedByBroker as error:
            if error.reply_code != 404:
                raise
            raise NotDelivered(f"no exchange {exchange!r} in this vhost (declare Conveyor's topology: "
                               f"`conveyor topology declare`)") from None
        except pika.exceptions.NackError:
            raise NotDelivered(f"the broker nacked {routing_key} (a full queue refuses publishes)") from None

    def _open_channel(self) -> Any:
        if self._connection is None or not self._connection.is_open:
            self._connection = pika.BlockingConnection(self._parameters)
            self._channel = None
        if self._channel is None or not self._channel.is_open:
            self._channel = self._connection.channel()
            self._channel.confirm_delivery()
        return self._channel

    def _drop(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and connection.is_open:
            try:
                connection.close()
            except Exception:  # noqa: BLE001, S110 - already broken: a new one follows
                pass

    def close(self) -> None:
        self._drop()

    def __enter__(self) -> ConveyorPublisher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
