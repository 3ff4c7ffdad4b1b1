"""Order-intake benchmark: Conveyor's batched workers against a plain reference consumer,
measured in the same run on a fresh database and vhost per measurement.

    make bench                       # defaults: 20,000 orders, 3 repeats
    python -m bench.orders_bench --orders 20000 --repeat 3 --json bench-result.json

Prints orders/s end to end (queue pre-loaded, clock from worker start to the last order
decided), publish-to-commit latency p50/p95/p99 at a fixed offered load and flat out,
worker CPU seconds and peak RSS, and the ratios. The yardstick (``--no-yardstick`` skips it):
the 2-process run's orders replayed as Conveyor's own batch transactions with no broker or
worker Python in the loop (``bench/db_only.py``), and Conveyor's 2-process rate as a
percentage of that database-only rate (target ≥ 80 %). A wrong result (an order not decided
exactly once, oversold stock, reconcile drift) fails the benchmark whatever its speed.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import threading
import time
from collections.abc import Callable

import pika
import psycopg

from bench import db_only, harness
from conveyor import devservices
from conveyor.db.notify import LISTEN_OUTBOX

CONVEYOR = ["-m", "conveyor", "run", "orders"]
REFERENCE = ["-m", "bench.reference_consumer"]


def catalogue(mix: str, orders: int) -> tuple[dict[str, int], Callable[[], dict]]:
    rng = random.Random(1)
    cold = [f"COLD-{i:05d}" for i in range(5000)]
    if mix == "low-contention":
        return {s: 1_000_000 for s in cold}, lambda: harness.order(rng.sample(cold, 3))
    hot = ["HOT-1", "HOT-2", "HOT-3"]
    stock = {s: 1_000_000 for s in cold} | {h: int(orders * 0.7 / 3) for h in hot}
    return stock, lambda: harness.order([rng.choice(hot), *rng.sample(cold, 2)])


def throughput(services, *, mix: str, argv: list[str], processes: int, orders: int,
               env: dict | None = None, bodies: list[dict] | None = None) -> dict:
    """``bodies``: the orders to preload (default: ``orders`` new ones of the mix)."""
    stock, make = catalogue(mix, orders)
    with harness.stage(services) as stage:
        stage.prepare(stock)
        harness.preload(stage.amqp_url, bodies if bodies is not None else [make() for _ in range(orders)])
        stage.start(argv, count=processes, extra_env=env)
        stage.wait_consuming()  # the clock and the CPU count start when every worker consumes
        servers_before, workers_before = harness.server_cpu_seconds(), stage.cpu_seconds()
        seconds = harness.wait_decided(stage.database_url, orders)
        usage, workers = stage.usage(), stage.cpu_seconds() - workers_before
        servers = {k: v - servers_before[k] for k, v in harness.server_cpu_seconds().items()}
        stage.stop()
        problems = harness.verify(stage.database_url, orders)
    return {"orders_per_s": round(orders / seconds, 1), "seconds": round(seconds, 2),
            "cpu_ms_per_order": round(workers * 1000 / orders, 3),
            "cpu_ms_per_order_with_startup": round(usage["cpu_seconds"] * 1000 / orders, 3),
            "postgres_cpu_ms_per_order": round(servers["postgres"] * 1000 / orders, 3),
            "rabbitmq_cpu_ms_per_order": round(servers["rabbitmq"] * 1000 / orders, 3),
            "peak_rss_mb": usage["peak_rss_mb"], "problems": problems}


def latency(services, *, rate: float, seconds: float, processes: int) -> dict:
    """Publish at `rate`/s (0: flat out) while workers run; time each order until it is visible."""
    stock, make = catalogue("low-contention", int(max(rate, 2000) * seconds))
    with harness.stage(services) as stage:
        stage.prepare(stock)
        stage.start(CONVEYOR, count=processes)
        stage.wait_consuming()
        sent: dict[str, float] = {}
        seen: dict[str, float] = {}
        done = threading.Event()
        poller = threading.Thread(target=_poll_visible, args=(stage.database_url, sent, seen, done))
        poller.start()
        total = _publish_paced(stage.amqp_url, make, sent, rate=rate, seconds=seconds)
        harness.wait_decided(stage.database_url, total)
        time.sleep(0.1)
        done.set()
        poller.join()
        stage.stop()
        problems = harness.verify(stage.database_url, total)
    values = [(seen[o] - sent[o]) * 1000 for o in sent if o in seen]
    return {"offered_per_s": rate or "max", "orders": total, **harness.percentiles(values),
            "problems": problems + ([] if len(values) == total else [f"{total - len(values)} not timed"])}


def _publish_paced(amqp_url: str, make, sent: dict, *, rate: float, seconds: float) -> int:
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = connection.channel()
    count = int(rate * seconds) if rate else 10_000
    started = time.monotonic()
    for i in range(count):
        if rate:
            time.sleep(max(0.0, started + i / rate - time.monotonic()))
        body = make()
        sent[body["order_id"]] = time.monotonic()
        harness.publish(channel, body)
        if i % 200 == 0:
            connection.process_data_events(0)
    connection.close()
    return count


def _poll_visible(database_url: str, sent: dict, seen: dict, done: threading.Event) -> None:
    """Each commit that writes an outbox row NOTIFYs ``OUTBOX_CHANNEL``: woken by it (or
    every 5 ms at the latest), ask which pending orders are committed, so visibility ≈ commit
    time. Only the still-pending ids are sent, and only about once per commit, so the
    measuring costs the server little (polling every 2 ms competed with the workers for the
    two cores once a backlog made each poll large)."""
    pending: set[str] = set()
    known = 0
    with psycopg.connect(database_url, autocommit=True) as conn, \
            psycopg.connect(database_url, autocommit=True) as listener:
        listener.execute(LISTEN_OUTBOX)
        while not done.is_set():
            for _ in listener.notifies(timeout=0.005, stop_after=1):
                pass
            now = time.monotonic()
            ids = list(sent)  # insertion-ordered: the new ones are at the end
            pending.update(ids[known:])
            known = len(ids)
            if pending:
                for (order_id,) in conn.execute("SELECT order_id::text FROM orders WHERE order_id = ANY(%s::uuid[])",
                                                (list(pending),)):
                    seen[order_id] = now
                    pending.discard(order_id)


def summarise(runs: list[dict], key: str, *, digits: int = 1) -> dict:
    values = [r[key] for r in runs]
    return {"median": round(statistics.median(values), digits), "min": min(values), "max": max(values)}


def capacity_under_load(services, *, seconds: float, processes: int = 2) -> dict:
    """Orders/s the workers decide while a publisher on the same machine sends flat out
    beside them (as in the latency runs): the capacity the latency targets are relative to.
    Counted over the publishing window only; the backlog left is drained and verified."""
    stock, make = catalogue("low-contention", 100_000)
    with harness.stage(services) as stage:
        stage.prepare(stock)
        stage.start(CONVEYOR, count=processes)
        stage.wait_consuming()
        with psycopg.connect(stage.database_url, autocommit=True) as conn:
            sent: dict[str, float] = {}
            before = harness.decided(conn)
            started = time.monotonic()
            total = _publish_for(stage.amqp_url, make, sent, seconds=seconds)
            window = time.monotonic() - started
            in_window = harness.decided(conn) - before
        harness.wait_decided(stage.database_url, total)
        stage.stop()
        problems = harness.verify(stage.database_url, total)
    return {"orders_per_s": round(in_window / window, 1), "published_per_s": round(total / window, 1),
            "orders": total, "problems": problems}


def _publish_for(amqp_url: str, make, sent: dict, *, seconds: float) -> int:
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = connection.channel()
    deadline, count = time.monotonic() + seconds, 0
    while time.monotonic() < deadline:
        for _ in range(200):
            body = make()
            sent[body["order_id"]] = time.monotonic()
            harness.publish(channel, body)
            count += 1
        connection.process_data_events(0)
    connection.close()
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=20_000)
    parser.add_argument("--reference-orders", type=int, default=5_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--mixes", default="low-contention,hot-sku")
    parser.add_argument("--latency-seconds", type=float, default=10)
    parser.add_argument("--latency-rates", default="50%,80%",
                        help="offered load of the publish→commit latency runs, comma-separated: orders/s, or "
                             "N%% of the capacity measured in this run with the publisher running beside the "
                             "workers (default 50%%,80%%)")
    parser.add_argument("--no-flat-out", dest="flat_out", action="store_false",
                        help="skip the latency run that publishes flat out (a backlog: it measures the queue)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--no-yardstick", dest="yardstick", action="store_false",
                        help="skip the database-only replay of Conveyor's batch transactions (bench/db_only.py)")
    args = parser.parse_args(argv)
    results: dict = {"machine": _machine(), "throughput": {}, "latency": {}}
    with devservices.provide_services(log=lambda s: print(s, file=sys.stderr)) as services:
        for mix in args.mixes.split(","):
            results["throughput"][mix] = _compare(services, mix, args)
        capacity = None
        if "%" in args.latency_rates:
            results["capacity_under_load"] = _capacity_repeated(services, args)
            capacity = results["capacity_under_load"]["orders_per_s"]["median"]
        for label, rate in offered_rates(args.latency_rates, capacity):
            results["latency"][label] = _latency_repeated(services, rate, args)
        if args.flat_out:
            flat = latency(services, rate=0, seconds=args.latency_seconds, processes=2)
            results["latency"]["flat_out"] = {"offered_per_s": "max", "runs": [flat],
                                              **{k: flat[k] for k in ("p50", "p95", "p99")}}
    problems = [p for mix in results["throughput"].values() for run in mix["runs"] for p in run["problems"]]
    problems += [p for entry in results["latency"].values() for run in entry["runs"] for p in run["problems"]]
    problems += [p for run in results.get("capacity_under_load", {}).get("runs", []) for p in run["problems"]]
    results["ok"] = not problems
    print(render(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0 if not problems else 1


def offered_rates(spec: str, capacity: float | None) -> list[tuple[str, float]]:
    """``"50%,80%,300"`` → ``[("50%_of_capacity", 0.5 × capacity), …, ("offered_300", 300)]``."""
    rates = []
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        if part.endswith("%"):
            assert capacity is not None  # measured first when a rate is relative
            rates.append((f"{part[:-1]}%_of_capacity", round(capacity * float(part[:-1]) / 100, 1)))
        else:
            rates.append((f"offered_{part}", float(part)))
    return rates


def _capacity_repeated(services, args) -> dict:
    runs = []
    for repeat in range(args.repeat):
        print(f"[capacity with the publisher running] run {repeat + 1}/{args.repeat}", file=sys.stderr, flush=True)
        runs.append(capacity_under_load(services, seconds=args.latency_seconds))
    return {"runs": runs, "orders_per_s": summarise(runs, "orders_per_s")}


def _latency_repeated(services, rate: float, args) -> dict:
    runs = []
    for repeat in range(args.repeat):
        print(f"[latency] offered {rate}/s, run {repeat + 1}/{args.repeat}", file=sys.stderr, flush=True)
        runs.append(latency(services, rate=rate, seconds=args.latency_seconds, processes=2))
    return {"offered_per_s": rate, "runs": runs, **{k: summarise(runs, k) for k in ("p50", "p95", "p99")}}


def _compare(services, mix: str, args) -> dict:
    runs = []
    for repeat in range(args.repeat):
        print(f"[{mix}] run {repeat + 1}/{args.repeat}", file=sys.stderr, flush=True)
        reference = throughput(services, mix=mix, argv=REFERENCE, processes=1, orders=args.reference_orders)
        one = throughput(services, mix=mix, argv=CONVEYOR, processes=1, orders=args.orders)
        stock, make = catalogue(mix, args.orders)
        bodies = [make() for _ in range(args.orders)]  # the 2-process run's orders, replayed by the yardstick
        two = throughput(services, mix=mix, argv=CONVEYOR, processes=2, orders=args.orders, bodies=bodies)
        runs.append({"reference_1p": reference, "conveyor_1p": one, "conveyor_2p": two,
                     "ratio_2p_vs_reference": round(two["orders_per_s"] / reference["orders_per_s"], 2),
                     "speedup_1p_to_2p": round(two["orders_per_s"] / one["orders_per_s"], 2),
                     "problems": reference["problems"] + one["problems"] + two["problems"]})
        if args.yardstick:
            runs[-1].update(_yardstick(services, stock, bodies, two))
            runs[-1]["problems"] += [f"db-only replay: {p}" for p in runs[-1]["db_only"]["problems"]]
    flat = {name: [r[name] for r in runs] for name in ("reference_1p", "conveyor_1p", "conveyor_2p")}
    yardstick = {key: summarise(runs, key) for key in ("db_only_orders_per_s", "e2e_over_db_only")
                 if args.yardstick}
    return {"runs": runs, **yardstick,
            "orders_per_s": {name: summarise(v, "orders_per_s") for name, v in flat.items()},
            "ratio_2p_vs_reference": summarise(runs, "ratio_2p_vs_reference"),
            "speedup_1p_to_2p": summarise(runs, "speedup_1p_to_2p"),
            "cpu_ms_per_order": {name: summarise(v, "cpu_ms_per_order", digits=3) for name, v in flat.items()},
            "peak_rss_mb": {name: max(r["peak_rss_mb"] for r in v) for name, v in flat.items()}}


def _yardstick(services, stock: dict[str, int], bodies: list[dict], two: dict) -> dict:
    """The database-only rate for the same orders (bench/db_only.py, 2 processes) and
    Conveyor's 2-process rate as a percentage of it (target ≥ 80 %)."""
    replayed = db_only.measure(services, stock=stock, bodies=bodies, processes=2)
    return {"db_only": replayed, "db_only_orders_per_s": replayed["orders_per_s"],
            "e2e_over_db_only": round(100 * two["orders_per_s"] / replayed["orders_per_s"], 1)}


def render(results: dict) -> str:
    lines = ["", "Conveyor order-intake benchmark", f"  machine: {results['machine']}"]
    for mix, data in results["throughput"].items():
        ops = data["orders_per_s"]
        lines.append(f"  [{mix}] orders/s median (min–max) over {len(data['runs'])} runs")
        for name in ("reference_1p", "conveyor_1p", "conveyor_2p"):
            o = ops[name]
            lines.append(f"    {name:<14} {o['median']:>8} ({o['min']}–{o['max']})   CPU "
                         f"{data['cpu_ms_per_order'][name]['median']} ms/order, "
                         f"peak RSS {data['peak_rss_mb'][name]} MB")
        r, s = data["ratio_2p_vs_reference"], data["speedup_1p_to_2p"]
        lines.append(f"    ratio 2 processes / reference {r['median']}× ({r['min']}–{r['max']}); "
                     f"speed-up 1→2 processes {s['median']}× ({s['min']}–{s['max']})")
        if "db_only_orders_per_s" in data:
            d, e = data["db_only_orders_per_s"], data["e2e_over_db_only"]
            lines.append(f"    {'db_only_2p':<14} {d['median']:>8} ({d['min']}–{d['max']})   database-only replay; "
                         f"conveyor_2p = {e['median']} % of it ({e['min']}–{e['max']} %), target ≥ 80 %")
    if "capacity_under_load" in results:
        lines.append(f"  capacity with the publisher running beside the workers (2 processes): "
                     f"{_spread(results['capacity_under_load']['orders_per_s'])} orders/s")
    for name, entry in results["latency"].items():
        lines.append(f"  publish→commit latency, {name} ({entry['offered_per_s']}/s offered, "
                     f"{len(entry['runs'])} runs of {entry['runs'][0]['orders']} orders): "
                     + ", ".join(f"{k} {_spread(entry[k])} ms" for k in ("p50", "p95", "p99")))
    verdict = "OK (every order decided once, no oversell, no drift)" if results["ok"] else "WRONG RESULT"
    lines.append(f"  verdict: {verdict}")
    return "\n".join(lines)


def _spread(value) -> str:
    """A median (min–max) summary, or a single figure."""
    if isinstance(value, dict):
        return f"{value['median']} ({value['min']}–{value['max']})"
    return str(value)


def _machine() -> str:
    import os
    import platform
    return f"{platform.node()} {os.cpu_count()} CPUs, Python {platform.python_version()}"


if __name__ == "__main__":
    sys.exit(main())
