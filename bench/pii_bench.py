"""What sealing customers' personal data costs the intake (issue 14): the order benchmark's
throughput and worker CPU per order for orders without a ``customer`` object and with one,
alternated in the same run, reported as ratios.

    python -m bench.pii_bench [--orders 10000] [--repeat 3] [--customers 5000] [--json FILE]

Both runs use 2 processes of ``conveyor run orders`` with the same key file, a preloaded
queue, the low-contention mix, the clock from the moment every worker consumes
(``bench.orders_bench.throughput``). With a ``customer`` object each batch adds two
statements (the customers' data keys, get or create; the sealed rows) and, per order, one
AES-GCM seal (and one unwrap per customer of the batch).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
from pathlib import Path

from bench import orders_bench
from conveyor import devservices
from conveyor.db.crypto import new_key_file


def with_customers(bodies: list[dict], customers: int, seed: int = 14) -> list[dict]:
    rng = random.Random(seed)
    for body in bodies:
        customer = f"customer-{rng.randint(1, customers)}"
        body["customer_id"] = customer
        body["customer"] = {"email": f"{customer}@example.test", "name": f"Bench {customer}",
                            "shipping_address": {"line1": "1 Bench Road", "city": "Benchville", "country": "DE"}}
    return bodies


def run_once(services, *, orders: int, customers: int, sealed: bool, key_file: str) -> dict:
    _, make = orders_bench.catalogue("low-contention", orders)
    bodies = [make() for _ in range(orders)]
    if sealed:
        bodies = with_customers(bodies, customers)
    return orders_bench.throughput(services, mix="low-contention", argv=orders_bench.CONVEYOR, processes=2,
                                   orders=orders, env={"CONVEYOR_PII_KEY_FILE": key_file}, bodies=bodies)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--customers", type=int, default=5_000, help="distinct customers among the orders")
    parser.add_argument("--json", dest="json_out", default=None)
    args = parser.parse_args(argv)
    key_file = str(Path(tempfile.mkdtemp(prefix="conveyor-pii-bench-")) / "keys.json")
    new_key_file(key_file, "bench")
    runs: dict[str, list[dict]] = {"plain": [], "customer": []}
    with devservices.provide_services(log=lambda line: print(line, file=sys.stderr)) as services:
        for i in range(args.repeat):
            for kind in ("plain", "customer"):
                result = run_once(services, orders=args.orders, customers=args.customers,
                                  sealed=kind == "customer", key_file=key_file)
                runs[kind].append(result)
                print(f"run {i + 1}/{args.repeat} {kind:<8}: {result['orders_per_s']:>8} orders/s, "
                      f"{result['cpu_ms_per_order']} ms CPU/order, problems {result['problems'] or 'none'}",
                      file=sys.stderr)
    summary = {kind: {"orders_per_s": statistics.median(r["orders_per_s"] for r in rs),
                      "cpu_ms_per_order": statistics.median(r["cpu_ms_per_order"] for r in rs)}
               for kind, rs in runs.items()}
    summary["ratio_throughput_customer_vs_plain"] = round(
        summary["customer"]["orders_per_s"] / summary["plain"]["orders_per_s"], 3)
    summary["ratio_cpu_customer_vs_plain"] = round(
        summary["customer"]["cpu_ms_per_order"] / summary["plain"]["cpu_ms_per_order"], 3)
    print(json.dumps(summary, indent=2))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"summary": summary, "runs": runs}, indent=2) + "\n")
    problems = [p for rs in runs.values() for r in rs for p in r["problems"]]
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
