"""Order intake with tax and FX against the same intake without them, in the same run
(alternating, a fresh database and vhost per measurement). docs/money.md, issue 18.

    flock /tmp/conveyor-bench.lock .venv/bin/python -m bench.money_bench --orders 10000 --repeat 3

``plain``: EUR orders of a tenant whose base currency is EUR and who has no tax rules (what
every order did before V019). ``money``: USD orders shipped to DE, the tenant's base EUR (a
USD->EUR rate of the day is looked up and the total converted), tax rules for DE
(19 % standard, 7 % reduced; one line of three reduced), prices exclusive. Target: money
within 10 % of plain (ratio ≥ 0.90, medians).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import uuid
from datetime import date, datetime, timezone
from decimal import Decimal

from bench import harness
from conveyor import devservices
from conveyor.db.connection import connect
from conveyor.db.money import FxRow, TaxRow, load_fx, load_tax, set_tenant

CONVEYOR = ["-m", "conveyor", "run", "orders"]
TODAY = date.today()


def orders(count: int, *, money: bool) -> tuple[dict[str, int], list[dict]]:
    rng = random.Random(1)
    skus = [f"COLD-{i:05d}" for i in range(5000)]
    bodies = []
    for _ in range(count):
        items = [{"sku": s, "quantity": 1, "unit_price": "1.00"} for s in rng.sample(skus, 3)]
        body = {"order_id": str(uuid.uuid4()), "customer_id": "bench", "currency": "EUR", "items": items,
                "placed_at": datetime.now(timezone.utc).isoformat()}
        if money:
            items[2]["tax_category"] = "reduced"
            body |= {"currency": "USD", "ship_to": {"country": "DE"}}
        bodies.append(body)
    return {s: 1_000_000 for s in skus}, bodies


def configure(database_url: str) -> None:
    with connect(database_url) as conn:
        set_tenant(conn, "default", base_currency="EUR", prices_include_tax=False)
        load_fx(conn, [FxRow(1, TODAY.replace(day=1), None, "USD", "EUR", Decimal("0.92"),
                             "bench")])
        load_tax(conn, "default", [TaxRow(1, TODAY.replace(day=1), None, "DE", "standard",
                                          Decimal(19), "bench"),
                                   TaxRow(2, TODAY.replace(day=1), None, "DE", "reduced",
                                          Decimal(7), "bench")])


def run(services, *, count: int, processes: int, money: bool) -> dict:
    stock, bodies = orders(count, money=money)
    with harness.stage(services) as stage:
        stage.prepare(stock)
        if money:
            configure(stage.database_url)
        harness.preload(stage.amqp_url, bodies)
        stage.start(CONVEYOR, count=processes)
        stage.wait_consuming()
        workers_before = stage.cpu_seconds()
        seconds = harness.wait_decided(stage.database_url, count)
        workers = stage.cpu_seconds() - workers_before
        stage.stop()
        problems = harness.verify(stage.database_url, count)
        with connect(stage.database_url) as conn:
            row = conn.execute("SELECT count(*) FILTER (WHERE tax_total > 0), count(*) FILTER (WHERE fx_missing),"
                               " count(*) FILTER (WHERE base_total IS NOT NULL) FROM orders.orders").fetchone()
    taxed, missing, converted = row if row else (0, 0, 0)
    if money and (taxed != count or converted != count or missing):
        problems.append(f"money: {taxed} taxed, {converted} converted, {missing} missing of {count}")
    return {"orders_per_s": round(count / seconds, 1), "seconds": round(seconds, 2),
            "cpu_ms_per_order": round(workers * 1000 / count, 3), "problems": problems}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args(argv)
    results: dict = {"plain": [], "money": []}
    with devservices.provide_services(log=lambda s: print(s, file=sys.stderr)) as services:
        for n in range(args.repeat):
            for variant in ("plain", "money"):
                print(f"[{variant}] run {n + 1}/{args.repeat}", file=sys.stderr, flush=True)
                results[variant].append(run(services, count=args.orders, processes=args.processes,
                                            money=variant == "money"))
    medians = {v: statistics.median(r["orders_per_s"] for r in results[v]) for v in ("plain", "money")}
    cpu = {v: statistics.median(r["cpu_ms_per_order"] for r in results[v]) for v in ("plain", "money")}
    ratio = medians["money"] / medians["plain"]
    problems = [p for v in results.values() for r in v for p in r["problems"]]
    summary = {"orders": args.orders, "processes": args.processes, "repeat": args.repeat,
               "orders_per_s": medians, "cpu_ms_per_order": cpu, "ratio": round(ratio, 3),
               "within_10_percent": ratio >= 0.9, "problems": problems, "runs": results}
    for v in ("plain", "money"):
        runs = ", ".join(str(r["orders_per_s"]) for r in results[v])
        print(f"{v:<6} median {medians[v]:>8.1f} orders/s  (runs: {runs})  worker CPU {cpu[v]} ms/order")
    print(f"money / plain = {ratio:.3f}  ({'within' if ratio >= 0.9 else 'NOT within'} 10 %)")
    if problems:
        print("problems:", *problems, sep="\n  ")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=2)
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
