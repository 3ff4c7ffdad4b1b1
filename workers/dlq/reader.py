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

Three guards keep that promise: an exclusive, auto-deleted lock queue per DLQ (quorum
queues in 3.10 ignore ``exclusive`` consumers, so two sessions would split the messages
between them); a re-declaration of the DLQ with Conveyor's exact arguments for the broker's
version (``topology.dlq_arguments``), which the broker refuses when the queue has a TTL, a
length limit or a delivery limit of its own; and the *effective* delivery limit
(``limits``: the argument, the 4.x default of 20, and the policies when the management API
is configured), checked before anything is held. Every return counts towards a quorum
queue's delivery limit, so a finite one refuses the look (``DlqDeliveryLimit``) unless the
operator accepted it, and then the session stops before a message nears it.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import pika
import pika.exceptions
from pika.spec import BasicProperties

from conveyor.workers.config import Settings
from conveyor.workers.dlq import limits
from conveyor.workers.dlq.letters import DeadLetter, read_letter
from conveyor.workers.runtime import amqp, topology

# The operator's `--accept-delivery-limit`, set by the CLI for the command it runs.
ACCEPT_DELIVERY_LIMIT: ContextVar[bool] = ContextVar("accept_delivery_limit", default=False)
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


class DlqDeliveryLimit(DlqUnsafe):
    """A finite delivery limit applies to the DLQ: looks would wear its messages down."""

    def __init__(self, text: str, *, summary: str) -> None:
        super().__init__(text)
        self.summary = summary   # one line for tables (`dlq stats`)


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

    def __init__(self, settings: Settings, dlq: str, *, idle_timeout: float = 3.0,
                 accept_delivery_limit: bool | None = None) -> None:
        self.settings, self.dlq, self.idle_timeout = settings, dlq, idle_timeout
        self.accept_delivery_limit = (ACCEPT_DELIVERY_LIMIT.get() if accept_delivery_limit is None
                                      else accept_delivery_limit)
        self.depth = 0                # messages in the DLQ when the session started
        self.incomplete = False       # fewer than `depth` arrived: someone else took some
        self.delivery_limit: limits.DeliveryLimit | None = None   # what applies, once entered
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
            self._check_wear(properties, position)
            yield Held(tag, properties, body, read_letter(properties, body, position=position))
            position += 1

    def arrivals(self) -> list[Held]:
        """Messages that reached the DLQ after the session started (held too, returned at close)."""
        self._connection.process_data_events(time_limit=0)
        taken = []
        while self._arrivals:
            tag, properties, body = self._arrivals.popleft()
            self._check_wear(properties, -1)
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
        """Before anything is held: the DLQ exists, has Conveyor's arguments, and no finite
        delivery limit applies to it (or the operator accepted one)."""
        if not self.queue_exists(self.dlq):
            raise DlqNotFound(f"queue {self.dlq!r} does not exist")
        version = topology.broker_version(self._connection)
        argument = self._declared_limit_argument(version)
        self.delivery_limit = limits.assess(version, argument, self._policies())
        if self.delivery_limit.limit is not None and not self.accept_delivery_limit:
            raise DlqDeliveryLimit(limits.refusal(self.dlq, self.delivery_limit), summary=(
                f"delivery limit {self.delivery_limit.limit} ({self.delivery_limit.reason})"))

    def _declared_limit_argument(self, version: tuple[int, ...] | None) -> int | None:
        """The DLQ's ``x-delivery-limit`` argument, found by re-declaring it with the shapes
        Conveyor declares (this version's first, then the other one: a DLQ from before an
        upgrade). Any other argument (TTL, length, a limit of its own) is refused (DlqUnsafe)."""
        first_refusal = None
        for arguments in _dlq_shapes(version):
            refusal = self._redeclare(arguments)
            if refusal is None:
                return arguments.get("x-delivery-limit")
            first_refusal = first_refusal or refusal
            if "x-delivery-limit" not in refusal:
                break
        raise DlqUnsafe(f"{self.dlq!r} is not declared as Conveyor declares a DLQ "
                        f"({first_refusal}); refusing to hand messages back to it")

    def _redeclare(self, arguments: dict) -> str | None:
        """None when the broker accepts the declaration as equivalent, else its reason."""
        channel = self._connection.channel()
        try:
            channel.queue_declare(self.dlq, durable=True, arguments=arguments)
        except pika.exceptions.ChannelClosedByBroker as error:
            return str(error.reply_text)[:200]
        channel.close()
        return None

    def _policies(self) -> limits.Policies | None:
        """The policies applying to the DLQ, when the management API is configured."""
        if not self.settings.management_url:
            return None
        try:
            return limits.fetch_policies(self.settings.management_url, self.settings.amqp_url, self.dlq)
        except limits.ManagementUnavailable as error:
            raise DlqUnsafe(f"cannot tell which policies apply to {self.dlq!r}: {error}; unset "
                            "CONVEYOR_MANAGEMENT_URL to check the queue's arguments only") from None

    def _check_wear(self, properties: BasicProperties, position: int) -> None:
        """With an accepted finite limit: stop before a look leaves a message too few returns."""
        limit = self.delivery_limit.limit if self.delivery_limit else None
        if limit is None:
            return
        left = limits.returns_left(limit, properties.headers)
        if left < limits.SPARE_LOOKS:
            raise DlqDeliveryLimit(
                f"message {properties.message_id or '(no message_id)'} at position {position + 1} of {self.dlq!r} "
                f"survives only {max(left, 0)} more look(s) under its delivery limit of {limit} "
                f"({self.delivery_limit.reason if self.delivery_limit else ''}); stopped: replay or export it, or "
                "lift the limit (docs/dlq.md, 'Looking never wears a message down')",
                summary=f"a message is {max(left, 0)} look(s) from its delivery limit of {limit}")

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


def _dlq_shapes(version: tuple[int, ...] | None) -> list[dict]:
    """The DLQ arguments Conveyor declares on this broker, then those of the other version line."""
    expected = topology.dlq_arguments(version)
    other = topology.dlq_arguments(None if topology.has_default_delivery_limit(version)
                                   else topology.DEFAULT_DELIVERY_LIMIT_SINCE)
    return [expected, other]
