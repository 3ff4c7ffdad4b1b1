"""What ``conveyor db checksum`` costs on a table of a few million rows, against baselines measured
in the same run on the same table: ``count(*)`` (the cheapest full scan) and a scan that turns
every row into text (what any content comparison must do at least).

    python -m bench.checksum_bench [--rows 3000000] [--repeat 3] [--json]

It makes a scratch database on CONVEYOR_DATABASE_URL's server (or a throwaway server when the
variable is unset), fills a table shaped like ``orders.orders`` (uuid, text, numeric,
timestamptz, jsonb, one NULL in ten), VACUUM ANALYZEs it, warms the cache with one scan, then
times each query ``--repeat`` times (best of). Figures are ratios to the baselines: the machine
is shared and noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from contextlib import ExitStack

import psycopg

from conveyor import devservices
from conveyor.db.checksum import table_checksums

FILL = """
CREATE TABLE public.checksum_bench AS
SELECT gen_random_uuid() AS order_id, 'tenant-' || (i %% 20) AS tenant_id,
       (ARRAY['RESERVED', 'PAID', 'SHIPPED', 'DELIVERED'])[1 + i %% 4] AS status,
       CASE WHEN i %% 10 = 0 THEN NULL ELSE round((i %% 100000) / 7.0, 4) END AS total,
       now() - make_interval(secs => i) AS created_at,
       jsonb_build_object('lines', i %% 7, 'channel', 'web') AS detail
FROM generate_series(1, %(rows)s) AS i
"""
COUNT = "SELECT count(*) FROM public.checksum_bench"
AS_TEXT = "SELECT sum(length(t::text)) FROM public.checksum_bench AS t"


def best_of(repeat: int, run: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def measure(url: str, rows: int, repeat: int, progress: Callable[[str], None]) -> dict[str, object]:
    with psycopg.connect(url, autocommit=True) as conn:
        started = time.perf_counter()
        conn.execute(FILL, {"rows": rows})
        conn.execute("VACUUM ANALYZE public.checksum_bench")
        size = conn.execute("SELECT pg_size_pretty(pg_table_size('public.checksum_bench'))").fetchone()
        progress(f"filled {rows:,} rows ({size[0] if size else '?'}) in {time.perf_counter() - started:.1f} s")
        conn.execute(AS_TEXT)  # warm the cache
        count_s = best_of(repeat, lambda: conn.execute(COUNT).fetchone())
        progress(f"count(*): {count_s:.2f} s")
        text_s = best_of(repeat, lambda: conn.execute(AS_TEXT).fetchone())
        progress(f"every row as text: {text_s:.2f} s")
        checksum_s = best_of(repeat, lambda: table_checksums(conn, ["public.checksum_bench"]))
        progress(f"conveyor db checksum: {checksum_s:.2f} s")
    return {"rows": rows, "repeat": repeat, "count_s": round(count_s, 3), "as_text_s": round(text_s, 3),
            "checksum_s": round(checksum_s, 3), "checksum_rows_per_s": round(rows / checksum_s),
            "checksum_vs_as_text": round(checksum_s / text_s, 2), "checksum_vs_count": round(checksum_s / count_s, 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=3_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print only the result as JSON")
    args = parser.parse_args(argv)

    def progress(line: str) -> None:
        if not args.json:
            print(line, flush=True)

    with ExitStack() as stack:
        if os.environ.get(devservices.DATABASE_URL_ENV):
            services = devservices.Services(database_url=os.environ[devservices.DATABASE_URL_ENV], amqp_url="",
                                            source="environment")
        else:
            server = stack.enter_context(devservices.RestartablePostgres(durable=False))
            services = devservices.Services(database_url=server.database_url, amqp_url="", source="local-binaries")
        url = stack.enter_context(devservices.fresh_database(services, prefix="conveyor_ckbench"))
        result = measure(url, args.rows, args.repeat, progress)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"checksum of {result['rows']:,} rows: {result['checksum_s']} s "
              f"({result['checksum_rows_per_s']:,} rows/s), {result['checksum_vs_as_text']}x a scan that renders "
              f"every row as text, {result['checksum_vs_count']}x count(*)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
