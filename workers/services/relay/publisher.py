"""pika for the relay: one channel in confirm mode with a whole wave of publishes in flight.

``BlockingChannel.confirm_delivery()`` makes every ``basic_publish`` wait for its own
confirm (~1 ms a message here). The channel underneath (``BlockingChannel._impl``, pika's
asynchronous channel) reports acks and nacks through a callback instead, so the relay
publishes a wave, then turns the I/O loop until every delivery tag is settled. Everything
still runs on the connection's own thread; only this module touches pika for the relay.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import pika
import pika.exceptions
import pika.frame
import pika.spec

from conveyor.db.outbox import OutboxRow
from conveyor.workers.observability.tracing import publish_span
from conveyor.workers.services.relay.ordering import Outcome


class ConfirmTimeout(pika.exceptions.AMQPChannelError):
    """The broker did not confirm in time: the channel is treated as lost and the
    unconfirmed rows stay pending (they are published again after reconnecting)."""


class ConfirmingPublisher:
    def __init__(self, connection: pika.BlockingConnection, *, setup_timeout: float = 10.0) -> None:
        self._connection = connection
        self.channel = connection.channel()
        self._impl = self.channel._impl  # noqa: SLF001 - see the module docstring
        self._in_flight: dict[int, str] = {}  # delivery tag -> message id, in tag order
        self._outcomes: dict[str, Outcome] = {}
        self._returned: set[str] = set()
        self._next_tag = 1
        self._closed_reason: BaseException | None = None
        selected: list[bool] = []
        self._impl.add_on_close_callback(self._on_close)
        # Basic.Return precedes the Basic.Ack of the same message, on this same callback path.
        self._impl.add_on_return_callback(self._on_return)
        self._impl.confirm_delivery(ack_nack_callback=self._on_confirm,
                                    callback=lambda _frame: selected.append(True))
        self._wait(lambda: bool(selected), time.monotonic() + setup_timeout, what="Confirm.SelectOk")

    def publish(self, rows: Sequence[OutboxRow], *, deadline: float) -> dict[str, Outcome]:
        """Publish every row (mandatory, persistent) and wait until the broker has confirmed
        all of them; returns each message id's outcome. Raises a connection/channel error,
        or ``ConfirmTimeout`` once ``deadline`` (a ``time.monotonic()`` value) has passed."""
        if time.monotonic() >= deadline:
            raise ConfirmTimeout("the batch deadline passed before this wave was published")
        self._outcomes = {}
        for row in rows:
            with publish_span(row.routing_key, row.message_id, row.headers) as headers:
                self._impl.basic_publish(row.exchange, row.routing_key, row.payload.encode(),
                                         properties(row, headers), mandatory=True)
            self._in_flight[self._next_tag] = row.message_id
            self._next_tag += 1
        self._wait(lambda: not self._in_flight, deadline, what=f"confirms of {len(rows)} publishes")
        return self._outcomes

    def _on_confirm(self, frame: pika.frame.Method) -> None:
        method = frame.method
        outcome: Outcome = "ack" if isinstance(method, pika.spec.Basic.Ack) else "nack"
        if method.multiple:
            while self._in_flight:
                tag = next(iter(self._in_flight))
                if tag > method.delivery_tag:
                    break
                self._settle(tag, outcome)
        elif method.delivery_tag in self._in_flight:
            self._settle(method.delivery_tag, outcome)
        if not self._in_flight:
            # A ready timer makes process_data_events() return now instead of at its limit.
            self._connection.call_later(0, _nothing)

    def _settle(self, tag: int, outcome: Outcome) -> None:
        message_id = self._in_flight.pop(tag)
        if outcome == "ack" and message_id in self._returned:
            outcome = "returned"  # acked, but it reached no queue
        self._returned.discard(message_id)
        self._outcomes[message_id] = outcome

    def _on_return(self, _channel, _method, props: pika.spec.BasicProperties, _body: bytes) -> None:
        self._returned.add(props.message_id)

    def _on_close(self, _channel, reason: BaseException) -> None:
        self._closed_reason = reason
        if self._connection.is_open:  # the channel alone was closed (by the broker): wake _wait
            self._connection.call_later(0, _nothing)

    def _wait(self, done, deadline: float, *, what: str) -> None:
        while not done():
            if self._closed_reason is not None:
                raise self._closed_reason
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ConfirmTimeout(f"timed out waiting for {what}")
            self._connection.process_data_events(time_limit=min(remaining, 1.0))


def properties(row: OutboxRow, headers: dict | None = None) -> pika.BasicProperties:
    """The event's properties; ``headers``: its outbox headers as the publish span extended them."""
    return pika.BasicProperties(
        content_type="application/json", delivery_mode=2, message_id=row.message_id,
        correlation_id=row.correlation_id, type=row.message_type or row.routing_key,
        timestamp=int(row.created_at.timestamp()), app_id="conveyor",
        headers=(headers if headers is not None else row.headers) or None,  # causation id, trace (V014)
    )


def _nothing() -> None:
    pass
