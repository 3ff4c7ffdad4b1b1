"""The database-only yardstick of the order-intake benchmark: how fast PostgreSQL takes
Conveyor's own batch transactions when neither AMQP nor worker Python is in the loop.

This module owns recording those transactions and replaying them; ``bench.orders_bench``
reports Conveyor's end-to-end rate with 2 processes as a percentage of the replay's rate
with 2 processes, measured in the same run (target ≥ 80 %).

1. **Record.** The benchmark's order bodies become the deliveries the workers would receive
   (``harness.publish``'s own code writes into a capturing channel, so properties and body
   bytes are the benchmark's; no broker). A real ``Processor`` of the ``orders`` worker runs
   them in this process, in batches of ``CONVEYOR_BATCH_SIZE`` (parse, lock + inbox claim,
   the batch handler, commit), against a fresh database seeded like the benchmark's. Its
   connection records every statement with its parameters and row count, grouped by
   transaction (BEGIN ... COMMIT, savepoints nested). No SQL text lives here: the replay
   always sends what the current db/ and processor code send.
2. **Replay.** On a second fresh database seeded alike, ``processes`` separate processes (no
   GIL between them) send the committed transactions round robin, each on a connection the
   worker's own ``Processor`` opens (same session options, prepare threshold, autocommit +
   explicit transaction), contention retried with the worker's own retry policy. The clock
   runs from the moment every process is connected until the last one has committed. The
   statistics keeper runs meanwhile, as in every ``conveyor run`` process
   (``CONVEYOR_ANALYZE_INTERVAL``). The result is checked like the benchmark's (every order
   once, no oversell, reconcile clean) and every statement must return as many rows as it did
   when recorded.

Standalone (the benchmark calls :func:`measure`; on the shared machine, one benchmark at a time):

    flock /tmp/conveyor-bench.lock python -m bench.db_only --orders 10000 --mix low-contention --processes 2
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any, Self, cast

import psycopg
from psycopg import pq
from psycopg.abc import Params, Query, QueryNoTemplate

from bench import harness
from conveyor import devservices
from conveyor.db.connection import transaction
from conveyor.db.errors import wrap_exceptions
from conveyor.db.migrate import ensure_partitions, migrate
from conveyor.workers import logging as worker_logging
from conveyor.workers.bootstrap import WORKERS
from conveyor.workers.config import Settings, load_settings
from conveyor.workers.runtime.consumer import Consumer, Settlement
from conveyor.workers.runtime.envelope import Delivery
from conveyor.workers.runtime.processor import Processor
from conveyor.workers.services.statistics import StatisticsKeeper

WORKER = "orders"  # the worker `python -m conveyor run orders` runs
MIXES = ("low-contention", "hot-sku")


def _stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- what is recorded ------------------------------------------------------------------------

@dataclass(frozen=True)
class Statement:
    """One statement as the worker sent it, and the row count it returned or changed."""

    query: QueryNoTemplate  # Conveyor sends text (t-string templates arrive with Python 3.14)
    params: Any
    rowcount: int
    prepare: bool | None = None
    binary: bool = False
    many: bool = False


@dataclass
class Block:
    """A transaction (or a savepoint in one) as sent: its statements and nested savepoints in
    order. ``explicit`` False: one statement sent outside any transaction (autocommit)."""

    steps: list[Statement | Block] = field(default_factory=list)
    committed: bool = True
    explicit: bool = True

    def statements(self) -> int:
        return sum(step.statements() if isinstance(step, Block) else 1 for step in self.steps)


class Recorder:
    """Collects the statements a connection sends into the transaction blocks they belong to."""

    def __init__(self) -> None:
        self.blocks: list[Block] = []
        self._open: list[Block] = []

    def statement(self, statement: Statement) -> None:
        if self._open:
            self._open[-1].steps.append(statement)
        else:
            self.blocks.append(Block([statement], explicit=False))

    @contextmanager
    def block(self, *, rolls_back: bool = False) -> Iterator[None]:
        block = Block(committed=not rolls_back)
        if self._open:
            self._open[-1].steps.append(block)
        else:
            self.blocks.append(block)
        self._open.append(block)
        try:
            yield
        except BaseException:
            block.committed = False
            raise
        finally:
            self._open.pop()


def instrument(conn: psycopg.Connection, recorder: Recorder) -> None:
    """Make ``conn`` record what it sends: statements through its cursors (``conn.execute``
    included), transaction boundaries through ``conn.transaction()``, which
    ``conveyor.db.connection.transaction`` opens."""
    conn.cursor_factory = _recording_cursor(recorder)
    opened = conn.transaction

    @contextmanager
    def recorded(savepoint_name: str | None = None, force_rollback: bool = False) -> Iterator[psycopg.Transaction]:
        with recorder.block(rolls_back=force_rollback), opened(savepoint_name, force_rollback) as tx:
            yield tx

    conn.transaction = recorded  # type: ignore[method-assign]  # this connection only


def _recording_cursor(recorder: Recorder) -> type[psycopg.Cursor[Any]]:
    class RecordingCursor(psycopg.Cursor[Any]):
        def execute(self, query: Query, params: Params | None = None, *, prepare: bool | None = None,
                    binary: bool | None = None) -> Self:
            text = cast(QueryNoTemplate, query)
            super().execute(text, params, prepare=prepare, binary=binary)
            recorder.statement(Statement(text, params, self.rowcount, prepare,
                                         binary=self.format == pq.Format.BINARY))
            return self

        def executemany(self, query: Query, params_seq: Iterable[Params], *, returning: bool = False) -> None:
            params = list(params_seq)
            super().executemany(query, params, returning=returning)
            recorder.statement(Statement(cast(QueryNoTemplate, query), params, self.rowcount, many=True))

    return RecordingCursor


# -- recording through the real worker code ---------------------------------------------------

class _NoBroker:
    """Stands in for the AMQP consumer: every delivery is live, no more will arrive, and the
    settlements (ack, or a retry / dead-letter copy) are kept for checking."""

    def __init__(self) -> None:
        self.cancelled = threading.Event()
        self.cancelled.set()
        self.settled: list[Settlement] = []

    def is_live(self, generation: int) -> bool:
        return True

    def settle(self, generation: int, settlements: list[Settlement],
               on_done: Callable[[list[Settlement]], None] | None = None) -> None:
        self.settled.extend(settlements)


class _Capture:
    """A channel keeping what ``harness.publish`` sends, as the deliveries a worker receives."""

    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []

    def basic_publish(self, exchange: str, routing_key: str, body: bytes, properties: Any) -> None:
        self.deliveries.append(Delivery(generation=0, delivery_tag=len(self.deliveries) + 1, exchange=exchange,
                                        routing_key=routing_key, redelivered=False, properties=properties,
                                        body=body))


def deliveries(bodies: list[dict]) -> list[Delivery]:
    channel = _Capture()
    for body in bodies:
        harness.publish(channel, body)
    return channel.deliveries


def _processor(settings: Settings, broker: _NoBroker, inbound: queue.Queue | None = None) -> Processor:
    """The order worker's processor, set to drain ``inbound`` and return."""
    stop = threading.Event()
    stop.set()
    return Processor(WORKERS[WORKER], settings, inbound=inbound if inbound is not None else queue.Queue(),
                     consumer=cast(Consumer, broker), stop=stop)


@dataclass
class Recording:
    blocks: list[Block]
    outcomes: dict[str, int]
    batch_fallbacks: int
    failed: int  # messages the recording did not commit (retried or dead-lettered)
    seconds: float


def record(settings: Settings, messages: list[Delivery]) -> Recording:
    """Run ``messages`` through the order worker's processor on ``settings.database_url``
    (batching, parsing, the set-based batch path: the worker's code) and record what its
    connection sends."""
    worker_logging.configure(log_format="json", level="WARNING")  # as the benchmark's workers log
    inbound: queue.Queue = queue.Queue()
    for message in messages:
        inbound.put(message)
    broker, recorder = _NoBroker(), Recorder()
    processor = _processor(settings, broker, inbound)
    instrument(processor.db.get(), recorder)
    started = time.monotonic()
    processor.run()  # batch after batch until the queue is empty; closes the connection
    failed = sum(1 for s in broker.settled if s.copy_to_queue is not None or s.requeue)
    return Recording(recorder.blocks, dict(processor.stats.outcomes), processor.stats.batch_fallbacks, failed,
                     time.monotonic() - started)


# -- replaying, one process per connection ---------------------------------------------------

@dataclass
class Share:
    """What one replay process did, on the machine's monotonic clock."""

    started: float
    finished: float = 0.0
    cpu_seconds: float = 0.0  # this process's, while it sent
    transactions: int = 0
    retries: int = 0
    mismatched: int = 0  # statements whose row count differs from the recording


def _send(conn: psycopg.Connection, block: Block) -> int:
    """Send one recorded block as the worker sent it; returns the statements whose row count
    differs from the recording."""
    mismatched = 0
    context: AbstractContextManager[Any] = transaction(conn) if block.explicit else wrap_exceptions(conn)
    with context:
        for step in block.steps:
            if isinstance(step, Block):
                mismatched += _send(conn, step) if step.committed else 0
            else:
                mismatched += _execute(conn, step)
    return mismatched


def _execute(conn: psycopg.Connection, statement: Statement) -> int:
    if statement.many:
        cursor = conn.cursor()
        cursor.executemany(statement.query, statement.params)
    else:
        cursor = conn.execute(statement.query, statement.params, prepare=statement.prepare,
                              binary=statement.binary)
    return int(cursor.rowcount != statement.rowcount)


def _replay_share(processor: Processor, blocks: list[Block]) -> Share:
    share, cpu = Share(time.monotonic(), transactions=len(blocks)), time.process_time()
    for block in blocks:
        # The worker's own local retries: deadlocks, lock and statement timeouts, backing off.
        for attempt in processor._local_retries():
            with attempt:
                share.retries += attempt.retry_state.attempt_number > 1
                share.mismatched += _send(processor.db.get(), block)
    share.finished, share.cpu_seconds = time.monotonic(), time.process_time() - cpu
    return share


def _replay_process(settings: Settings, blocks: list[Block], ready: Any, results: Any) -> None:
    """One replay process: connect as the worker does, wait for the others, send its share."""
    processor: Processor | None = None
    try:
        processor = _processor(settings, _NoBroker())
        processor.db.get()
        ready.wait(timeout=120)
        results.put(_replay_share(processor, blocks))
    except BaseException as error:  # reported to the parent, which raises it
        ready.abort()
        results.put(f"{type(error).__name__}: {str(error)[:500]}")
    finally:
        if processor is not None:
            processor.db.close()


def replay(settings: Settings, blocks: list[Block], processes: int) -> tuple[list[Share], int]:
    """Send ``blocks`` round robin from ``processes`` processes, started together, with the
    statistics keepers running; returns what each process did and the tables analysed."""
    # fork: the children share the recording copy-on-write and never re-run the caller's
    # __main__ (spawn would, in a script without a main guard). No thread of ours runs yet.
    context = multiprocessing.get_context("fork")
    ready, results = context.Barrier(processes), context.Queue()
    workers = [context.Process(target=_replay_process, args=(settings, blocks[i::processes], ready, results),
                               name=f"db-only-replay-{i}", daemon=True) for i in range(processes)]
    for worker in workers:
        worker.start()
    try:
        with _statistics_keepers(settings, processes) as keepers:
            shares = [_next_share(results, workers) for _ in workers]
        return shares, sum(k.analysed for k in keepers)
    finally:
        for worker in workers:
            worker.join(timeout=30)
            if worker.is_alive():
                worker.terminate()


def _next_share(results: Any, workers: list[Any]) -> Share:
    alive = True
    while True:
        try:
            share = results.get(timeout=1)
        except queue.Empty:
            if not alive:  # a second look after they all exited: a result may have been in flight
                raise RuntimeError("the replay processes exited without a result") from None
            alive = any(w.is_alive() for w in workers)
            continue
        if isinstance(share, str):
            raise RuntimeError(f"a replay process failed: {share}")
        return cast(Share, share)


@contextmanager
def _statistics_keepers(settings: Settings, count: int) -> Iterator[list[StatisticsKeeper]]:
    """The statistics keeper every ``conveyor run`` process runs (none when the interval is 0)."""
    stop = threading.Event()
    keepers = [StatisticsKeeper(settings, stop=stop) for _ in range(count if settings.analyze_interval > 0 else 0)]
    threads = [threading.Thread(target=k.run, name="db-only-statistics", daemon=True) for k in keepers]
    for thread in threads:
        thread.start()
    try:
        yield keepers
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)


def timed_replay(settings: Settings, blocks: list[Block], processes: int) -> dict:
    """Replay and measure: wall time, retries, and the CPU PostgreSQL and the replay used."""
    postgres_before = harness.server_cpu_seconds()["postgres"]
    shares, analysed = replay(settings, blocks, processes)
    return {"seconds": max(s.finished for s in shares) - min(s.started for s in shares),
            "postgres_cpu_seconds": harness.server_cpu_seconds()["postgres"] - postgres_before,
            "client_cpu_seconds": sum(s.cpu_seconds for s in shares),
            "retries": sum(s.retries for s in shares), "mismatched": sum(s.mismatched for s in shares),
            "tables_analysed": analysed}


# -- the measurement ------------------------------------------------------------------------

@contextmanager
def _database(services: devservices.Services, stock: dict[str, int]) -> Iterator[str]:
    """A fresh database prepared as the benchmark's stage prepares its own, without the broker."""
    with devservices.fresh_database(services, prefix="conveyor_bench") as url:
        migrate(url)
        ensure_partitions(url)
        harness.Stage(url, amqp_url="").seed(stock)
        yield url


def measure(services: devservices.Services, *, stock: dict[str, int], bodies: list[dict], processes: int = 2,
            log: Callable[[str], None] = _stderr) -> dict:
    """Record the order worker's batch transactions for ``bodies``, replay them with
    ``processes`` processes on a fresh database; the replay's rate and checks."""
    settings = load_settings(amqp_url=services.amqp_url)  # CONVEYOR_* from the environment, as the workers
    log(f"[db-only] recording {len(bodies)} orders through the order worker's batch path")
    with _database(services, stock) as url:
        recording = record(settings.model_copy(update={"database_url": url}), deliveries(bodies))
    blocks = [b for b in recording.blocks if b.committed]
    log(f"[db-only] replaying {len(blocks)} transactions with {processes} processes")
    with _database(services, stock) as url:
        replayed = timed_replay(settings.model_copy(update={"database_url": url}), blocks, processes)
        problems = harness.verify(url, len(bodies))
    return _report(len(bodies), settings, recording, blocks, replayed, processes, problems)


def _report(orders: int, settings: Settings, recording: Recording, blocks: list[Block], replayed: dict,
            processes: int, problems: list[str]) -> dict:
    if recording.failed:
        problems.append(f"{recording.failed} messages failed while recording")
    if replayed["mismatched"]:
        problems.append(f"{replayed['mismatched']} replayed statements returned another row count than recorded")
    seconds = replayed["seconds"]
    return {"orders_per_s": round(orders / seconds, 1), "seconds": round(seconds, 2), "processes": processes,
            "batch_size": settings.batch_size, "transactions": len(blocks),
            "statements_per_transaction": round(sum(b.statements() for b in blocks) / max(len(blocks), 1), 2),
            "rolled_back_while_recording": len(recording.blocks) - len(blocks),
            "batch_fallbacks": recording.batch_fallbacks, "outcomes": recording.outcomes,
            "retries": replayed["retries"], "tables_analysed": replayed["tables_analysed"],
            "postgres_cpu_ms_per_order": round(replayed["postgres_cpu_seconds"] * 1000 / orders, 3),
            "replay_client_cpu_ms_per_order": round(replayed["client_cpu_seconds"] * 1000 / orders, 3),
            "record_seconds": round(recording.seconds, 2), "problems": problems}


def render(mix: str, result: dict) -> str:
    verdict = "OK" if not result["problems"] else "WRONG RESULT: " + "; ".join(result["problems"])
    return "\n".join([
        f"db-only replay [{mix}]: {result['orders_per_s']} orders/s ({result['seconds']} s, "
        f"{result['processes']} processes)",
        f"  {result['transactions']} transactions of {result['statements_per_transaction']} statements "
        f"(+ BEGIN/COMMIT), batch size {result['batch_size']}; retries {result['retries']}; "
        f"outcomes {result['outcomes']}; batch fallbacks {result['batch_fallbacks']}",
        f"  CPU per order: PostgreSQL {result['postgres_cpu_ms_per_order']} ms, "
        f"replay client {result['replay_client_cpu_ms_per_order']} ms; tables analysed {result['tables_analysed']}",
        f"  verdict: {verdict}"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=10_000)
    parser.add_argument("--mix", choices=MIXES, default="low-contention")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--json", metavar="FILE", help="also write the result as JSON")
    args = parser.parse_args(argv)
    from bench.orders_bench import catalogue  # here: orders_bench imports this module

    stock, make = catalogue(args.mix, args.orders)
    bodies = [make() for _ in range(args.orders)]
    with devservices.provide_services(log=_stderr) as services:
        result = measure(services, stock=stock, bodies=bodies, processes=args.processes)
    print(render(args.mix, result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0 if not result["problems"] else 1


if __name__ == "__main__":
    sys.exit(main())
