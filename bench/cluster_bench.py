"""Scaling figure (issue 17, part 6): the order intake on one RabbitMQ node, on a 3-node RabbitMQ
cluster, and on the cluster with the workers' database connections through PgBouncer
(transaction pooling) — all in the same run, interleaved, on the same PostgreSQL — with the
ratios, the CPU each order costs (worker processes, PostgreSQL, RabbitMQ) and what each order
leaves in the database (table and index bytes per order), the inputs of the capacity model in
docs/performance.md.

    make bench-cluster                                   # 20,000 orders, 2 processes, 2 repeats
    python -m bench.cluster_bench --orders 20000 --processes 2 --repeat 2 --json cluster-bench.json

Each measurement: a fresh database and vhost, the queue pre-loaded (through node 1), the clock
from "every worker consumes" to the last order decided, as ``make bench``. The single node and
the cluster are throwaway nodes started from the installed binaries (the same build, the same
settings; the cluster's nodes talk directly, no proxy between them), so the comparison is the
cluster's cost and nothing else. Workers on the cluster get ``CONVEYOR_AMQP_URLS`` with the
three nodes (each process starts at a node of its own) and ``CONVEYOR_QUORUM_REPLICAS=3``.
A wrong result (an order not decided exactly once, oversold stock, reconcile drift) fails it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from contextlib import ExitStack
from urllib.parse import urlsplit, urlunsplit

import psycopg

from bench import harness
from bench.orders_bench import CONVEYOR, catalogue
from conveyor import devservices
from conveyor.devservices import RestartableRabbitMQ
from conveyor.devservices.pgbouncer import PgBouncer
from conveyor.devservices.rabbitmq_cluster import RabbitCluster

CONFIGS = ("single_node", "cluster_3", "cluster_3_pgbouncer")
SIZES = ("SELECT n.nspname || '.' || c.relname, pg_total_relation_size(c.oid) FROM pg_class c "
         "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'm') "
         "AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'")
# Rows that leave again in production: the relay deletes outbox rows once sent (none runs here).
TRANSIENT = ("messaging.outbox",)


def services_for(node: RestartableRabbitMQ, database_url: str) -> devservices.Services:
    """A node of ours as the benchmark's broker: vhosts made with its rabbitmqctl."""
    return devservices.Services(database_url, node.amqp_url, "local-binaries",
                                rabbitmqctl=(os.path.join(node.bindir, "rabbitmqctl"), "-n", node.node),
                                rabbitmqctl_env=tuple(sorted(node.overrides.items())))


def on_node(vhost_url: str, node_url: str) -> str:
    """``vhost_url``'s vhost and credentials on the host and port of ``node_url``."""
    node = urlsplit(node_url)
    parts = urlsplit(vhost_url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[0] + "@" + node.netloc.rsplit("@", 1)[-1]))


def table_bytes(database_url: str) -> dict[str, int]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        return {name: size for name, size in conn.execute(SIZES).fetchall()}


def measure(services: devservices.Services, *, node_urls: list[str] | None, pgbouncer: PgBouncer | None,
            processes: int, orders: int) -> dict:
    stock, make = catalogue("low-contention", orders)
    with harness.stage(services) as stage:
        stage.prepare(stock)
        env: dict[str, str] = {}
        if node_urls:
            env["CONVEYOR_AMQP_URLS"] = ",".join(on_node(stage.amqp_url, url) for url in node_urls)
            env["CONVEYOR_QUORUM_REPLICAS"] = str(len(node_urls))
        if pgbouncer is not None:
            env["CONVEYOR_DATABASE_URL"] = pgbouncer.url_for(stage.database_url)
            env["CONVEYOR_LISTEN_DATABASE_URL"] = stage.database_url  # direct, as docs/deploy.md says
        before = table_bytes(stage.database_url)
        harness.preload(stage.amqp_url, [make() for _ in range(orders)])
        stage.start(CONVEYOR, count=processes, extra_env=env)
        stage.wait_consuming()
        servers_before, workers_before = harness.server_cpu_seconds(), stage.cpu_seconds()
        seconds = harness.wait_decided(stage.database_url, orders)
        workers = stage.cpu_seconds() - workers_before
        servers = {k: v - servers_before[k] for k, v in harness.server_cpu_seconds().items()}
        stage.stop()
        problems = harness.verify(stage.database_url, orders)
        after = table_bytes(stage.database_url)
    grown = {name: after.get(name, 0) - before.get(name, 0) for name in after}
    kept = sum(v for name, v in grown.items() if not name.startswith(TRANSIENT))
    return {"orders_per_s": round(orders / seconds, 1), "seconds": round(seconds, 2),
            "worker_cpu_ms_per_order": round(workers * 1000 / orders, 3),
            "postgres_cpu_ms_per_order": round(servers["postgres"] * 1000 / orders, 3),
            "rabbitmq_cpu_ms_per_order": round(servers["rabbitmq"] * 1000 / orders, 3),
            "db_bytes_per_order": round(kept / orders, 1),
            "db_bytes_per_order_with_outbox": round(sum(grown.values()) / orders, 1),
            "db_bytes_by_table": {k: round(v / orders, 1) for k, v in sorted(grown.items(), key=lambda kv: -kv[1])
                                  if v > 0},
            "problems": problems}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=20_000)
    parser.add_argument("--processes", type=int, default=2, help="worker processes (conveyor run orders)")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)

    with ExitStack() as stack:
        found = stack.enter_context(devservices.provide_services(log=lambda line: print(line, file=sys.stderr)))
        database_url = found.database_url
        print("[cluster bench] starting one node and a 3-node cluster (throwaway, installed binaries)",
              file=sys.stderr, flush=True)
        single = stack.enter_context(RestartableRabbitMQ())
        cluster = stack.enter_context(RabbitCluster(3, links=False))
        bouncer = stack.enter_context(PgBouncer(database_url))
        targets = {
            "single_node": (services_for(single, database_url), None, None),
            "cluster_3": (services_for(cluster.nodes[0], database_url), cluster.amqp_urls, None),
            "cluster_3_pgbouncer": (services_for(cluster.nodes[0], database_url), cluster.amqp_urls, bouncer),
        }
        runs: dict[str, list[dict]] = {name: [] for name in CONFIGS}
        for repeat in range(args.repeat):
            for name in CONFIGS:  # interleaved: the machine's other load falls on every configuration alike
                print(f"[cluster bench] {name}, run {repeat + 1}/{args.repeat}", file=sys.stderr, flush=True)
                services, urls, pool = targets[name]
                runs[name].append(measure(services, node_urls=urls, pgbouncer=pool, processes=args.processes,
                                          orders=args.orders))
    results = summarise(runs, args)
    print(render(results))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)
    return 0 if results["ok"] else 1


def summarise(runs: dict[str, list[dict]], args) -> dict:
    def median(name: str, key: str) -> float:
        return round(statistics.median(r[key] for r in runs[name]), 3)

    keys = ("orders_per_s", "worker_cpu_ms_per_order", "postgres_cpu_ms_per_order", "rabbitmq_cpu_ms_per_order",
            "db_bytes_per_order", "db_bytes_per_order_with_outbox")
    medians = {name: {key: median(name, key) for key in keys} for name in CONFIGS}
    for name in CONFIGS:
        medians[name]["orders_per_s_range"] = [min(r["orders_per_s"] for r in runs[name]),
                                               max(r["orders_per_s"] for r in runs[name])]
    single = medians["single_node"]["orders_per_s"]
    ratios = {name: round(medians[name]["orders_per_s"] / single, 2) for name in CONFIGS[1:]}
    problems = [f"{name}: {p}" for name in CONFIGS for r in runs[name] for p in r["problems"]]
    return {"machine": f"{os.uname().nodename} {os.cpu_count()} CPUs", "when": time.strftime("%Y-%m-%d %H:%M UTC",
            time.gmtime()), "orders": args.orders, "processes": args.processes, "repeat": args.repeat,
            "medians": medians, "ratio_to_single_node": ratios, "runs": runs, "problems": problems,
            "ok": not problems}


def render(results: dict) -> str:
    lines = ["", f"Conveyor scaling figure: {results['orders']} orders, {results['processes']} worker processes, "
                 f"medians of {results['repeat']} interleaved runs ({results['machine']}, {results['when']})"]
    for name in CONFIGS:
        m = results["medians"][name]
        ratio = results["ratio_to_single_node"].get(name)
        lines.append(f"  {name:<20} {m['orders_per_s']:>8} orders/s ({m['orders_per_s_range'][0]}–"
                     f"{m['orders_per_s_range'][1]})" + (f"  = {ratio}× the single node" if ratio else "")
                     + f"; CPU ms/order: workers {m['worker_cpu_ms_per_order']}, PostgreSQL "
                     f"{m['postgres_cpu_ms_per_order']}, RabbitMQ {m['rabbitmq_cpu_ms_per_order']}; "
                     f"database {m['db_bytes_per_order']} B/order kept "
                     f"({m['db_bytes_per_order_with_outbox']} with the unsent outbox)")
    lines.append("  verdict: " + ("OK (every order decided once, no oversell, no drift)" if results["ok"]
                                  else "WRONG RESULT: " + "; ".join(results["problems"][:5])))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
