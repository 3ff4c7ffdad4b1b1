"""Tenant fairness under a flood (issue 13): the other tenants' latency with one tenant sending
ten times its limit, against the same load without the flood, in the same run.

    python -m bench.fairness_bench [--limit 50] [--calm-rate 150] [--seconds 20] [--flood-seconds 10]

2 processes of ``conveyor run orders`` with ``CONVEYOR_TENANT_RATE_LIMITS=flood=LIMIT,*=100000``.
Phase 1: three calm tenants publish ``--calm-rate`` orders/s in total for ``--seconds``.
Phase 2: the same, while the ``flood`` tenant publishes 10 × LIMIT orders/s for
``--flood-seconds``. Latency is publish → commit (the order benchmark's NOTIFY-woken poller).
Then it waits until every flood order is recorded. Phase 3, for comparison: the same flood
with the workers restarted without a limit. Target: the calm tenants' p99 in phase 2
within 2× of phase 1, every flood order completed, nothing dead-lettered.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time

import pika

from bench import harness, orders_bench
from conveyor import devservices

CALM = ("calm-1", "calm-2", "calm-3")
SKUS = [f"S-{i:04d}" for i in range(1000)]


def order_for(tenant: str, rng: random.Random) -> dict:
    return {**harness.order(rng.sample(SKUS, 3)), "tenant_id": tenant}


def publish_paced(amqp_url: str, tenants: tuple[str, ...], *, rate: float, seconds: float, sent: dict,
                  tenant_of: dict, seed: int) -> None:
    rng = random.Random(seed)
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = connection.channel()
    started = time.monotonic()
    for i in range(int(rate * seconds)):
        time.sleep(max(0.0, started + i / rate - time.monotonic()))
        body = order_for(tenants[i % len(tenants)], rng)
        tenant_of[body["order_id"]] = body["tenant_id"]
        sent[body["order_id"]] = time.monotonic()
        harness.publish(channel, body)
        if i % 100 == 0:
            connection.process_data_events(0)
    connection.close()


def phase(stage, *, calm_rate: float, seconds: float, flood_rate: float, flood_seconds: float,
          seed: int) -> dict:
    """Publish the calm tenants' orders (and the flood, if any), wait until every one is
    recorded, and return the latencies: the calm tenants' percentiles, the flood's completion."""
    sent: dict[str, float] = {}
    tenant_of: dict[str, str] = {}
    seen: dict[str, float] = {}
    done = threading.Event()
    poller = threading.Thread(target=orders_bench._poll_visible, args=(stage.database_url, sent, seen, done))
    streams = [(CALM, calm_rate, seconds, seed)] + ([(("flood",), flood_rate, flood_seconds, seed + 1)]
                                                    if flood_rate else [])
    threads = [threading.Thread(target=publish_paced, args=(stage.amqp_url, tenants), kwargs={
        "rate": rate, "seconds": length, "sent": sent, "tenant_of": tenant_of, "seed": stream_seed})
        for tenants, rate, length, stream_seed in streams]
    poller.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    deadline = time.monotonic() + 900
    while len(seen) < len(sent) and time.monotonic() < deadline:
        time.sleep(0.2)
    done.set()
    poller.join()
    calm = [(seen[o] - at) * 1000 for o, at in sent.items() if tenant_of[o] != "flood" and o in seen]
    flood = [seen[o] - at for o, at in sent.items() if tenant_of[o] == "flood" and o in seen]
    return {"calm": {"orders": len(calm), **harness.percentiles(calm)},
            "flood": {"sent": sum(1 for o in sent if tenant_of[o] == "flood"), "completed": len(flood),
                      "last_completed_after_s": round(max(flood, default=0.0), 1)},
            "not_seen": len(sent) - len(seen)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=float, default=50, help="the flooding tenant's orders/s across the group")
    parser.add_argument("--calm-rate", type=float, default=150, help="orders/s of the three calm tenants together")
    parser.add_argument("--seconds", type=float, default=20, help="length of each phase's calm traffic")
    parser.add_argument("--flood-seconds", type=float, default=10, help="how long the flood lasts (10× the limit)")
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    env = {"CONVEYOR_TENANT_RATE_LIMITS": f"flood={args.limit:g},*=100000"}
    with devservices.provide_services(log=lambda s: print(s, file=sys.stderr)) as services, \
            harness.stage(services) as stage:
        stage.prepare({sku: 10_000_000 for sku in SKUS})
        with stage_connection(stage) as conn:
            for tenant in (*CALM, "flood"):
                conn.execute("INSERT INTO tenants (tenant_id, name) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                             (tenant, tenant))
                conn.execute("INSERT INTO products (tenant_id, sku) SELECT %s, unnest(%s::text[])", (tenant, SKUS))
                conn.execute("INSERT INTO stock_levels (tenant_id, sku, on_hand) "
                             "SELECT %s, unnest(%s::text[]), 10000000", (tenant, SKUS))
        stage.start(orders_bench.CONVEYOR, count=2, extra_env=env)
        stage.wait_consuming()
        quiet = phase(stage, calm_rate=args.calm_rate, seconds=args.seconds, flood_rate=0, flood_seconds=0, seed=1)
        print(f"without the flood: calm p99 {quiet['calm']['p99']:.1f} ms over {quiet['calm']['orders']} orders",
              flush=True)
        flooded = phase(stage, calm_rate=args.calm_rate, seconds=args.seconds, flood_rate=10 * args.limit,
                        flood_seconds=args.flood_seconds, seed=3)
        stage.stop()
        # The same flood without a limit, for comparison: what fairness changes.
        stage.start(orders_bench.CONVEYOR, count=2)
        stage.wait_consuming()
        unlimited = phase(stage, calm_rate=args.calm_rate, seconds=args.seconds, flood_rate=10 * args.limit,
                          flood_seconds=args.flood_seconds, seed=5)
        stage.stop()
        problems = harness.verify(stage.database_url, sum(
            p["calm"]["orders"] + p["flood"]["completed"] for p in (quiet, flooded, unlimited)))
    ratio = flooded["calm"]["p99"] / quiet["calm"]["p99"]
    print(f"with the flood ({10 * args.limit:g}/s for {args.flood_seconds:g}s, limit {args.limit:g}/s): calm p99 "
          f"{flooded['calm']['p99']:.1f} ms ({ratio:.2f}× without); flood {flooded['flood']['completed']}/"
          f"{flooded['flood']['sent']} completed, the last {flooded['flood']['last_completed_after_s']} s after "
          f"it was published")
    print(f"the same flood without a limit: calm p99 {unlimited['calm']['p99']:.1f} ms "
          f"({unlimited['calm']['p99'] / quiet['calm']['p99']:.2f}× without the flood)")
    ok = ratio <= 2 and flooded["flood"]["completed"] == flooded["flood"]["sent"] and not problems
    print(f"result: {'OK' if ok else 'TARGET MISSED'}" + (f"; problems: {problems}" if problems else ""))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"quiet": quiet, "flooded": flooded, "unlimited": unlimited, "p99_ratio": ratio,
                       "problems": problems}, f, indent=2)
    return 0 if not problems else 1


def stage_connection(stage):
    import psycopg

    return psycopg.connect(stage.database_url, autocommit=True)


if __name__ == "__main__":
    raise SystemExit(main())
