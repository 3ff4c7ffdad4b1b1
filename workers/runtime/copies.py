"""Copies of deliveries (retry tier, DLQ, fairness deferral) published without waiting.

``BlockingChannel.confirm_delivery()`` makes every ``basic_publish`` wait for its own confirm:
a few milliseconds each, during which the consumer's I/O thread delivers nothing. Here the
consumer's channel (``BlockingChannel._impl``, pika's asynchronous channel, as the relay's
publisher uses it) is put in confirm mode with a callback: a settlement's copies go out
back to back, and the broker's confirm of each one is what acknowledges its original. A
nack, or a copy that reached no queue (returned), puts the original back instead. A channel
that dies with copies unconfirmed leaves their originals unacked, so the broker redelivers
them (as before: at least once). Runs on the consumer's thread only.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pika
import pika.frame
import pika.spec

H_COPY_TAG = "x-conveyor-copy-tag"  # this channel's publish sequence number, to match a return


class CopyPublisher:
    def __init__(self, connection: pika.BlockingConnection, channel, *, on_confirmed: Callable[[list[int]], None],
                 on_refused: Callable[[int, str], None], setup_timeout: float = 10.0) -> None:
        """``on_confirmed(original_tags)`` / ``on_refused(original_tag, why)`` run on this thread."""
        self._impl = channel._impl  # noqa: SLF001 - see the module docstring
        self._on_confirmed, self._on_refused = on_confirmed, on_refused
        self._pending: dict[int, int] = {}  # publish sequence number -> the original's delivery tag
        self._returned: set[int] = set()
        self._next = 1
        selected: list[bool] = []
        self._impl.add_on_return_callback(self._on_return)
        self._impl.confirm_delivery(ack_nack_callback=self._on_confirm, callback=lambda _f: selected.append(True))
        deadline = time.monotonic() + setup_timeout
        while not selected:
            if time.monotonic() > deadline:
                raise pika.exceptions.AMQPChannelError("timed out waiting for Confirm.SelectOk")
            connection.process_data_events(time_limit=0.1)

    @property
    def unconfirmed(self) -> int:
        return len(self._pending)

    def publish(self, queue: str, body: bytes, properties: pika.BasicProperties, *, original_tag: int) -> None:
        headers = dict(properties.headers or {})
        headers[H_COPY_TAG] = self._next
        properties.headers = headers
        self._impl.basic_publish("", queue, body, properties, mandatory=True)
        self._pending[self._next] = original_tag
        self._next += 1

    def _on_confirm(self, frame: pika.frame.Method) -> None:
        method = frame.method
        acked = isinstance(method, pika.spec.Basic.Ack)
        tags = ([t for t in self._pending if t <= method.delivery_tag] if method.multiple
                else [method.delivery_tag] if method.delivery_tag in self._pending else [])
        # Settle the bookkeeping first: acking an original is a blocking call that may read
        # further confirms (and so re-enter this callback) before it returns.
        settled = [(self._pending.pop(tag), acked and tag not in self._returned) for tag in tags]
        self._returned.difference_update(tags)
        confirmed = [original for original, ok in settled if ok]
        if confirmed:
            self._on_confirmed(confirmed)
        for original, ok in settled:
            if not ok:
                self._on_refused(original, "nacked by the broker" if not acked else "reached no queue")

    def _on_return(self, _channel, _method, properties: pika.spec.BasicProperties, _body: bytes) -> None:
        tag = (properties.headers or {}).get(H_COPY_TAG)
        if isinstance(tag, int):
            self._returned.add(tag)
