"""The broker side of the console: a locked look at a DLQ that consumes nothing and keeps order.

RabbitMQ has no peek. A session therefore *holds* the messages: one consumer with manual
acks and a prefetch of at least the queue's depth at the start, so the broker hands over
exactly the messages present, in queue order. Nothing is acked unless a command decides
to (replay after the publisher confirm, purge); everything else goes back when the
channel closes. Measured on RabbitMQ 3.10.8, quorum queue, up to 3,000 messages: messages
held by a *consumer* come back in their original order and ahead of anything that arrived
meanwhile, whether the channel is closed, nacked with ``multiple``, or the process is
SIGKILLed; messages taken with ``basic.get`` come back reordered, which is why it is not
used. The only trace of a look is the broker's own redelivery marker (``redelivered``,
``x-delivery-count`` + 1).

Two guards keep that promise: an exclusive, auto-deleted lock queue per DLQ (quorum
queues in 3.10 ignore ``exclusive`` consumers, so two sessions would split the messages
between them), and a re-declaration of the DLQ with Conveyor's exact arguments, which the
broker refuses when the queue has a delivery limit, TTL or length limit that could drop
a message handed back by a look.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pika
import pika.exceptions
from pika.spec import BasicProperties

from conveyor.workers.config import Settings
from conveyor.workers.dlq.letters import DeadLetter, read_letter
from conveyor.workers.runtime import amqp, topology

DLQ_ARGUMENTS = {"x-queue-type": "quorum"}   # as conveyor.workers.runtime.topology.declare_worker declares it
MAX_PREFETCH = 65_535                        # AMQP's prefetch-count is 16 bits; 0 means unlimited
ARRIVAL_MARGIN = 1_000                       # room for messages arriving during a session (canary)


class DlqError(Exception):
    """Base of the console's broker-side errors."""


class DlqNotFound(DlqError, LookupError):
    """The DLQ does not exist (never declared, or a typo)."""


class DlqBusy(DlqError):
    """Another ``conveyor dlq`` command holds this DLQ right now."""


class DlqUnsafe(DlqError):
    """The DLQ's arguments differ from Conveyor's: returning messages to it might drop them."""


class PublishRefused(DlqError):
    """A publish was not confirmed (unroutable, nacked, or the exchange is missing)."""


@dataclass(frozen=True)
class Held:
    """A message taken out of the DLQ by this session, returned unless acked."""

    delivery_tag: int
    properties: BasicProperties
    body: bytes
    letter: DeadLetter


def resolve_dlq(name: str, workers: dict[str, str]) -> str:
    """``orders`` (a worker), ``conveyor.orders`` (its queue) or ``conveyor.orders.dlq`` → the DLQ."""
    if name.endswith(".dlq"):
        return name
    return topology.dlq_name(workers.get(name, name))


def lock_queue_name(dlq: str) -> str:
    return f"{dlq}.console-lock"


class DlqSession:
    """One connection holding the DLQ's lock, a snapshot consumer and a confirming publisher."""

    def __init__(self, settings: Settings, dlq: str, *, idle_timeout: float = 3.0) -> None:
        self.settings, self.dlq, self.idle_timeout = settings, dlq, idle_timeout
        self.depth = 0                # messages in the DLQ when the session started
        self.incomplete = False       # fewer than `depth` arrived: someone else took some
        # pika objects once entered (pika ships no type information)
        self._connection: Any = None
        self._consumer: Any = None
        self._publisher: Any = None
        self._snapshot: deque = deque()
        self._arrivals: deque = deque()
        self._received = 0
        self._exchanges: dict[str, bool] = {"": True}

    # -- lifecycle ----------------------------------------------------------------------------

    def __enter__(self) -> DlqSession:
        self._connection = amqp.connect(self.settings, name="dlq-console")
        try:
            self._check_queue()
            self._take_lock()
            self.depth = self._depth()   # under the lock: no other console holds messages now
            self._start_consumer()
            self._publisher = self._connection.channel()
            self._publisher.confirm_delivery()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        """Hand every unacked message back (in order), release the lock, disconnect."""
        connection, self._connection = self._connection, None
        if connection is None:
            return
        try:
            self._close_consumer_channel(connection)
            if connection.is_open:
                connection.close()
        except amqp.CONNECTION_ERRORS:
            pass  # a lost connection hands the messages back too, in the same order

    def _close_consumer_channel(self, connection) -> None:
        """A bare Channel.Close, not pika's ``BlockingChannel.close``.

        pika's version first cancels the consumer and rejects, one by one, deliveries it
        has not dispatched yet and any that arrive before the cancel-ok: those would
        re-enter the queue *ahead* of the held messages. On a bare Channel.Close the
        broker returns everything the channel holds, in delivery order.
        """
        channel = self._consumer
        if channel is None or not channel.is_open:
            return
        channel._impl.close()  # noqa: SLF001 - see the docstring
        deadline = time.monotonic() + 10
        while not channel.is_closed and time.monotonic() < deadline:
            connection.process_data_events(time_limit=0.05)

    # -- reading ------------------------------------------------------------------------------

    def snapshot(self) -> Iterator[Held]:
        """The messages present at the start, head first; each stays held until acked or closed."""
        position, idle_since = 0, time.monotonic()
        while position < self.depth:
            if not self._snapshot:
                self._connection.process_data_events(time_limit=0.05)
                if not self._snapshot and time.monotonic() - idle_since > self.idle_timeout:
                    self.incomplete = True
                    return
                continue
            idle_since = time.monotonic()
            tag, properties, body = self._snapshot.popleft()
            yield Held(tag, properties, body, read_letter(properties, body, position=position))
            position += 1

    def arrivals(self) -> list[Held]:
        """Messages that reached the DLQ after the session started (held too, returned at close)."""
        self._connection.process_data_events(time_limit=0)
        taken = []
        while self._arrivals:
            tag, properties, body = self._arrivals.popleft()
            taken.append(Held(tag, properties, body, read_letter(properties, body, position=-1)))
        return taken

    def sleep(self, seconds: float) -> None:
        """Wait while the connection keeps working (heartbeats, deliveries, confirms)."""
        self._connection.sleep(max(0.0, seconds))

    # -- changing -----------------------------------------------------------------------------

    def ack(self, held: Held) -> None:
        self._consumer.basic_ack(held.delivery_tag)

    def publish(self, exchange: str, routing_key: str, body: bytes, properties: BasicProperties) -> None:
        """Publish with ``mandatory`` and wait for the confirm; ``PublishRefused`` otherwise."""
        if not self.exchange_exists(exchange):
            raise PublishRefused(f"exchange {exchange!r} does not exist")
        try:
            self._publisher.basic_publish(exchange, routing_key, body, properties=properties, mandatory=True)
        except pika.exceptions.UnroutableError:
            raise PublishRefused(f"unroutable: nothing is bound to {exchange or '(default)'!r} "
                                 f"for {routing_key!r}") from None
        except pika.exceptions.NackError:
            raise PublishRefused(f"the broker refused the message for {routing_key!r} (nack)") from None

    def exchange_exists(self, name: str) -> bool:
        if name not in self._exchanges:
            self._exchanges[name] = self._exists(lambda ch: ch.exchange_declare(name, passive=True))
        return self._exchanges[name]

    def queue_exists(self, name: str) -> bool:
        return self._exists(lambda ch: ch.queue_declare(name, passive=True))

    # -- set-up -------------------------------------------------------------------------------

    def _check_queue(self) -> None:
        if not self.queue_exists(self.dlq):
            raise DlqNotFound(f"queue {self.dlq!r} does not exist")
        channel = self._connection.channel()
        try:
            channel.queue_declare(self.dlq, durable=True, arguments=DLQ_ARGUMENTS)
        except pika.exceptions.ChannelClosedByBroker as error:
            raise DlqUnsafe(f"{self.dlq!r} is not declared as Conveyor declares a DLQ "
                            f"({error.reply_text[:200]}); refusing to hand messages back to it") from None
        channel.close()

    def _depth(self) -> int:
        channel = self._connection.channel()
        depth = channel.queue_declare(self.dlq, passive=True).method.message_count
        channel.close()
        return depth

    def _take_lock(self) -> None:
        channel = self._connection.channel()
        try:
            channel.queue_declare(lock_queue_name(self.dlq), exclusive=True, auto_delete=True,
                                  arguments={"x-queue-type": "classic"})
        except pika.exceptions.ChannelClosedByBroker as error:
            if error.reply_code == 405:
                raise DlqBusy(f"another `conveyor dlq` command is working on {self.dlq!r}; "
                              "try again when it has finished") from None
            raise

    def _start_consumer(self) -> None:
        self._consumer = self._connection.channel()
        if self.depth == 0:
            return
        wanted = self.depth + ARRIVAL_MARGIN
        self._consumer.basic_qos(prefetch_count=wanted if wanted <= MAX_PREFETCH else 0)
        self._consumer.basic_consume(self.dlq, self._on_delivery)

    def _on_delivery(self, _channel, method, properties, body) -> None:
        target = self._snapshot if self._received < self.depth else self._arrivals
        self._received += 1
        target.append((method.delivery_tag, properties, body))

    def _exists(self, declare) -> bool:
        channel = self._connection.channel()
        try:
            declare(channel)
        except pika.exceptions.ChannelClosedByBroker as error:
            if error.reply_code == 404:
                return False
            raise
        channel.close()
        return True
