"""The database side of a worker: take a batch of deliveries, run their handlers in one
transaction (set-based, or a savepoint each so one failure spares the others), commit,
then settle.

Order of events per batch: parse → lock every (tenant, SKU) of the batch in one sorted
pass → inbox claim → handler(s) → commit → for failures publish the retry or DLQ copy
(confirmed) → ack. Nothing is acked before the commit it depends on. A route with a batch
handler runs the whole batch through it (lock and inbox claim in one statement, the
handler's set-based statements, commit: five round trips for the batch); if that fails
the transaction rolls back and every message runs again with a savepoint of its own.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field, replace

from tenacity import RetryError, Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from conveyor.db.connection import Connection, DedicatedConnection, transaction
from conveyor.db.errors import DatabaseError, is_outage, is_transient
from conveyor.db.locks import lock_stock
from conveyor.db.uow import PostgresUnitOfWork, UnitOfWork
from conveyor.schemas.errors import InvalidMessage
from conveyor.workers.config import Settings
from conveyor.workers.logging import get_logger
from conveyor.workers.observability.health import Health
from conveyor.workers.observability.metrics import RECONNECTS, WorkerMetrics
from conveyor.workers.observability.tracing import consume_spans
from conveyor.workers.observability.tracing import enabled as tracing_enabled
from conveyor.workers.runtime import failure, topology
from conveyor.workers.runtime.consumer import Consumer, Settlement
from conveyor.workers.runtime.envelope import Delivery, Failure, deferral_properties, failure_properties
from conveyor.workers.runtime.messages import ParsedMessage, parse_delivery
from conveyor.workers.runtime.spec import WorkerSpec
from conveyor.workers.runtime.throttle import TenantThrottle, defer_tier, parse_limits
from conveyor.workers.runtime.tracecontext import event_context

log = get_logger("conveyor.processor")

# The longest wait between two tries of a batch while the database is out of reach. A
# failover (Patroni: kill -9 of the primary, a standby promoted ~10 s later) is over between
# two tries: with waits doubling to 10 s the workers came back up to 8 s after the new
# primary; at 2 s a try costs one connection attempt per processor, nothing else.
MAX_OUTAGE_WAIT_S = 2.0


@dataclass
class Result:
    parsed: ParsedMessage | None
    delivery: Delivery
    started: float
    outcome: str | None = None
    error: BaseException | None = None
    abandoned: bool = False  # stopping during a database outage: hand it back untouched
    deferred_until: float | None = None  # over its tenant's rate: waits for this slot (Unix s)
    rate_key: str = ""

    @property
    def job(self) -> ParsedMessage:
        """The parsed message of a result that reached the transaction (parsing succeeded)."""
        if self.parsed is None:
            raise RuntimeError("a message that failed to parse has no job")  # a processor bug
        return self.parsed


@dataclass
class BatchStats:
    """Counters the demo, the metrics and the tests read."""

    processed: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    batch_fallbacks: int = 0  # set-based batches that failed and ran again message by message

    def count(self, outcome: str) -> None:
        self.processed += 1
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1


class Processor:
    def __init__(self, spec: WorkerSpec, settings: Settings, *, inbound: queue.Queue,
                 consumer: Consumer, stop: threading.Event, health: Health | None = None) -> None:
        self.spec = spec
        self.settings = settings
        self.inbound = inbound
        self.consumer = consumer
        self.db = DedicatedConnection(settings.database_url, application_name=f"conveyor-{spec.name}",
                                      lock_timeout_ms=settings.lock_timeout_ms,
                                      statement_timeout_ms=settings.statement_timeout_ms)
        self.stop = stop
        self.stats = BatchStats()
        self.metrics = WorkerMetrics(spec.name, spec.queue)
        self.health = health or Health()
        self._loop_name = f"{spec.name}-processor"
        self._condition = f"database:{spec.name}"
        self.policy = failure.RetryPolicy(settings.max_attempts, settings.retry_delays)
        limits = parse_limits(settings.tenant_rate_limits)
        self.throttle = None if limits.empty else TenantThrottle(limits, share=lambda: consumer.peers)

    def run(self) -> None:
        try:
            while not (self.stop.is_set() and self.consumer.cancelled.is_set() and self.inbound.empty()):
                self.health.beat(self._loop_name)
                batch = self._next_batch()
                # Deliveries from a channel that died are redelivered anyway: skip the work.
                current = [d for d in batch if self.consumer.is_live(d.generation)]
                if current:
                    self.process(current)
        finally:
            self.health.forget(self._loop_name)
            self.db.close()

    def _next_batch(self) -> list[Delivery]:
        """Group commit: the first delivery and whatever queued up behind it (up to
        ``CONVEYOR_BATCH_SIZE``). Nothing waits for company when nothing else is queued, and
        while a transaction runs the next batch fills by itself. ``CONVEYOR_BATCH_WINDOW_MS``
        (default 0) makes a batch wait that long for more."""
        try:
            first = self.inbound.get(timeout=0.2)
        except queue.Empty:
            return []
        batch = [first]
        deadline = time.monotonic() + self.settings.batch_window_ms / 1000
        while len(batch) < self.settings.batch_size:
            try:
                batch.append(self.inbound.get_nowait())
                continue
            except queue.Empty:
                pass
            wait = deadline - time.monotonic()
            if wait <= 0:
                break
            try:
                batch.append(self.inbound.get(timeout=wait))
            except queue.Empty:
                break
        return batch

    # -- one batch -------------------------------------------------------------------------

    def process(self, batch: list[Delivery]) -> None:
        started = time.perf_counter()
        results = [self._parse(delivery, started) for delivery in batch]
        if self.throttle is not None:
            self._defer_over_rate(results)
        runnable = [r for r in results if r.error is None and r.deferred_until is None]
        if runnable:
            self._run_traced(runnable)
            self.metrics.batch_seconds.observe(time.perf_counter() - started)
        self.metrics.batch_size.observe(len(batch))
        self._observe_age(results)
        settlements = [self._settlement(r) for r in results]
        self.consumer.settle(batch[0].generation, settlements)
        for result in results:
            self._log(result)

    def _run_traced(self, results: list[Result]) -> None:
        """The transaction inside the messages' spans (``conveyor[otel]``): their events then
        carry the spans' trace context instead of the inbound one."""
        if not tracing_enabled():  # the hot path without conveyor[otel]: nothing to build per message
            self._run_transaction(results)
            return
        jobs = [(r.job.context.routing_key, r.job.context.message_id, r.job.context.trace) for r in results]
        with consume_spans(self.spec.queue, jobs) as carried:
            for result, trace in zip(results, carried, strict=True):
                result.parsed = replace(result.job, context=replace(result.job.context, trace=trace))
            self._run_transaction(results)

    def _defer_over_rate(self, results: list[Result]) -> None:
        """Tenant fairness: a message past its tenant's rate waits for its slot instead."""
        assert self.throttle is not None
        for result in results:
            if result.error is None and result.job.route.rate_key is not None:
                result.rate_key = result.job.route.rate_key(result.job.message, result.job.context)
                slot = self.throttle.admit(result.rate_key, slot=result.delivery.deferred_until)
                result.deferred_until = slot or None

    def _observe_age(self, results: list[Result]) -> None:
        """Publish → commit for the messages committed now whose publisher set the AMQP
        timestamp (whole seconds, as the protocol has it)."""
        now = time.time()
        for result in results:
            stamp = result.delivery.properties.timestamp
            if stamp and result.error is None and not result.abandoned and result.deferred_until is None:
                self.metrics.message_age.observe(max(now - stamp, 0.0))

    def _parse(self, delivery: Delivery, started: float) -> Result:
        try:
            return Result(parse_delivery(delivery, self.spec, settings=self.settings), delivery, started)
        except InvalidMessage as error:
            return Result(None, delivery, started, error=error)
        except Exception as error:  # noqa: BLE001 - a parser bug: retried, then dead-lettered,
            return Result(None, delivery, started, error=error)  # never a crashed worker thread

    def _run_transaction(self, results: list[Result]) -> None:
        """Commit the batch, retrying contention locally and waiting out a database outage."""
        outage_wait = 0.5
        while True:
            try:
                for attempt in self._local_retries():
                    with attempt:
                        self._attempt(results)
                if outage_wait > 0.5:  # the database is back
                    self.health.set_problem(self._condition, None)
                return
            except (RetryError, Exception) as raised:  # noqa: BLE001 - classified below
                error = _unwrap(raised)
                if is_outage(error) and not self.stop.is_set():
                    log.warning("database_unavailable", worker=self.spec.name, error=repr(error)[:300],
                                retry_in_s=outage_wait)
                    if outage_wait == 0.5:
                        RECONNECTS.labels("database").inc()
                        self.health.set_problem(self._condition, "database unavailable; waiting to reconnect")
                    self.health.beat(self._loop_name)
                    self.stop.wait(outage_wait)
                    outage_wait = min(outage_wait * 2, MAX_OUTAGE_WAIT_S)
                    continue
                if is_outage(error):
                    for result in results:
                        result.abandoned = True
                    return
                for result in results:
                    result.outcome, result.error = None, error
                return

    def _local_retries(self) -> Retrying:
        return Retrying(
            stop=stop_after_attempt(self.settings.local_retries + 1),
            wait=wait_random_exponential(multiplier=0.02, max=0.5),
            retry=retry_if_exception(lambda e: is_transient(e) and not is_outage(e)),
            reraise=True,
        )

    def _attempt(self, results: list[Result]) -> None:
        conn = self.db.get()
        if _batchable(results) and self._run_set_based(conn, results):
            return
        with transaction(conn):
            lock_stock(conn, self._lock_pairs(conn, results))
            for result in results:
                self._run_one(conn, result)

    @staticmethod
    def _lock_pairs(conn: Connection, results: list[Result]) -> list[tuple[str, str]]:
        pairs = [pair for r in results for pair in r.job.lock_pairs]
        uow = PostgresUnitOfWork(conn)  # lock queries only read
        for result in results:
            if result.job.route.lock_query is not None:
                pairs.extend(result.job.route.lock_query(result.job.message, uow))
        return pairs

    def _run_set_based(self, conn: Connection, results: list[Result]) -> bool:
        """Run a same-route batch through its batch handler in a transaction of its own: the
        locks and the inbox claim in one statement, the handler's few statements, commit.
        False when the batch failed: it rolled back, and each message then runs in a
        savepoint of its own (the culprit fails alone)."""
        try:
            with transaction(conn):
                uow = PostgresUnitOfWork(conn, pii_key_file=self.settings.pii_key_file)
                todo = self._lock_and_claim(uow, results)
                batch_handler = results[0].job.route.batch_handler
                assert batch_handler is not None  # _batchable checked it
                outcomes = batch_handler([(r.job.message, r.job.context) for r in todo], uow)
                for result, outcome in zip(todo, outcomes, strict=True):
                    result.outcome = outcome
            return True
        except DatabaseError as error:
            if is_transient(error) or error.connection_broken:
                raise
            log.info("batch_fallback", worker=self.spec.name, size=len(results), error=str(error)[:200])
        except Exception as error:  # noqa: BLE001 - the per-message path isolates the culprit
            log.info("batch_fallback", worker=self.spec.name, size=len(results), error=str(error)[:200])
        self.stats.batch_fallbacks += 1
        self.metrics.fallbacks.inc()
        return False

    def _lock_and_claim(self, uow: UnitOfWork, results: list[Result]) -> list[Result]:
        """Lock the batch's stock, then record its message ids in the inbox; returns the
        results still to run (a message processed before is a duplicate)."""
        ids = [r.job.context.message_id for r in results]
        fresh = uow.inbox.claim_many(list(dict.fromkeys(ids)), handler=self.spec.name,
                                     after_locking=[pair for r in results for pair in r.job.lock_pairs],
                                     context=event_context(results[0].job.context))
        todo = []
        for result in results:
            result.outcome, result.error = None, None
            if result.job.context.message_id in fresh:
                fresh.discard(result.job.context.message_id)
                todo.append(result)
            else:
                result.outcome = "duplicate_message"
        return todo

    def _run_one(self, conn: Connection, result: Result) -> None:
        result.outcome, result.error = None, None
        parsed = result.job
        try:
            with transaction(conn):  # a SAVEPOINT: this message's failure spares the batch
                uow = PostgresUnitOfWork(conn, pii_key_file=self.settings.pii_key_file)
                if not uow.inbox.claim(parsed.context.message_id, handler=self.spec.name,
                                       context=event_context(parsed.context)):
                    result.outcome = "duplicate_message"
                    return
                result.outcome = parsed.route.handler(parsed.message, uow, parsed.context)
        except DatabaseError as error:
            if is_transient(error) or error.connection_broken:
                raise  # the whole transaction is suspect: retry the batch
            result.error = error
        except Exception as error:  # noqa: BLE001 - a handler bug must not stop the batch
            result.error = error

    # -- settling --------------------------------------------------------------------------

    def _settlement(self, result: Result) -> Settlement:
        if result.abandoned:
            result.outcome = "requeued"
            self.metrics.settled("requeued")
            return Settlement(result.delivery, requeue=True)
        if result.deferred_until is not None:
            return self._deferral(result, result.deferred_until)
        if result.error is None:
            self.stats.count(result.outcome or "ok")
            self.metrics.settled(result.outcome or "ok")
            return Settlement(result.delivery)
        attempts = result.delivery.previous_attempts + 1
        kind = failure.classify(result.error)
        decision = failure.decide(kind, attempts=attempts, policy=self.policy)
        result.outcome = decision.action.value
        self.stats.count(result.outcome)
        self.metrics.settled(result.outcome)
        if decision.action is failure.Action.RETRY_LATER and decision.delay_seconds is not None:
            target = topology.retry_queue_name(self.spec.queue, decision.delay_seconds)
            self.metrics.retried(decision.delay_seconds)
        else:
            target = topology.dlq_name(self.spec.queue)
            self.metrics.dead_lettered(kind.value)
        details = Failure(result.error, failure.error_code(result.error), decision.reason)
        properties = failure_properties(result.delivery, details, queue=self.spec.queue, attempts=attempts)
        return Settlement(result.delivery, target, properties)

    def _deferral(self, result: Result, until: float) -> Settlement:
        result.outcome = "deferred"
        self.stats.count("deferred")
        self.metrics.settled("deferred")
        tier = defer_tier(until - time.time())
        properties = deferral_properties(result.delivery, queue=self.spec.queue, until=until,
                                         reason=f"tenant {result.rate_key!r} over its rate limit")
        return Settlement(result.delivery, topology.defer_queue_name(self.spec.queue, tier), properties)

    def _log(self, result: Result) -> None:
        delivery = result.delivery
        fields = {
            "worker": self.spec.name, "message_id": delivery.properties.message_id,
            "routing_key": delivery.original_routing_key, "outcome": result.outcome,
            "attempt": delivery.previous_attempts + 1,
            "duration_ms": round((time.perf_counter() - result.started) * 1000, 2),
        }
        if result.parsed is not None:
            fields["order_id"] = str(getattr(result.parsed.message, "order_id", "")) or None
        if result.error is not None:
            fields["error"] = f"{type(result.error).__name__}: {str(result.error)[:300]}"
            log.warning("message_failed", **fields)
        else:
            log.info("message_processed", **fields)


def _batchable(results: list[Result]) -> bool:
    """Messages of one route that has a batch handler (and no lock query). A lone message
    qualifies too: five round trips instead of the savepoint path's eight, which
    matters at low load, when most batches hold one or two messages."""
    route = results[0].job.route
    return (route.batch_handler is not None and route.lock_query is None
            and all(r.job.route is route for r in results))


def _unwrap(error: BaseException) -> BaseException:
    if isinstance(error, RetryError) and error.last_attempt.failed:
        return error.last_attempt.exception() or error
    return error
