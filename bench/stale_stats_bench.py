"""Speed on a database vacuumed while empty, with Conveyor's statistics keeper off and on.

    python -m bench.stale_stats_bench --orders 20000 --repeat 1

Each run: a fresh database, migrated, then ``VACUUM`` while every table is empty (what a
restore or upgrade runbook's ``vacuumdb`` does), 1,000 SKUs seeded, ``--orders``
``order.created`` of 3 SKUs each preloaded, then 2 worker processes. It prints orders/s
overall and in the first and last tenth of the run (from the orders' commit times), and
last/first: flat is 1.0. Keeper off is ``CONVEYOR_ANALYZE_INTERVAL=0``; on is the default.
The machine's PostgreSQL runs with autovacuum off, so nothing else re-analyses meanwhile.
"""

from __future__ import annotations

import argparse
import random
import statistics

import psycopg

from bench import harness
from conveyor import devservices

CONVEYOR = ["-m", "conveyor", "run", "orders"]


def one_run(services: devservices.Services, *, orders: int, skus: int, keeper: bool) -> dict:
    rng = random.Random(1)
    catalogue = [f"SKU-{i:05d}" for i in range(skus)]
    with harness.stage(services) as stage:
        stage.prepare({})
        with psycopg.connect(stage.database_url, autocommit=True) as conn:
            conn.execute("VACUUM")  # the whole database, still empty
        stage.seed({sku: 10_000_000 for sku in catalogue})
        harness.preload(stage.amqp_url, [harness.order(rng.sample(catalogue, 3)) for _ in range(orders)])
        stage.start(CONVEYOR, count=2, extra_env={"CONVEYOR_ANALYZE_INTERVAL": "5" if keeper else "0"})
        seconds = harness.wait_decided(stage.database_url, orders, timeout=1800)
        stage.stop()
        problems = harness.verify(stage.database_url, orders)
        first, last = tenths(stage.database_url)
    return {"keeper": keeper, "orders_per_s": round(orders / seconds, 1), "first_tenth": first,
            "last_tenth": last, "last_over_first": round(last / first, 2), "problems": problems}


def tenths(database_url: str) -> tuple[float, float]:
    """Orders/s in the first and the last tenth of the run's wall time."""
    with psycopg.connect(database_url) as conn:
        times = [row[0].timestamp() for row in conn.execute("SELECT created_at FROM orders ORDER BY created_at")]
    start, end = times[0], times[-1]
    tenth = max((end - start) / 10, 1e-6)
    first = sum(1 for t in times if t <= start + tenth) / tenth
    last = sum(1 for t in times if t >= end - tenth) / tenth
    return round(first, 1), round(last, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=20_000)
    parser.add_argument("--skus", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    with devservices.provide_services() as services:
        runs = [one_run(services, orders=args.orders, skus=args.skus, keeper=keeper)
                for _ in range(args.repeat) for keeper in (False, True)]
    for keeper in (False, True):
        mine = [r for r in runs if r["keeper"] is keeper]
        print(f"keeper {'on ' if keeper else 'off'}: " + "; ".join(
            f"{r['orders_per_s']} orders/s, first tenth {r['first_tenth']}/s, last tenth {r['last_tenth']}/s "
            f"(last/first {r['last_over_first']}){' PROBLEMS ' + str(r['problems']) if r['problems'] else ''}"
            for r in mine))
        if len(mine) > 1:
            print(f"  median last/first {statistics.median(r['last_over_first'] for r in mine)}")
    return 1 if any(r["problems"] for r in runs) else 0


if __name__ == "__main__":
    raise SystemExit(main())
