"""The demo's summary: what the database and the bus say happened, checked for consistency."""

from __future__ import annotations

import statistics

import pika

from db.connection import connect
from workers.runtime.topology import dlq_name

COUNTS = "SELECT status, count(*) FROM orders GROUP BY status"
OVERSOLD = "SELECT count(*) FROM stock_levels WHERE reserved > on_hand OR on_hand < 0 OR reserved < 0"
RESERVATION_DRIFT = """
SELECT count(*) FROM stock_levels s
LEFT JOIN (SELECT tenant_id, sku, sum(quantity) AS held FROM reservations WHERE state = 'HELD'
           GROUP BY tenant_id, sku) r USING (tenant_id, sku)
WHERE s.reserved <> coalesce(r.held, 0)
"""
DUPLICATES = "SELECT count(*) - count(DISTINCT order_id) FROM orders"


def summarise(env, orders, catalogue, sent_at, arrived, *, publish_seconds: float) -> dict:
    with connect(env.database_url) as conn:
        counts = dict(conn.execute(COUNTS).fetchall())
        oversold = conn.execute(OVERSOLD).fetchone()[0]
        drift = conn.execute(RESERVATION_DRIFT).fetchone()[0]
        duplicates = conn.execute(DUPLICATES).fetchone()[0]
    latencies = sorted((arrived[o][1] - sent_at[o]) * 1000 for o in sent_at if o in arrived)
    first, last = min(sent_at.values()), max((t for _, t in arrived.values()), default=0.0)
    decided = sum(counts.values())
    summary = {
        "orders_published": len(orders),
        "orders_decided": decided,
        "accepted": counts.get("RESERVED", 0),
        "rejected": counts.get("REJECTED", 0),
        "events_received": len(arrived),
        "dead_lettered": _queue_depth(env.amqp_url, dlq_name("conveyor.orders")),
        "oversold_skus": oversold,
        "reservation_drift_skus": drift,
        "duplicate_orders": duplicates,
        "publish_rate_per_s": round(len(orders) / publish_seconds, 1) if publish_seconds else None,
        "throughput_per_s": round(len(arrived) / (last - first), 1) if last > first else None,
        "latency_ms": _percentiles(latencies),
        "skus": len(catalogue.skus),
        "stock_per_sku": catalogue.stock,
    }
    summary["ok"] = (decided == len(orders) == len(arrived) and oversold == 0 and drift == 0
                     and duplicates == 0)
    return summary


def render(s: dict) -> str:
    lat = s["latency_ms"]
    return "\n".join([
        "",
        "Conveyor demo summary",
        f"  orders published      {s['orders_published']:>8}   ({s['publish_rate_per_s']} /s offered)",
        f"  orders decided        {s['orders_decided']:>8}",
        f"    accepted (RESERVED) {s['accepted']:>8}",
        f"    rejected            {s['rejected']:>8}",
        f"  outcome events        {s['events_received']:>8}",
        f"  dead-lettered         {s['dead_lettered']:>8}",
        f"  oversold SKUs         {s['oversold_skus']:>8}   (must be 0)",
        f"  reservation drift     {s['reservation_drift_skus']:>8}   (must be 0)",
        f"  duplicate orders      {s['duplicate_orders']:>8}   (must be 0)",
        f"  throughput            {s['throughput_per_s']} orders/s end to end",
        f"  latency publish→event p50 {lat['p50']} ms, p95 {lat['p95']} ms, p99 {lat['p99']} ms, "
        f"max {lat['max']} ms",
        f"  verdict               {'OK' if s['ok'] else 'INCONSISTENT'}",
    ])


def _percentiles(values: list[float]) -> dict:
    if len(values) < 2:
        return {"p50": None, "p95": None, "p99": None, "max": None}
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50": round(cuts[49], 1), "p95": round(cuts[94], 1), "p99": round(cuts[98], 1),
            "max": round(values[-1], 1)}


def _queue_depth(amqp_url: str, queue: str) -> int:
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        return connection.channel().queue_declare(queue, passive=True).method.message_count
    finally:
        connection.close()
