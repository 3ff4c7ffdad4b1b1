"""Long-run ("soak") benchmark: is Conveyor as fast at the end of a long run as at its start,
with the outbox churning, plainly and with another session pinning the xmin horizon?

    make bench-soak                                   # 200,000 orders, runs plain then pinned
    python -m bench.soak_bench --orders 5000 --interval 2 --json soak.json
    python -m bench.soak_bench --server throwaway-autovacuum   # own PostgreSQL, autovacuum on

Owns one soak run per name in ``--runs`` (``plain``, ``pinned``), each on a fresh database and
vhost: on the machine's servers (whose PostgreSQL runs with autovacuum off), or with
``--server throwaway-autovacuum`` on a throwaway PostgreSQL started for the run from the
installed binaries (``RestartablePostgres(durable=False)``, autovacuum on; the machine's
configuration is never touched). The workers, schema and broker topology are Conveyor's.

A run: a freshly migrated database, ``VACUUM ANALYZE``d while still empty (as a restore or
upgrade runbook does; ``--no-vacuum-empty`` skips it), then ``--skus`` SKUs whose stock never
runs out, ``--processes`` copies of ``conveyor run orders relay`` (the relay drains the
outbox; one copy leads), then a publisher thread keeps ``conveyor.orders`` fed flat out with
publisher confirms (``--confirm-batch`` publishes per confirm round) while holding the queue's
ready messages at most ``--backlog`` (closed loop: the workers never idle, latency stays
finite), until ``--orders`` are published or ``--max-seconds`` have passed. Each order takes 3
random SKUs (seeded). Every ``--interval`` seconds a monitor samples: orders decided, CPU of
the PostgreSQL server (its postmaster's process tree), of RabbitMQ and of the workers, the
outbox's live/dead tuples and size summed over ``pg_partition_tree('outbox')``, its pending
rows (the outbox holds only unpublished ones), and the stock tables' dead tuples and size
(``stock_items`` and the ledger ``stock_movements``, V011). Latency
of an order = ``orders.created_at`` (its transaction's start) − ``placed_at`` (set when it is
published). Run ``pinned``: another session holds a REPEATABLE READ transaction with an xid
and a snapshot for the whole run.

Target (issue 12): in both runs the last tenth of the run (first to last order decided)
within 15 % of the first tenth's orders/s ("flat": last ≥ 0.85 × first), and the relay
keeping up: pending outbox rows bounded (the max over the last tenth of the intervals at
most twice the first tenth's, or 2,000) and drained within a minute of the last order.
A wrong result (an order not decided exactly once, oversell, reconcile drift), a worker that
exits or a publish the broker refuses fails the benchmark: exit status 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import random
import sys
import threading
import time
import uuid
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pika
import pika.spec
import psycopg

from bench import harness
from conveyor import devservices

CONVEYOR = ["-m", "conveyor", "run", "orders", "relay"]
QUEUE = "conveyor.orders"
RUNS = ("plain", "pinned")
SERVERS = ("machine", "throwaway-autovacuum")
STOCK_PER_SKU = 100_000_000
FLAT = 0.85
PENDING_FLOOR = 2_000
SERVER_SETTINGS = ("server_version", "autovacuum", "synchronous_commit", "fsync", "shared_buffers")


def log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- publishing


class ConfirmingChannel:
    """A pika channel in confirm mode with a whole batch of publishes in flight.
    ``BlockingChannel.confirm_delivery()`` would wait for each publish's own confirm; the
    asynchronous channel underneath reports acks through a callback instead (the relay's
    technique, ``conveyor.workers.services.relay.publisher``)."""

    def __init__(self, amqp_url: str) -> None:
        self.connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
        self.channel = self.connection.channel()
        self._impl = self.channel._impl  # noqa: SLF001 - see the class docstring
        self._outstanding: set[int] = set()
        self._next_tag = 1
        self.nacked = 0
        selected: list[bool] = []
        self._impl.confirm_delivery(ack_nack_callback=self._on_confirm, callback=lambda _f: selected.append(True))
        self._wait(lambda: bool(selected), timeout=10)

    def publish(self, bodies: list[bytes]) -> None:
        """Publish every body as a persistent ``order.created``; return once all are confirmed."""
        for body in bodies:
            properties = pika.BasicProperties(message_id=str(uuid.uuid4()), content_type="application/json",
                                              type="order.created", delivery_mode=2)
            self._impl.basic_publish("orders", "order.created", body, properties)
            self._outstanding.add(self._next_tag)
            self._next_tag += 1
        self._wait(lambda: not self._outstanding, timeout=60)

    def queue(self) -> tuple[int, int]:
        """(ready messages, consumers) of the order queue."""
        method = self.channel.queue_declare(QUEUE, passive=True).method
        return method.message_count, method.consumer_count

    def close(self) -> None:
        if self.connection.is_open:
            self.connection.close()

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        if method.multiple:
            settled = {tag for tag in self._outstanding if tag <= method.delivery_tag}
        else:
            settled = {method.delivery_tag} & self._outstanding
        self._outstanding -= settled
        if isinstance(method, pika.spec.Basic.Nack):
            self.nacked += len(settled)
        if not self._outstanding:  # a ready timer makes process_data_events() return now
            self.connection.call_later(0, lambda: None)

    def _wait(self, done: Callable[[], bool], *, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                raise RuntimeError("the broker did not confirm in time")
            self.connection.process_data_events(time_limit=0.2)


class Feeder(threading.Thread):
    """Publishes orders flat out in confirmed batches, keeping at most ``backlog`` ready
    messages in the queue, until ``total`` are published, ``deadline`` (time.time()) or stop."""

    def __init__(self, amqp_url: str, make_order: Callable[[], dict], *, total: int, backlog: int,
                 batch: int, deadline: float) -> None:
        super().__init__(name="soak-feeder", daemon=True)
        self.amqp_url, self.make_order = amqp_url, make_order
        self.total, self.backlog, self.batch, self.deadline = total, backlog, batch, deadline
        self.published = 0
        self.nacked = 0
        self.error: BaseException | None = None
        self.halt = threading.Event()

    def run(self) -> None:
        try:
            self._feed()
        except BaseException as exc:  # reported by the run, which fails the benchmark
            self.error = exc

    def _feed(self) -> None:
        channel = ConfirmingChannel(self.amqp_url)
        try:
            while self.published < self.total and time.time() < self.deadline and not self.halt.is_set():
                want = min(self.batch, self.backlog, self.total - self.published)
                if self.backlog - channel.queue()[0] < want:
                    time.sleep(0.02)
                    continue
                channel.publish([json.dumps(self.make_order()).encode() for _ in range(want)])
                self.published += want
                self.nacked = channel.nacked
        finally:
            channel.close()


def order_maker(skus: int, seed: int) -> Callable[[], dict]:
    rng = random.Random(seed)
    catalogue = catalogue_of(skus)
    return lambda: harness.order(rng.sample(catalogue, 3))


def catalogue_of(skus: int) -> list[str]:
    return [f"SKU-{i:05d}" for i in range(skus)]


def wait_consumers(amqp_url: str, count: int, *, timeout: float = 60) -> None:
    channel = ConfirmingChannel(amqp_url)
    try:
        deadline = time.monotonic() + timeout
        while channel.queue()[1] < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"fewer than {count} consumers on {QUEUE} after {timeout:.0f} s")
            time.sleep(0.2)
    finally:
        channel.close()


# --------------------------------------------------------------------------- sampling


@dataclasses.dataclass(frozen=True)
class Sample:
    at: float  # time.time()
    decided: int
    pg_cpu: float
    rabbit_cpu: float
    worker_cpu: float
    queue_depth: int
    pending: int
    outbox_live: int
    outbox_dead: int
    outbox_bytes: int
    outbox_vacuums: int
    stock_dead: int
    stock_bytes: int


SAMPLE_SQL = """
SELECT (SELECT count(*) FROM orders),
       (SELECT count(*) FROM outbox),
       (SELECT coalesce(sum(s.n_live_tup), 0) FROM pg_partition_tree('outbox') t
            LEFT JOIN pg_stat_user_tables s USING (relid)),
       (SELECT coalesce(sum(s.n_dead_tup), 0) FROM pg_partition_tree('outbox') t
            LEFT JOIN pg_stat_user_tables s USING (relid)),
       (SELECT coalesce(sum(pg_total_relation_size(t.relid)), 0) FROM pg_partition_tree('outbox') t),
       (SELECT coalesce(sum(s.autovacuum_count + s.vacuum_count), 0) FROM pg_partition_tree('outbox') t
            LEFT JOIN pg_stat_user_tables s USING (relid)),
       (SELECT coalesce(sum(n_dead_tup), 0) FROM pg_stat_user_tables
            WHERE relid IN ('stock_items'::regclass, 'stock_movements'::regclass)),
       pg_total_relation_size('stock_items') + pg_total_relation_size('stock_movements')
"""


def postmaster_pid(conn: psycopg.Connection) -> int:
    """The PostgreSQL server's postmaster: the parent of this connection's backend."""
    with open(f"/proc/{conn.info.backend_pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def cpu_seconds(postmaster: int) -> tuple[float, float]:
    """CPU seconds so far of one PostgreSQL server (the postmaster with its exited children,
    plus its live children) and of RabbitMQ (beam.smp): (postgres, rabbitmq)."""
    postgres = rabbitmq = 0.0
    for pid, name, parent, seconds in harness.process_cpu():
        if postmaster in (pid, parent):
            postgres += seconds
        elif name.startswith("beam"):
            rabbitmq += seconds
    return postgres, rabbitmq


class Monitor(threading.Thread):
    """Samples every ``interval`` seconds (the first at once, the last when finished)."""

    def __init__(self, stage: harness.Stage, *, interval: float, label: str) -> None:
        super().__init__(name="soak-monitor", daemon=True)
        self.stage = stage
        self.interval, self.label = interval, label
        self.samples: list[Sample] = []
        self.error: BaseException | None = None
        self.ready = threading.Event()
        self._halt = threading.Event()

    def run(self) -> None:
        broker = pika.BlockingConnection(pika.URLParameters(self.stage.amqp_url))
        try:
            with psycopg.connect(self.stage.database_url, autocommit=True) as conn:
                channel, postmaster = broker.channel(), postmaster_pid(conn)
                self._take(conn, postmaster, channel)
                self.ready.set()
                while not self._halt.wait(self.interval):
                    self._take(conn, postmaster, channel)
                self._take(conn, postmaster, channel)
        except BaseException as exc:  # reported by the run
            self.error = exc
        finally:
            self.ready.set()
            broker.close()

    def finish(self) -> list[Sample]:
        self._halt.set()
        self.join()
        return self.samples

    def _take(self, conn: psycopg.Connection, postmaster: int, channel: Any) -> None:
        row = conn.execute(SAMPLE_SQL).fetchone()
        assert row is not None
        pg, rabbit = cpu_seconds(postmaster)
        depth = channel.queue_declare(QUEUE, passive=True).method.message_count
        sample = Sample(time.time(), int(row[0]), pg, rabbit, float(self.stage.usage()["cpu_seconds"]),
                        depth, *(int(v) for v in row[1:]))
        self.samples.append(sample)
        log(f"[{self.label}] {sample.at - self.samples[0].at:6.0f} s  decided {sample.decided:>7}  "
            f"queue {sample.queue_depth:>5}  outbox pending {sample.pending:>6}  dead {sample.outbox_dead:>7}")


# --------------------------------------------------------------------------- the pinned horizon


@dataclasses.dataclass
class Pin:
    pid: int
    xid: str
    database_url: str

    def state(self) -> dict:
        """What pg_stat_activity shows for the pinning session (backend_xmin, its age)."""
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            row = conn.execute("SELECT backend_xid::text, backend_xmin::text, age(backend_xmin), state "
                               "FROM pg_stat_activity WHERE pid = %s", (self.pid,)).fetchone()
        if row is None:
            return {"pid": self.pid, "alive": False}
        return {"pid": self.pid, "alive": True, "backend_xid": row[0], "backend_xmin": row[1],
                "xmin_age": row[2], "state": row[3]}


@contextmanager
def pinned_xmin(database_url: str, enabled: bool) -> Iterator[Pin | None]:
    """If enabled: a session in a REPEATABLE READ transaction with an xid and a snapshot,
    held until the block ends, then rolled back."""
    if not enabled:
        yield None
        return
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SET idle_in_transaction_session_timeout = 0")
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        row = conn.execute("SELECT pg_current_xact_id()::text").fetchone()
        conn.execute("SELECT count(*) FROM tenants")
        assert row is not None
        try:
            yield Pin(conn.info.backend_pid, row[0], database_url)
        finally:
            if not conn.closed:
                conn.execute("ROLLBACK")


# --------------------------------------------------------------------------- servers


@contextmanager
def database_server(services: devservices.Services, kind: str) -> Iterator[devservices.Services]:
    """The resolved services, or the same with a throwaway PostgreSQL (autovacuum on)."""
    if kind == "machine":
        yield services
        return
    with devservices.RestartablePostgres(durable=False) as server:
        enable_autovacuum(server)
        yield dataclasses.replace(services, database_url=server.database_url)


def enable_autovacuum(server: devservices.RestartablePostgres) -> None:
    """ALTER SYSTEM SET autovacuum = on (if it is off) on this throwaway server only."""
    with psycopg.connect(server.database_url, autocommit=True) as conn:
        row = conn.execute("SELECT current_setting('data_directory'), current_setting('autovacuum')").fetchone()
        assert row is not None
        if os.path.realpath(row[0]) != os.path.realpath(server.data_directory):
            raise RuntimeError(f"{server.database_url} is not the throwaway server")
        if row[1] != "on":
            conn.execute("ALTER SYSTEM SET autovacuum = on")
            conn.execute("SELECT pg_reload_conf()")
            time.sleep(0.5)


def server_settings(database_url: str) -> dict[str, str]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute("SELECT name, current_setting(name) FROM pg_settings WHERE name = ANY(%s)",
                            (list(SERVER_SETTINGS),)).fetchall()
    return dict(rows)


# --------------------------------------------------------------------------- one run


@dataclasses.dataclass(frozen=True)
class Options:
    orders: int
    skus: int
    processes: int
    interval: float
    backlog: int
    confirm_batch: int
    max_seconds: float
    seed: int
    server: str
    vacuum_empty: bool = True


def one_run(services: devservices.Services, name: str, opts: Options) -> dict:
    with database_server(services, opts.server) as run_services, harness.stage(run_services) as stage:
        stage.prepare({})
        if opts.vacuum_empty:  # what a restore or upgrade runbook does: the tables are recorded empty
            with psycopg.connect(stage.database_url, autocommit=True) as conn:
                conn.execute("VACUUM ANALYZE")
        stage.seed({sku: STOCK_PER_SKU for sku in catalogue_of(opts.skus)})
        settings = server_settings(stage.database_url)
        log(f"[{name}] server {opts.server}: {settings}")
        with pinned_xmin(stage.database_url, name == "pinned") as pin:
            pin_start = pin.state() if pin else None
            if pin_start:
                log(f"[{name}] pinned: {pin_start}")
            measured = measure(stage, name, opts)
            pin_end = pin.state() if pin else None
        stage.stop()
        problems = measured["problems"] + harness.verify(stage.database_url, measured["published"])
        if pin_end is not None and not pin_end["alive"]:
            problems.append("the pinning session did not last the run")
        times, latencies = latency_points(stage.database_url)
    return {"run": name, "server": opts.server, "settings": settings, "pin_start": pin_start, "pin_end": pin_end,
            **analyse(measured, times, latencies), "problems": problems}


def measure(stage: harness.Stage, name: str, opts: Options) -> dict:
    """Workers, publisher and monitor, until every published order is decided and the
    outbox drained; returns the samples, counts and problems (workers still running)."""
    stage.start(CONVEYOR, count=opts.processes)
    wait_consumers(stage.amqp_url, opts.processes)
    feeder = Feeder(stage.amqp_url, order_maker(opts.skus, opts.seed), total=opts.orders, backlog=opts.backlog,
                    batch=opts.confirm_batch, deadline=time.time() + opts.max_seconds)
    monitor = Monitor(stage, interval=opts.interval, label=name)
    monitor.start()
    monitor.ready.wait()
    feeder.start()
    problems = feed(stage, feeder)
    if not problems:
        problems += settle(stage.database_url, feeder.published)
    drain_s = wait_drained(stage.database_url) if not problems else None
    usage = stage.usage()
    samples = monitor.finish()
    problems += [f"{who} failed: {err!r}" for who, err in (("publisher", feeder.error), ("monitor", monitor.error))
                 if err is not None]
    if feeder.nacked:
        problems.append(f"the broker refused {feeder.nacked} publishes")
    if drain_s is None and not problems:
        problems.append("the outbox was not drained within 120 s of the last order")
    return {"published": feeder.published, "samples": samples, "drain_s": drain_s, "usage": usage,
            "problems": problems}


def feed(stage: harness.Stage, feeder: Feeder) -> list[str]:
    """Wait for the publisher; stop it early if a worker exits."""
    while feeder.is_alive():
        dead = [p.returncode for p in stage.processes if p.poll() is not None]
        if dead:
            feeder.halt.set()
            feeder.join()
            return [f"worker process exited (status {dead})"]
        time.sleep(0.5)
    return []


def settle(database_url: str, total: int, *, timeout: float = 300) -> list[str]:
    """Wait until ``total`` orders are decided (polled every 0.5 s, so the polling costs little)."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(database_url, autocommit=True) as conn:
        while (done := harness.decided(conn)) < total:
            if time.monotonic() > deadline:
                return [f"only {done}/{total} orders decided {timeout:.0f} s after the last publish"]
            time.sleep(0.5)
    return []


def wait_drained(database_url: str, *, timeout: float = 120) -> float | None:
    """Seconds until the outbox is empty (None: not within ``timeout``)."""
    started = time.monotonic()
    with psycopg.connect(database_url, autocommit=True) as conn:
        while scalar(conn, "SELECT count(*) FROM outbox"):
            if time.monotonic() - started > timeout:
                return None
            time.sleep(0.5)
    return round(time.monotonic() - started, 1)


def scalar(conn: psycopg.Connection, query: str) -> Any:
    row = conn.execute(query).fetchone()
    return None if row is None else row[0]


def latency_points(database_url: str) -> tuple[list[float], list[float]]:
    """Each order's decision time (epoch s) and publish→transaction-start latency (ms), by time."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT extract(epoch FROM created_at)::float8, "
                            "(extract(epoch FROM created_at - placed_at) * 1000)::float8 "
                            "FROM orders ORDER BY created_at").fetchall()
    return [r[0] for r in rows], [r[1] for r in rows]


# --------------------------------------------------------------------------- analysis (pure)


def percentile(ordered: list[float], q: float) -> float | None:
    """Nearest-rank percentile of sorted values (None if there are none)."""
    if not ordered:
        return None
    return round(ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))], 1)


def bucket_stats(times: list[float], latencies: list[float], edges: list[float]) -> list[dict]:
    """Per bucket [edges[i], edges[i+1]) (the last one closed) of the sorted ``times``: orders,
    orders/s, latency p50/p99."""
    rows = []
    for i, (lo, hi) in enumerate(zip(edges, edges[1:])):
        start = bisect_left(times, lo)
        end = bisect_right(times, hi) if i == len(edges) - 2 else bisect_left(times, hi)
        ordered = sorted(latencies[start:end])
        rows.append({"seconds": round(hi - lo, 2), "orders": end - start,
                     "orders_per_s": round((end - start) / max(hi - lo, 1e-9), 1),
                     "p50_ms": percentile(ordered, 50), "p99_ms": percentile(ordered, 99)})
    return rows


def tenth_edges(times: list[float]) -> list[float]:
    """Eleven edges splitting first..last of the sorted ``times`` into ten equal spans."""
    first, last = times[0], times[-1]
    return [first + (last - first) * i / 10 for i in range(11)]


def compare_tenths(tenths: list[dict]) -> dict:
    first, last = tenths[0], tenths[-1]
    ratio = round(last["orders_per_s"] / first["orders_per_s"], 2) if first["orders_per_s"] else None
    return {"first_tenth_per_s": first["orders_per_s"], "last_tenth_per_s": last["orders_per_s"],
            "last_over_first": ratio, "p99_first_tenth_ms": first["p99_ms"], "p99_last_tenth_ms": last["p99_ms"],
            "verdict": "flat" if ratio is not None and ratio >= FLAT else "NOT FLAT"}


def pending_bounded(pending: list[int], drained: bool) -> bool:
    """The relay kept up: drained at the end, and the last tenth of the intervals' peak
    pending at most twice the first tenth's (or ``PENDING_FLOOR``)."""
    if not drained or not pending:
        return False
    k = max(1, len(pending) // 10)
    return max(pending[-k:]) <= max(2 * max(pending[:k]), PENDING_FLOOR)


def per_order_ms(seconds: float, orders: int) -> float | None:
    return round(seconds * 1000 / orders, 3) if orders else None


def interval_rows(samples: list[Sample], times: list[float], latencies: list[float]) -> list[dict]:
    """One row per pair of consecutive samples: rate, latency, CPU per order, table state."""
    latency = bucket_stats(times, latencies, [s.at for s in samples])
    rows = []
    for before, after, lat in zip(samples, samples[1:], latency):
        done = after.decided - before.decided
        rows.append({"t_s": round(after.at - samples[0].at, 1),
                     "orders_per_s": round(done / max(after.at - before.at, 1e-9), 1),
                     "p50_ms": lat["p50_ms"], "p99_ms": lat["p99_ms"],
                     "pg_ms_per_order": per_order_ms(after.pg_cpu - before.pg_cpu, done),
                     "worker_ms_per_order": per_order_ms(after.worker_cpu - before.worker_cpu, done),
                     "rabbit_ms_per_order": per_order_ms(after.rabbit_cpu - before.rabbit_cpu, done),
                     "queue": after.queue_depth, "pending": after.pending, "outbox_live": after.outbox_live,
                     "outbox_dead": after.outbox_dead, "outbox_mb": round(after.outbox_bytes / 2**20, 1),
                     "outbox_vacuums": after.outbox_vacuums, "stock_dead": after.stock_dead,
                     "stock_mb": round(after.stock_bytes / 2**20, 2)})
    return rows


def analyse(measured: dict, times: list[float], latencies: list[float]) -> dict:
    samples: list[Sample] = measured["samples"]
    intervals = interval_rows(samples, times, latencies) if len(samples) > 1 else []
    tenths = bucket_stats(times, latencies, tenth_edges(times)) if len(times) > 1 else []
    first, last = samples[0], samples[-1]
    decided = last.decided - first.decided
    seconds = (times[-1] - times[0]) if len(times) > 1 else 0.0
    pending = [row["pending"] for row in intervals]
    return {"orders": measured["published"], "intervals": intervals, "tenths": tenths,
            "summary": {"orders_per_s": round(len(times) / seconds, 1) if seconds else None,
                        "seconds": round(seconds, 1),
                        **(compare_tenths(tenths) if tenths else {}),
                        "max_outbox_pending": max(pending, default=None),
                        "outbox_drain_s": measured["drain_s"],
                        "relay_kept_up": pending_bounded(pending, measured["drain_s"] is not None),
                        "pg_ms_per_order": per_order_ms(last.pg_cpu - first.pg_cpu, decided),
                        "worker_ms_per_order": per_order_ms(last.worker_cpu - first.worker_cpu, decided),
                        "rabbit_ms_per_order": per_order_ms(last.rabbit_cpu - first.rabbit_cpu, decided),
                        "worker_peak_rss_mb": measured["usage"]["peak_rss_mb"],
                        "outbox_max_dead": max((row["outbox_dead"] for row in intervals), default=None),
                        "outbox_max_mb": max((row["outbox_mb"] for row in intervals), default=None)}}


# --------------------------------------------------------------------------- report

COLUMNS = (("t_s", "t s"), ("orders_per_s", "orders/s"), ("p50_ms", "p50 ms"), ("p99_ms", "p99 ms"),
           ("pg_ms_per_order", "pg ms/o"), ("worker_ms_per_order", "wk ms/o"), ("queue", "queue"),
           ("pending", "pending"), ("outbox_live", "ob live"), ("outbox_dead", "ob dead"), ("outbox_mb", "ob MB"),
           ("outbox_vacuums", "ob vac"), ("stock_dead", "st dead"), ("stock_mb", "st MB"))


def render(run: dict) -> str:
    lines = ["", f"Soak run '{run['run']}' on {run['server']} PostgreSQL ({_settings_line(run['settings'])}), "
             f"{run['orders']} orders"]
    if run["pin_start"]:
        lines.append(f"  pinned xmin: {run['pin_start']} → at the end {run['pin_end']}")
    lines.append("  " + " ".join(f"{title:>9}" for _, title in COLUMNS))
    lines += ["  " + " ".join(f"{_cell(row[key]):>9}" for key, _ in COLUMNS) for row in run["intervals"]]
    lines.append("  tenths orders/s: " + " ".join(str(t["orders_per_s"]) for t in run["tenths"]))
    lines.append("  tenths p99 ms:   " + " ".join(str(t["p99_ms"]) for t in run["tenths"]))
    s = run["summary"]
    lines.append(f"  summary: {s['orders_per_s']} orders/s over {s['seconds']} s; first tenth "
                 f"{s.get('first_tenth_per_s')}/s, last tenth {s.get('last_tenth_per_s')}/s, last/first "
                 f"{s.get('last_over_first')} → {s.get('verdict')}; p99 first/last tenth "
                 f"{s.get('p99_first_tenth_ms')}/{s.get('p99_last_tenth_ms')} ms")
    lines.append(f"           outbox pending max {s['max_outbox_pending']}, drained {s['outbox_drain_s']} s after "
                 f"the last order, relay {'kept up' if s['relay_kept_up'] else 'DID NOT KEEP UP'}; outbox dead max "
                 f"{s['outbox_max_dead']}, size max {s['outbox_max_mb']} MB")
    lines.append(f"           CPU ms/order: PostgreSQL {s['pg_ms_per_order']}, workers {s['worker_ms_per_order']}, "
                 f"RabbitMQ {s['rabbit_ms_per_order']}; worker peak RSS {s['worker_peak_rss_mb']} MB")
    lines.append(f"  result: {'OK' if not run['problems'] else 'WRONG RESULT ' + '; '.join(run['problems'])}")
    return "\n".join(lines)


def _settings_line(settings: dict[str, str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in settings.items())


def _cell(value: object) -> str:
    return "-" if value is None else str(value)


# --------------------------------------------------------------------------- entry point


def parse(argv: list[str] | None) -> tuple[Options, list[str], str | None]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=200_000, help="orders to publish per run")
    parser.add_argument("--skus", type=int, default=1_000)
    parser.add_argument("--processes", type=int, default=2, help="copies of `conveyor run orders relay`")
    parser.add_argument("--interval", type=float, default=10, help="seconds between samples")
    parser.add_argument("--backlog", type=int, default=4_000, help="most ready messages the publisher keeps queued")
    parser.add_argument("--confirm-batch", type=int, default=500, help="publishes per confirm round")
    parser.add_argument("--runs", default="plain,pinned", help=f"comma-separated, of: {', '.join(RUNS)}")
    parser.add_argument("--server", choices=SERVERS, default="machine")
    parser.add_argument("--max-seconds", type=float, default=900, help="stop publishing after this long")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-vacuum-empty", dest="vacuum_empty", action="store_false",
                        help="skip the VACUUM ANALYZE of the freshly migrated, still empty database")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args(argv)
    runs = [r for r in args.runs.split(",") if r]
    if not runs or set(runs) - set(RUNS):
        parser.error(f"--runs takes {', '.join(RUNS)}")
    if args.skus < 3:
        parser.error("--skus must be at least 3")
    opts = Options(args.orders, args.skus, args.processes, args.interval, args.backlog, args.confirm_batch,
                   args.max_seconds, args.seed, args.server, args.vacuum_empty)
    return opts, runs, args.json


def main(argv: list[str] | None = None) -> int:
    opts, runs, json_path = parse(argv)
    with devservices.provide_services(log=log) as services:
        results = [one_run(services, name, opts) for name in runs]
    for run in results:
        print(render(run))
    if json_path:
        with open(json_path, "w") as f:
            json.dump({"options": dataclasses.asdict(opts), "runs": results}, f, indent=2)
    return 1 if any(run["problems"] for run in results) else 0


if __name__ == "__main__":
    sys.exit(main())
