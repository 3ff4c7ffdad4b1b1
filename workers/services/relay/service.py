"""The outbox relay: publishes outbox rows to RabbitMQ with confirms, deletes them after.

The outbox table is the truth; NOTIFY on ``OUTBOX_CHANNEL`` (``conveyor.db.notify``) is only
a wake-up. The relay LISTENs on its own autocommit connection, wakes on a notification or a poll timeout,
drains the backlog after every (re)connect (notifications sent while it was away are
lost), and publishes with ``mandatory`` and publisher confirms. A row is deleted only after
its confirm, in the transaction that claimed it, so a crash in between republishes it
with the same ``message_id`` (at least once).

Several relays may run; one publishes. Each publishing transaction starts by renewing the
lease (``conveyor.db.relay_lease``), whose row lock it holds until it commits, so the others stay
standbys until the lease runs out. Within a batch, rows sharing an ordering key (a SKU,
an order) go out in id order, one confirm round per row of a key (``ordering``).
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable

from conveyor.db import notify
from conveyor.db.connection import Connection, connect, transaction
from conveyor.db.errors import DatabaseError, wrap_exceptions
from conveyor.db.outbox import Outbox, OutboxRow
from conveyor.db.relay_lease import RelayLease
from conveyor.db.sessions import pooled
from conveyor.workers.config import Settings
from conveyor.workers.logging import get_logger
from conveyor.workers.observability.health import Health
from conveyor.workers.observability.metrics import RECONNECTS, RELAY_CONFIRM, RELAY_LEADER, RELAY_PUBLISHED
from conveyor.workers.runtime import amqp, topology
from conveyor.workers.runtime.reconnect import serve_reconnecting
from conveyor.workers.services.relay.ordering import BatchResult, Cooldown, publish_in_order
from conveyor.workers.services.relay.publisher import ConfirmingPublisher

log = get_logger("conveyor.relay")



def _reconnects(error: BaseException) -> bool:
    """Errors after which the relay reconnects: operational database errors (the session
    was ended for idling in a transaction included) and a lost broker. Everything else is
    a bug: the thread dies and the supervisor stops the process, so that it is restarted
    rather than limping on."""
    if isinstance(error, DatabaseError):
        return error.operational
    return isinstance(error, amqp.CONNECTION_ERRORS)


def _count_published(rows: list[OutboxRow], confirmed: list[int]) -> None:
    exchange = {row.id: row.exchange for row in rows}
    for stream, count in Counter(exchange[row_id] for row_id in confirmed).items():
        RELAY_PUBLISHED.labels(stream).inc(count)


def default_holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(2)}"


class OutboxRelay:
    def __init__(self, settings: Settings, *, stop: threading.Event, batch_size: int = 1_000,
                 poll_interval: float = 1.0, lease_seconds: float = 5.0, batch_timeout: float = 10.0,
                 per_key_in_flight: int = 1, max_waves: int = 16, rotate_after_rows: int = 10_000,
                 rotate_check_seconds: float = 1.0,
                 max_reconnect_delay: float = 2.0, holder: str | None = None,
                 after_confirm: Callable[[list[OutboxRow], BatchResult], None] | None = None,
                 health: Health | None = None) -> None:
        if not 0 < poll_interval < lease_seconds:
            raise ValueError("poll_interval must be shorter than lease_seconds: the leader renews while idle")
        self.settings = settings
        self.stop = stop
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.lease_seconds = lease_seconds
        # Publishing a batch stops after batch_timeout; PostgreSQL ends a transaction idle
        # for three times that, which frees the lease row for a standby (see conveyor.db.relay_lease).
        self.batch_timeout = batch_timeout
        # 1: strict order per key even when the broker refuses a message; more is faster
        # for a hot SKU but gives that up (see ordering). max_waves bounds a batch's length.
        self.per_key_in_flight = per_key_in_flight
        self.max_waves = max_waves
        # The outbox moves on to its next slot after this many rows (V009): the claim walks
        # at most about that many dead rows, whatever VACUUM does.
        self.rotate_after_rows = rotate_after_rows
        self.rotate_check_seconds = rotate_check_seconds
        # Partners wait while the relay is away: retry a lost broker or database often
        # (a handful of relays, not a herd of consumers): every 2 s at most, so a failover's
        # new primary (~10 s) finds it back within 2 s.
        self.max_reconnect_delay = max_reconnect_delay
        self.holder = holder or default_holder()
        self.after_confirm = after_confirm  # a seam for tests: "crash between confirm and delete"
        self.published = 0
        self.connections = 0
        self.is_leader = False
        self._last_rotation_check = 0.0
        self.rotations = 0
        self.truncations = 0
        self._cooldown = Cooldown(seconds=poll_interval)
        self.health = health or Health()
        self.health.set_problem("relay", "not connected yet")
        RELAY_LEADER.set(0)

    def run(self) -> None:
        try:
            serve_reconnecting(self._serve_translated, stop=self.stop,
                               errors=(DatabaseError, *amqp.CONNECTION_ERRORS), should_reconnect=_reconnects,
                               progress=lambda: self.connections, on_lost=self._connection_lost,
                               max_delay=self.max_reconnect_delay)
        finally:
            self.health.forget("relay")

    def _serve_translated(self) -> None:
        with wrap_exceptions():  # whatever the driver raises leaves as Conveyor's errors
            self._serve()

    def _connection_lost(self, error: BaseException, delay: float) -> None:
        log.warning("relay_connection_lost", relay=self.holder, error=repr(error)[:300], retry_in_s=round(delay, 2))
        self._set_leader(False)
        RECONNECTS.labels("database" if isinstance(error, DatabaseError) else "broker").inc()
        self.health.set_problem("relay", f"connection lost ({type(error).__name__}); reconnecting")
        self.health.beat("relay")

    def _serve(self) -> None:
        kwargs = {"lock_timeout_ms": self.settings.lock_timeout_ms,
                  "statement_timeout_ms": self.settings.statement_timeout_ms}
        listen_url = self.settings.listen_database_url or self.settings.database_url
        with connect(listen_url, application_name="conveyor-relay-listen", **kwargs) as listener, \
             connect(self.settings.database_url, application_name="conveyor-relay", **kwargs) as conn:
            notify.listen(listener)
            if pooled(listen_url):
                log.warning("relay_listen_through_pooler", relay=self.holder,
                            advice="set CONVEYOR_LISTEN_DATABASE_URL to a direct connection: through "
                                   "transaction pooling no notification arrives, the relay only polls")
            broker = amqp.connect(self.settings, name="relay")
            try:
                publisher = ConfirmingPublisher(broker)
                topology.declare_exchanges(publisher.channel, quorum_replicas=self.settings.quorum_replicas)
                self.connections += 1
                log.info("relay_connected", relay=self.holder)
                self.health.set_problem("relay", None)
                self._loop(listener, conn, broker, publisher)
                self._step_down(conn)
            finally:
                if broker.is_open:
                    broker.close()

    def _loop(self, listener: Connection, conn: Connection, broker,
              publisher: ConfirmingPublisher) -> None:
        while not self.stop.is_set():
            self.health.beat("relay")
            pause = self.drain(conn, publisher)  # the first thing after every (re)connect
            if self.stop.is_set():
                return
            if pause:
                self._sleep(listener, self.poll_interval)
            else:
                self._wait_for_wakeup(listener, self.poll_interval)
            broker.process_data_events(time_limit=0)  # heartbeats

    def drain(self, conn: Connection, publisher: ConfirmingPublisher) -> bool:
        """Publish batches while this relay leads and there is more (a short batch is not
        the end when a SKU reached its per-claim cap). Returns True
        when the relay should pause rather than wake on the next notification: it is a
        standby, or the broker refused everything it was sent."""
        while not self.stop.is_set():
            if self.is_leader:
                self._rotate(conn)  # between batches, also under a backlog that never ends
            rows, result = self._publish_batch(conn, publisher)
            if result is None:
                return True
            if not rows:
                return False
            if not result.confirmed:
                return True  # all refused: give the partners' queues a moment
            if len(rows) < self.batch_size and not result.held_back and not self._hit_key_cap(rows):
                return False  # the claim took everything pending: no need to ask again
        return False

    def _publish_batch(self, conn: Connection,
                       publisher: ConfirmingPublisher) -> tuple[list[OutboxRow], BatchResult | None]:
        with transaction(conn):
            lease = self._lease(conn)
            if not lease.acquire():
                self._set_leader(False)
                return [], None
            self._set_leader(True)
            outbox = Outbox(conn)
            cooling_keys, cooling_ids = self._cooldown.active(now=time.monotonic())
            rows = outbox.claim(self.batch_size, per_key=self._key_cap, skip_keys=cooling_keys,
                                skip_ids=cooling_ids)
            started = time.monotonic()
            deadline = started + self.batch_timeout
            result = publish_in_order(rows, lambda wave: publisher.publish(wave, deadline=deadline),
                                      per_key=self.per_key_in_flight, max_waves=self.max_waves)
            if rows:
                RELAY_CONFIRM.observe(time.monotonic() - started)
            refused = {row_id for row_id, _ in result.refused}
            self._cooldown.refused([row for row in rows if row.id in refused], now=time.monotonic())
            if self.after_confirm is not None:
                self.after_confirm(rows, result)
            outbox.settle(result.confirmed)
            if result.confirmed:  # acquire() renewed the lease already; this adds the stats
                lease.finish(sent=len(result.confirmed))
        self.published += len(result.confirmed)
        _count_published(rows, result.confirmed)
        if result.refused:
            log.warning("relay_publish_refused", relay=self.holder, refused=len(result.refused),
                        held_back=len(result.held_back), outcomes=sorted({o for _, o in result.refused}))
        return rows, result

    @property
    def _key_cap(self) -> int:
        return self.per_key_in_flight * self.max_waves

    def _hit_key_cap(self, rows: list[OutboxRow]) -> bool:
        per_key = Counter(row.ordering_key for row in rows if row.ordering_key is not None)
        return bool(per_key) and max(per_key.values()) >= self._key_cap

    def _lease(self, conn: Connection) -> RelayLease:
        return RelayLease(conn, holder=self.holder, ttl_seconds=self.lease_seconds,
                          idle_timeout_ms=int(self.batch_timeout * 3000))

    def _wait_for_wakeup(self, listener: Connection, timeout: float) -> None:
        # One notification wakes us; the ones already received with it are the same news.
        notify.wait_for_wakeup(listener, timeout)

    def _sleep(self, listener: Connection, timeout: float) -> None:
        # Still read the notifications: a listener that never does holds up the server's
        # notification queue for everybody.
        notify.drain_for(listener, timeout, stop=self.stop.is_set)

    def _set_leader(self, leader: bool) -> None:
        if leader != self.is_leader:
            log.info("relay_leader" if leader else "relay_standby", relay=self.holder)
        self.is_leader = leader
        RELAY_LEADER.set(1 if leader else 0)

    def _step_down(self, conn: Connection) -> None:
        """On a clean stop, hand the lease over at once instead of letting it run out."""
        if self.is_leader:
            with transaction(conn):
                self._lease(conn).release()
            self._set_leader(False)

    def _rotate(self, conn: Connection) -> None:
        """Between batches, at most every ``rotate_check_seconds``: rotate the outbox (V009)."""
        if time.monotonic() - self._last_rotation_check < self.rotate_check_seconds:
            return
        self._last_rotation_check = time.monotonic()
        with transaction(conn):
            done = Outbox(conn).rotate(rotate_after=self.rotate_after_rows)
        for action, slot in done:
            if action == "rotated":
                self.rotations += 1
            elif action == "truncated":
                self.truncations += 1
            log.debug("outbox_" + action, relay=self.holder, slot=slot)
