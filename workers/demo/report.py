"""The demo's summary: what the database and the bus say happened, checked for consistency.

Stock reconciliation per SKU: on hand must equal the seeded stock minus what shipped
orders took, reserved must equal what live (RESERVED/PAID) orders hold; plus the checks
of ``conveyor reconcile``.
"""

from __future__ import annotations

import statistics
from typing import Any

from conveyor.db import views
from conveyor.db.connection import connect
from conveyor.db.reconcile import run_checks
from conveyor.workers.runtime.amqp import queue_depth
from conveyor.workers.runtime.topology import dlq_name

STATES = ("RESERVED", "REJECTED", "PAID", "SHIPPED", "DELIVERED", "CANCELLED", "EXPIRED")
QUEUES = ("conveyor.orders", "conveyor.payments", "conveyor.shipments")


def summarise(env, orders, catalogue, sent_at, world, *, publish_seconds: float) -> dict:
    with connect(env.database_url) as conn:
        seen = views.demo_counts(conn, seeded_stock=catalogue.stock)
        drift = {name: len(rows) for name, rows in run_checks(conn).items() if rows}
    counts, oversold, duplicates, implied = seen.by_status, seen.oversold_skus, seen.duplicate_orders, seen.stock
    mismatched = [level.sku for level in implied if not level.matches]
    decided = world.decided_at
    latencies = sorted((decided[o] - sent_at[o]) * 1000 for o in sent_at if o in decided)
    first, last = min(sent_at.values()), max(decided.values(), default=0.0)
    summary: dict[str, Any] = {
        "orders_published": len(orders),
        "orders_decided": sum(counts.values()),
        "final_states": {state: counts.get(state, 0) for state in STATES},
        "orders_in_final_state": len(world.final),
        "dead_lettered": {q: queue_depth(env.amqp_url, dlq_name(q)) for q in QUEUES},
        "oversold_skus": oversold,
        "duplicate_orders": duplicates,
        "customers_sealed": seen.sealed_customers,
        "skus_checked": len(implied),
        "skus_not_matching_orders": mismatched,
        "reconcile_drift": drift,
        "publish_rate_per_s": round(len(orders) / publish_seconds, 1) if publish_seconds else None,
        "decision_throughput_per_s": round(len(decided) / (last - first), 1) if last > first else None,
        "decision_latency_ms": percentiles(latencies),
    }
    summary["ok"] = (summary["orders_decided"] == len(orders) == len(world.final) == seen.sealed_customers
                     and oversold == 0
                     and duplicates == 0 and not mismatched and not drift
                     and not any(summary["dead_lettered"].values()))
    return summary


def render(s: dict) -> str:
    lat = s["decision_latency_ms"]
    states = "\n".join(f"    {state:<20}{n:>8}" for state, n in s["final_states"].items() if n)
    dead = ", ".join(f"{q.split('.')[-1]} {n}" for q, n in s["dead_lettered"].items())
    return "\n".join([
        "",
        "Conveyor demo summary",
        f"  orders published      {s['orders_published']:>8}   ({s['publish_rate_per_s']} /s offered)",
        f"  orders decided        {s['orders_decided']:>8}   ({s['orders_in_final_state']} reached a final state)",
        "  per state:",
        states,
        f"  dead-lettered         {dead}",
        f"  oversold SKUs         {s['oversold_skus']:>8}   (must be 0)",
        f"  duplicate orders      {s['duplicate_orders']:>8}   (must be 0)",
        f"  customers' data       {s['customers_sealed']:>8}   orders' customer data stored sealed (docs/privacy.md)",
        f"  stock reconciliation  {s['skus_checked'] - len(s['skus_not_matching_orders'])}/{s['skus_checked']}"
        f" SKUs match what the orders imply; ledger/reservation drift: {s['reconcile_drift'] or 'none'}",
        f"  decision throughput   {s['decision_throughput_per_s']} orders/s (publish → order.reserved/rejected)",
        f"  decision latency      p50 {lat['p50']} ms, p95 {lat['p95']} ms, p99 {lat['p99']} ms, max {lat['max']} ms",
        f"  verdict               {'OK' if s['ok'] else 'INCONSISTENT'}",
    ])


def percentiles(values: list[float]) -> dict:
    if len(values) < 2:
        return {"p50": None, "p95": None, "p99": None, "max": None}
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50": round(cuts[49], 1), "p95": round(cuts[94], 1), "p99": round(cuts[98], 1),
            "max": round(values[-1], 1)}
