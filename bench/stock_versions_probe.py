"""Stock counters under a pinned xmin: what a design that does not update in place would buy.

    python -m bench.stock_versions_probe      # finds its PostgreSQL as the other benchmarks do

On a fresh database with a transaction holding the xmin horizon back, 1,000 SKUs get one new
version each per round (60 SKUs per statement, as an intake batch does): in place (an UPDATE,
``stock_levels``' shape, fillfactor 50) and append-only (a new row per version; the current
level is a SKU's newest row). After 0, 100, 300 and 600 versions per SKU it times looking up
60 SKUs' current level both ways. docs/performance.md ("churn") has the figures.
"""

from __future__ import annotations

import random
import time

import psycopg

from conveyor import devservices

SKUS = 1_000
BATCH = 60
IN_PLACE = "SELECT sku, reserved FROM inplace WHERE sku = ANY(%(s)s)"
NEWEST = """
SELECT k.sku, v.reserved FROM unnest(%(s)s::int[]) k(sku),
LATERAL (SELECT reserved FROM appendonly a WHERE a.sku = k.sku ORDER BY seq DESC LIMIT 1) v
"""
UPDATE = "UPDATE inplace SET reserved = reserved + 1 WHERE sku = ANY(%(s)s)"
APPEND = """
INSERT INTO appendonly
SELECT a.sku, a.seq + 1, a.reserved + 1 FROM unnest(%(s)s::int[]) k(sku),
LATERAL (SELECT sku, seq, reserved FROM appendonly x WHERE x.sku = k.sku ORDER BY seq DESC LIMIT 1) a
"""
SCHEMA = (
    "CREATE TABLE inplace (sku int PRIMARY KEY, reserved int NOT NULL) WITH (fillfactor = 50)",
    "CREATE TABLE appendonly (sku int, seq int, reserved int NOT NULL, PRIMARY KEY (sku, seq))",
    f"INSERT INTO inplace SELECT g, 0 FROM generate_series(1, {SKUS}) g",
    f"INSERT INTO appendonly SELECT g, 1, 0 FROM generate_series(1, {SKUS}) g",
    "ANALYZE",
)


def lookup_ms(conn: psycopg.Connection, sql: str, skus: list[int], repeat: int = 50) -> float:
    started = time.perf_counter()
    for _ in range(repeat):
        conn.execute(sql, {"s": skus}).fetchall()
    return (time.perf_counter() - started) / repeat * 1000


def one_round(conn: psycopg.Connection) -> None:
    """One new version of every SKU, both ways."""
    for start in range(1, SKUS + 1, BATCH):
        skus = list(range(start, min(start + BATCH, SKUS + 1)))
        conn.execute(UPDATE, {"s": skus})
        conn.execute(APPEND, {"s": skus})


def run(url: str) -> None:
    rng = random.Random(1)
    with psycopg.connect(url, autocommit=True) as conn, psycopg.connect(url) as pin:
        for statement in SCHEMA:
            conn.execute(statement)
        pin.execute("SELECT pg_current_xact_id()")  # stays open: the pinned xmin
        done = 0
        for target in (0, 100, 300, 600):
            while done < target:
                one_round(conn)
                done += 1
            skus = rng.sample(range(1, SKUS + 1), BATCH)
            print(f"{done:4d} versions per SKU: update in place {lookup_ms(conn, IN_PLACE, skus):7.2f} ms, "
                  f"append-only newest {lookup_ms(conn, NEWEST, skus):6.2f} ms (60 SKUs looked up)")
        pin.rollback()


def main() -> None:
    with devservices.provide_services() as services, devservices.fresh_database(services) as url:
        run(url)


if __name__ == "__main__":
    main()
