"""The broker side of a worker: one pika ``BlockingConnection`` owned by one thread.

It connects, declares the topology, consumes with manual acks and hands deliveries to
the processor through a queue. Everything the processor wants done on the broker
(publish a retry or DLQ copy with confirms, then ack) comes back through
``add_callback_threadsafe``, so only this thread ever touches pika, and the I/O loop
keeps turning (heartbeats flow) while handlers work. Each new channel is a new
*generation*: settlements for an older one are dropped, because the broker redelivers
those messages anyway and acking a dead channel's tag would close the new one.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from pika.spec import BasicProperties

from conveyor.workers.config import Settings
from conveyor.workers.logging import get_logger
from conveyor.workers.observability.health import Health
from conveyor.workers.observability.metrics import RECONNECTS
from conveyor.workers.runtime import amqp, topology
from conveyor.workers.runtime.copies import CopyPublisher
from conveyor.workers.runtime.envelope import Delivery
from conveyor.workers.runtime.reconnect import serve_reconnecting
from conveyor.workers.runtime.spec import WorkerSpec

log = get_logger("conveyor.consumer")


@dataclass(frozen=True)
class Settlement:
    """Final word on one delivery: optionally publish a copy (retry tier or DLQ), then ack."""

    delivery: Delivery
    copy_to_queue: str | None = None
    copy_properties: BasicProperties | None = None
    requeue: bool = False  # give it back unprocessed (shutting down during an outage)


class Consumer:
    def __init__(self, spec: WorkerSpec, settings: Settings, *, inbound: queue.Queue,
                 stop: threading.Event, declare: bool = True, health: Health | None = None) -> None:
        self.spec = spec
        self.settings = settings
        self.inbound = inbound
        self.stop = stop
        self.declare = declare
        self.generation = 0
        self.cancelled = threading.Event()  # set once no more deliveries can arrive
        self._connection = None
        self._channel = None
        self._copies: CopyPublisher | None = None
        self._in_flight: set[int] = set()
        self._lock = threading.Lock()
        self.health = health or Health()
        self._condition = f"broker:{spec.name}"
        self.peers = 1  # consumers of the queue, this one included (tenant fairness splits rates by it)
        self._fair = spec.rate_limited and bool(settings.tenant_rate_limits.strip())
        self._peers_read_at = 0.0
        self.health.set_problem(self._condition, "not consuming yet")

    # -- processor-facing API (any thread) -------------------------------------------------

    def settle(self, generation: int, settlements: list[Settlement],
               on_done: Callable[[list[Settlement]], None] | None = None) -> None:
        """Ask the I/O thread to publish copies (confirmed) and ack; stale generations are dropped."""
        connection = self._connection
        if connection is None or generation != self.generation:
            log.warning("settlement_dropped", worker=self.spec.name, count=len(settlements),
                        reason="channel closed since delivery; the broker redelivers")
            return
        try:
            connection.add_callback_threadsafe(lambda: self._settle_now(generation, settlements, on_done))
        except Exception:  # connection already closed: same as a stale generation
            log.warning("settlement_dropped", worker=self.spec.name, count=len(settlements),
                        reason="connection closed")

    def is_live(self, generation: int) -> bool:
        """False once the channel that delivered with this generation is gone."""
        return generation == self.generation and self._channel is not None

    def in_flight(self) -> int:
        with self._lock:
            return len(self._in_flight)

    # -- the I/O thread ------------------------------------------------------------------------

    def run(self) -> None:
        # A connection that got as far as consuming (a new generation) resets the backoff.
        serve_reconnecting(self._serve_one_connection, stop=self.stop, errors=amqp.CONNECTION_ERRORS,
                           progress=lambda: self.generation, on_lost=self._connection_lost)
        self._forget_channel()
        self.cancelled.set()
        self.health.forget(self._loop_name)

    @property
    def _loop_name(self) -> str:
        return f"{self.spec.name}-consumer"

    def _connection_lost(self, error: BaseException, delay: float) -> None:
        log.warning("broker_connection_lost", worker=self.spec.name, error=repr(error)[:300],
                    retry_in_s=round(delay, 2))
        RECONNECTS.labels("broker").inc()
        self.health.set_problem(self._condition, f"not connected to RabbitMQ ({type(error).__name__}); reconnecting")
        self.health.beat(self._loop_name)  # waiting out an outage is not being stuck
        self._forget_channel()

    def _serve_one_connection(self) -> None:
        connection = amqp.connect(self.settings, name=self.spec.name)
        try:
            channel = connection.channel()
            copies = CopyPublisher(connection, channel, on_confirmed=lambda tags: self._ack(channel, tags),
                                   on_refused=lambda tag, why: self._copy_refused(channel, tag, why))
            if self.declare:
                topology.declare_exchanges(channel, quorum_replicas=self.settings.quorum_replicas)
                topology.declare_worker(channel, self.spec, retry_delays=self.settings.retry_delays,
                                        delivery_limit=self.settings.delivery_limit,
                                        quorum_replicas=self.settings.quorum_replicas)
            channel.basic_qos(prefetch_count=self.settings.prefetch)
            with self._lock:
                self.generation += 1
                self._in_flight.clear()
            self._connection, self._channel, self._copies = connection, channel, copies
            tag = channel.basic_consume(self.spec.queue, on_message_callback=self._on_message)
            log.info("consuming", worker=self.spec.name, queue=self.spec.queue,
                     prefetch=self.settings.prefetch, generation=self.generation)
            self.health.set_problem(self._condition, None)
            while not self.stop.is_set():
                self.health.beat(self._loop_name)
                connection.process_data_events(time_limit=0.2)
                if self._fair:
                    self._count_peers(channel)
            self.health.set_problem(self._condition, "stopping")
            self._drain(connection, channel, tag)
        finally:
            self._forget_channel()
            if connection.is_open:
                try:
                    connection.close()
                except amqp.CONNECTION_ERRORS:
                    pass

    def _count_peers(self, channel, *, every_s: float = 5.0) -> None:
        if time.monotonic() - self._peers_read_at >= every_s:
            self._peers_read_at = time.monotonic()
            self.peers = max(1, channel.queue_declare(self.spec.queue, passive=True).method.consumer_count)

    def _drain(self, connection, channel, consumer_tag: str) -> None:
        """Stop consuming, then let the processor finish and settle what it already holds."""
        channel.basic_cancel(consumer_tag)
        self.cancelled.set()
        deadline = time.monotonic() + 30
        while self.in_flight() and time.monotonic() < deadline:
            connection.process_data_events(time_limit=0.1)
        log.info("drained", worker=self.spec.name, unsettled=self.in_flight())

    def _on_message(self, channel, method, properties, body) -> None:
        delivery = Delivery(self.generation, method.delivery_tag, method.exchange, method.routing_key,
                            method.redelivered, properties, body)
        with self._lock:
            self._in_flight.add(method.delivery_tag)
        self.inbound.put(delivery)

    def _settle_now(self, generation: int, settlements: list[Settlement], on_done) -> None:
        if generation != self.generation or self._channel is None or self._copies is None:
            return
        channel, copies = self._channel, self._copies
        done: list[int] = []
        for settlement in settlements:
            tag = settlement.delivery.delivery_tag
            if settlement.requeue:
                self._requeue(channel, tag)
            elif settlement.copy_to_queue:  # acked once the broker confirms the copy
                copies.publish(settlement.copy_to_queue, settlement.delivery.body,
                               settlement.copy_properties or BasicProperties(), original_tag=tag)
            else:
                done.append(tag)
        self._ack(channel, done)
        if on_done is not None:
            on_done(settlements)

    def _copy_refused(self, channel, tag: int, why: str) -> None:
        log.error("copy_not_confirmed", worker=self.spec.name, error=why)
        self._requeue(channel, tag)

    # Acks and nacks go through the asynchronous channel underneath (``_impl``): queued for the
    # I/O loop, they return at once. BlockingChannel's would flush and read what arrived
    # meanwhile, which can run a copy's confirm callback (and its ack) in the middle of this one.

    def _requeue(self, channel, tag: int) -> None:
        channel._impl.basic_nack(tag, requeue=True)  # noqa: SLF001 - see above
        with self._lock:
            self._in_flight.discard(tag)

    def _ack(self, channel, tags: list[int]) -> None:
        """One multiple-ack when every outstanding tag up to the highest is settled here."""
        if not tags:
            return
        settled, highest = set(tags), max(tags)
        with self._lock:
            gap = any(t < highest and t not in settled for t in self._in_flight)
            self._in_flight.difference_update(settled)
        if gap:
            for tag in tags:
                channel._impl.basic_ack(tag)  # noqa: SLF001 - see above
        else:
            channel._impl.basic_ack(highest, multiple=True)  # noqa: SLF001

    def _forget_channel(self) -> None:
        with self._lock:
            self._connection = None
            self._channel = None
            self._copies = None
            self._in_flight.clear()
