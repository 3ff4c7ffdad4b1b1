"""Relay benchmark — a script, not a test. Run: ``make bench-relay`` (or
``.venv/bin/python bench/relay_bench.py [--rate 500] [--seconds 8] ...``).

1. Latency: stock changes at an offered rate (one UPDATE per transaction, as a worker
   would), the relay running as ``conveyor run relay``, a partner consuming everything on
   ``inventory``. Latency = partner receives the message − the change's COMMIT returned.
2. Throughput: a backlog of changes built while no relay runs, then ``conveyor run relay``
   drains it with publisher confirms; changes/s = backlog / (last batch committed − first
   claim), read from the relay's lease row (process start-up not counted). Run
   for many SKUs and for a few hot ones (rows of one SKU go out one confirm round apart).

Servers come from CONVEYOR_DATABASE_URL/CONVEYOR_AMQP_URL when they answer, else are
started from the local binaries; the benchmark uses its own database and vhost and drops
them. Prints a human summary, then one JSON document.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from contextlib import ExitStack, contextmanager

import pika
import psycopg

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from conveyor import devservices  # noqa: E402
from conveyor.db.migrate import migrate  # noqa: E402
from conveyor.workers.runtime import topology  # noqa: E402
from conveyor.workers.runtime.amqp import queue_depth  # noqa: E402

TENANT = "bench"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=int, default=500, help="offered changes/s for the latency run")
    parser.add_argument("--seconds", type=float, default=8.0, help="length of the latency run")
    parser.add_argument("--skus", type=int, default=200, help="SKUs changed in the latency run")
    parser.add_argument("--backlog", type=int, default=30_000, help="backlog rows for the many-SKU throughput run")
    parser.add_argument("--backlog-skus", type=int, default=1_000, help="SKUs in the many-SKU backlog")
    parser.add_argument("--hot-backlog", type=int, default=10_000, help="backlog rows for the hot-SKU run (0: skip)")
    parser.add_argument("--hot-skus", type=int, default=10, help="SKUs in the hot-SKU backlog")
    args = parser.parse_args()

    with ExitStack() as stack:
        services = stack.enter_context(devservices.provide_services(log=lambda line: print(line, file=sys.stderr)))
        database_url = stack.enter_context(devservices.fresh_database(services, prefix="conveyor_bench"))
        amqp_url = stack.enter_context(devservices.fresh_vhost(services, prefix="conveyor-bench"))
        migrate(database_url)
        queue = partner_queue(amqp_url)
        results = {"latency": latency_run(database_url, amqp_url, queue, args)}
        results["throughput"] = throughput_run(database_url, amqp_url, queue, args.backlog, args.backlog_skus)
        if args.hot_backlog:
            results["throughput_hot_skus"] = throughput_run(database_url, amqp_url, queue, args.hot_backlog,
                                                            args.hot_skus)
    report(results)
    return 0


# --------------------------------------------------------------------------- runs


def latency_run(database_url: str, amqp_url: str, queue: str, args: argparse.Namespace) -> dict:
    skus = seed(database_url, args.skus, prefix="L")
    purge(amqp_url, queue)
    total = int(args.rate * args.seconds)
    committed: dict[tuple[str, int], float] = {}
    with relay_process(database_url, amqp_url):
        wait_for_empty_outbox(database_url, timeout=60)
        # The partner is a process of its own, so it does not slow the load generator down.
        received, partner = start_partner(amqp_url, queue, expect=total, timeout=args.seconds + 60)
        started = time.monotonic()
        with psycopg.connect(database_url, autocommit=True) as conn:
            for n in range(total):
                delay = started + n / args.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                sku = skus[n % len(skus)]
                with conn.transaction():
                    version = conn.execute(
                        "UPDATE stock_levels SET on_hand = on_hand + 1, last_cause = %s "
                        "WHERE tenant_id = %s AND sku = %s RETURNING version", (f"bench:{n}", TENANT, sku)
                    ).fetchone()[0]
                committed[(sku, version)] = time.time()
        offered_s = time.monotonic() - started
        arrivals = {(sku, version): at for sku, version, at in received.recv()}
        partner.join(10)
    latencies = sorted((arrivals[key] - at) * 1000 for key, at in committed.items() if key in arrivals)
    return {
        "offered_per_s": args.rate, "achieved_per_s": round(total / offered_s, 1), "changes": total,
        "received": len(latencies), "skus": args.skus,
        "p50_ms": pct(latencies, 50), "p90_ms": pct(latencies, 90), "p99_ms": pct(latencies, 99),
        "max_ms": round(latencies[-1], 2) if latencies else None,
    }


def throughput_run(database_url: str, amqp_url: str, queue: str, rows: int, sku_count: int) -> dict:
    skus = seed(database_url, sku_count, prefix=f"T{sku_count}-")
    purge(amqp_url, queue)
    rounds = max(1, rows // sku_count)
    with psycopg.connect(database_url, autocommit=True) as conn, conn.transaction():
        conn.execute("DELETE FROM outbox")  # the seed rows: measure only the backlog
        for n in range(rounds):
            conn.execute("UPDATE stock_levels SET on_hand = on_hand + 1, last_cause = %s "
                         "WHERE tenant_id = %s AND sku = ANY(%s)", (f"bench:{n}", TENANT, skus))
    backlog = pending(database_url)
    with relay_process(database_url, amqp_url):
        wait_for_empty_outbox(database_url, timeout=300)
        # From the relay's first claim (it took the lease) to its last delete: the
        # relay's start-up and our polling are not part of it.
        with psycopg.connect(database_url, autocommit=True) as conn:
            elapsed = conn.execute("SELECT extract(epoch FROM last_sent_at - acquired_at)::float8 "
                                   "FROM relay_lease").fetchone()[0]
    depth = queue_depth(amqp_url, queue)
    return {"backlog": backlog, "skus": sku_count, "rows_per_sku": rounds, "seconds": round(elapsed, 3),
            "changes_per_s": round(backlog / elapsed), "partner_queue_depth": depth}


# --------------------------------------------------------------------------- pieces


def start_partner(amqp_url: str, queue: str, *, expect: int, timeout: float):
    """A partner consuming ``queue`` in its own process; the pipe yields, once it has
    ``expect`` changes made by the load (or timed out), [(sku, version, arrival time)]."""
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_partner, args=(amqp_url, queue, expect, timeout, sender), daemon=True)
    process.start()
    if not receiver.poll(60) or receiver.recv() != "ready":  # spawning and connecting take ~1 s
        raise SystemExit("the partner process did not start")
    return receiver, process


def _partner(amqp_url: str, queue: str, expect: int, timeout: float, sender) -> None:
    arrivals: dict[tuple[str, int], float] = {}
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = connection.channel()
    channel.basic_qos(prefetch_count=500)
    deadline = time.monotonic() + timeout
    consuming = channel.consume(queue, auto_ack=True, inactivity_timeout=0.1)
    next(consuming)  # Basic.Consume is sent now (nothing is published yet: an inactivity tick)
    sender.send("ready")
    for method, _props, body in consuming:
        if method is not None:
            at = time.time()
            change = json.loads(body)
            if (change.get("cause") or "").startswith("bench:"):
                arrivals.setdefault((change["sku"], change["version"]), at)
        if len(arrivals) >= expect or time.monotonic() > deadline:
            break
    connection.close()
    sender.send([(sku, version, at) for (sku, version), at in arrivals.items()])


@contextmanager
def relay_process(database_url: str, amqp_url: str):
    env = {**os.environ, "CONVEYOR_DATABASE_URL": database_url, "CONVEYOR_AMQP_URL": amqp_url,
           "CONVEYOR_LOG_LEVEL": "WARNING", "CONVEYOR_LOG_FORMAT": "json"}
    process = subprocess.Popen([sys.executable, "-m", "conveyor", "run", "relay"], env=env, cwd=ROOT)
    try:
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)


def seed(database_url: str, count: int, *, prefix: str) -> list[str]:
    skus = [f"{prefix}{n:05d}" for n in range(count)]
    with psycopg.connect(database_url, autocommit=True) as conn, conn.transaction():
        conn.execute("INSERT INTO tenants (tenant_id, name) VALUES (%s, %s) ON CONFLICT DO NOTHING", (TENANT, TENANT))
        conn.execute("INSERT INTO products (tenant_id, sku) SELECT %s, unnest(%s::text[])", (TENANT, skus))
        conn.execute("INSERT INTO stock_levels (tenant_id, sku, on_hand) SELECT %s, unnest(%s::text[]), 1000000",
                     (TENANT, skus))
    return skus


def partner_queue(amqp_url: str) -> str:
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        channel = connection.channel()
        topology.declare_exchanges(channel)
        channel.queue_declare("bench-partner", durable=True)
        channel.queue_bind("bench-partner", "inventory", routing_key="stock.changed.#")
    finally:
        connection.close()
    return "bench-partner"


def purge(amqp_url: str, queue: str) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        connection.channel().queue_purge(queue)
    finally:
        connection.close()


def pending(database_url: str) -> int:
    with psycopg.connect(database_url, autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM outbox").fetchone()[0]


def wait_for_empty_outbox(database_url: str, *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while pending(database_url):
        if time.monotonic() > deadline:
            raise SystemExit(f"the outbox did not drain within {timeout} s")
        time.sleep(0.01)


def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    return round(values[min(len(values) - 1, int(len(values) * p / 100))], 2)


def report(results: dict) -> None:
    lat = results["latency"]
    print(f"latency  at {lat['offered_per_s']}/s offered ({lat['achieved_per_s']}/s achieved, "
          f"{lat['changes']} changes over {lat['skus']} SKUs, {lat['received']} received): "
          f"p50 {lat['p50_ms']} ms, p90 {lat['p90_ms']} ms, p99 {lat['p99_ms']} ms, max {lat['max_ms']} ms")
    for name in ("throughput", "throughput_hot_skus"):
        if name in results:
            t = results[name]
            print(f"{name:<20} {t['changes_per_s']} changes/s with confirms "
                  f"({t['backlog']} rows over {t['skus']} SKUs, {t['rows_per_sku']} per SKU, {t['seconds']} s)")
    print(json.dumps({"benchmark": "relay", "machine_cpus": os.cpu_count(), **results}, indent=2))


if __name__ == "__main__":
    sys.exit(main())
