"""Catalogue benchmark (``make bench-catalog``): import of N products and typo-tolerant search.

Generates a CSV of N products (default 1,000,000; names of brand, adjective, colour, material
and type words), then, on a fresh database of the server in CONVEYOR_DATABASE_URL:

- baseline: a plain ``COPY ... FROM STDIN (FORMAT csv)`` of the same file into an unindexed table;
- ``conveyor catalog import FILE`` (in process, timed end to end: read, check, COPY, upsert, ANALYZE);
- the same import again (nothing changes: the idempotent path);
- 200 two-word queries ("<colour> <type>") with one typo each through ``conveyor.db.catalogue.search``,
  p50/p95, against a primary-key lookup of a product on the same connection (baseline).

Targets (issue 18): import >= 50,000 rows/s, search p95 <= 20 ms. Run under
``flock /tmp/conveyor-bench.lock`` on the shared machine.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import psycopg

from conveyor import devservices
from conveyor.db.migrate import migrate

BRANDS = [f"{a}{b}" for a in ("Acme", "Nord", "Vela", "Orion", "Kappa", "Lumo", "Terra", "Brio", "Sol", "Mira",
                             "Zen", "Aero", "Nova", "Pico", "Rhea")
          for b in ("", "tex", "wear", "line", "craft", "works", "lab", "gear", "co", "ware", "form", "mode",
                    "field", "peak", "core", "port", "side", "stone", "wood", "light")]
ADJECTIVES = ("classic", "modern", "lightweight", "heavy", "slim", "relaxed", "vintage", "premium", "basic",
              "essential", "rugged", "soft", "warm", "breathable", "waterproof", "stretch", "quilted", "padded",
              "organic", "recycled", "tailored", "oversized", "cropped", "long", "short", "hooded", "striped",
              "checked", "plain", "printed", "knitted", "woven", "brushed", "washed", "raw", "coated", "insulated",
              "thermal", "compact", "foldable")
COLOURS = ("black", "white", "grey", "navy", "blue", "red", "green", "olive", "khaki", "beige", "brown", "tan",
           "pink", "purple", "yellow", "orange", "teal", "burgundy", "cream", "charcoal", "silver", "gold",
           "turquoise", "maroon", "lavender")
MATERIALS = ("cotton", "wool", "linen", "silk", "denim", "leather", "suede", "polyester", "nylon", "fleece",
             "cashmere", "canvas", "corduroy", "velvet", "jersey", "merino", "bamboo", "hemp", "satin", "tweed")
TYPES = ("jacket", "coat", "parka", "blazer", "shirt", "blouse", "sweater", "cardigan", "hoodie", "vest", "trousers",
         "jeans", "shorts", "skirt", "dress", "scarf", "gloves", "hat", "beanie", "socks", "boots", "sneakers",
         "sandals", "loafers", "backpack", "wallet", "belt", "umbrella", "raincoat", "poncho", "tracksuit",
         "leggings", "pyjamas", "bathrobe", "swimsuit", "bikini", "tights", "overalls", "dungarees", "kimono",
         "tunic", "poloshirt", "turtleneck", "windbreaker", "anorak", "gilet", "chinos", "joggers", "slippers",
         "moccasins", "espadrilles", "mittens", "earmuffs", "bandana", "necktie", "bowtie", "suspenders",
         "handbag", "satchel", "duffel", "tote", "briefcase", "suitcase", "lanyard", "keyring", "sunglasses",
         "watch", "bracelet", "necklace", "earrings", "pendant", "brooch", "cufflinks", "headband", "visor",
         "balaclava", "neckwarmer", "legwarmers", "apron", "smock", "cape", "shawl", "stole", "sarong", "caftan",
         "camisole", "bodysuit", "leotard", "romper", "jumpsuit", "playsuit", "corset", "bustier", "petticoat",
         "waistcoat", "tuxedo", "overcoat", "trenchcoat", "peacoat", "duffelcoat", "bomber", "harrington",
         "shacket", "fleecejacket", "softshell", "hardshell")
SIZES = ("XS", "S", "M", "L", "XL", "XXL")


def generate(path: Path, rows: int, *, seed: int = 18) -> list[tuple[str, str]]:
    """The CSV file; and (colour, type) pairs that exist, to query."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(("sku", "name", "description", "price", "currency", "attributes"))
        for i in range(rows):
            brand, adj, colour = rng.choice(BRANDS), rng.choice(ADJECTIVES), rng.choice(COLOURS)
            material, kind = rng.choice(MATERIALS), rng.choice(TYPES)
            name = f"{brand} {adj.title()} {colour.title()} {material.title()} {kind.title()} {i % 997}"
            description = f"A {adj} {kind} in {colour} {material} by {brand}, size {rng.choice(SIZES)}."
            attributes = json.dumps({"brand": brand, "colour": colour, "material": material,
                                     "size": rng.choice(SIZES)})
            writer.writerow((f"SKU-{i:08d}", name, description, f"{rng.randint(100, 99999) / 100:.2f}", "EUR",
                             attributes))
    return [(c, t) for c in COLOURS for t in TYPES]


def typo(word: str, rng: random.Random) -> str:
    """One edit: a letter dropped, doubled, swapped with the next, or replaced."""
    i = rng.randrange(1, len(word) - 1)
    kind = rng.choice(("drop", "double", "swap", "replace"))
    if kind == "drop":
        return word[:i] + word[i + 1:]
    if kind == "double":
        return word[:i] + word[i] + word[i:]
    if kind == "swap":
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    return word[:i] + rng.choice("aeiourstnl") + word[i + 1:]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def baseline_copy(url: str, path: Path) -> float:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE bench_plain (sku text, name text, description text, price numeric, currency text,"
                     " attributes jsonb)")
        started = time.perf_counter()
        with conn.cursor() as cur, cur.copy("COPY bench_plain FROM STDIN (FORMAT csv, HEADER)") as copy, \
                path.open("rb") as source:
            while chunk := source.read(1 << 20):
                copy.write(chunk)
        elapsed = time.perf_counter() - started
        conn.execute("DROP TABLE bench_plain")
    return elapsed


def run_import(url: str, path: Path) -> tuple[float, dict]:
    from conveyor.workers import cli

    os.environ["CONVEYOR_DATABASE_URL"] = url
    buffer = io.StringIO()
    stdout, sys.stdout = sys.stdout, buffer
    try:
        started = time.perf_counter()
        code = cli.main(["catalog", "import", str(path), "--json"])
        elapsed = time.perf_counter() - started
    finally:
        sys.stdout = stdout
    if code != 0:
        raise SystemExit(f"catalog import exited {code}: {buffer.getvalue()}")
    return elapsed, json.loads(buffer.getvalue())


def measure_search(url: str, pairs: list[tuple[str, str]], *, queries: int, rows: int) -> dict:
    from conveyor.db import catalogue
    from conveyor.db.connection import connect

    rng = random.Random(7)
    chosen = [(c, typo(t, rng)) if rng.random() < 0.5 else (typo(c, rng), t) for c, t in rng.sample(pairs, queries)]
    timings, hits, empty = [], 0, 0
    lookups = []
    with connect(url) as conn:
        for c, t in chosen[:10]:  # warm the caches and the session's plans
            catalogue.search(conn, "default", f"{c} {t}", limit=20)
        for (c, t), (wc, wt) in zip(chosen, rng.sample(pairs, queries)):
            started = time.perf_counter()
            found = catalogue.search(conn, "default", f"{c} {t}", limit=20)
            timings.append((time.perf_counter() - started) * 1000)
            empty += not found
            hits += any(wc in r["name"].lower() or wt in r["name"].lower() for r in found[:1]) or bool(found)
            sku = f"SKU-{rng.randrange(rows):08d}"
            started = time.perf_counter()
            conn.execute("SELECT * FROM inventory.products WHERE tenant_id = 'default' AND sku = %s", (sku,)).fetchone()
            lookups.append((time.perf_counter() - started) * 1000)
    return {"queries": queries, "p50_ms": percentile(timings, 50), "p95_ms": percentile(timings, 95),
            "max_ms": max(timings), "empty_results": empty, "examples": [f"{c} {t}" for c, t in chosen[:5]],
            "pk_lookup_p50_ms": percentile(lookups, 50), "pk_lookup_p95_ms": percentile(lookups, 95)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--keep-file", metavar="PATH", help="write the generated CSV here and keep it")
    opts = parser.parse_args(argv)
    if not os.environ.get(devservices.DATABASE_URL_ENV):
        raise SystemExit(f"set {devservices.DATABASE_URL_ENV} (a server whose login may create databases)")
    services = devservices.Services(database_url=os.environ[devservices.DATABASE_URL_ENV], amqp_url="",
                                    source="environment")
    with tempfile.TemporaryDirectory() as tmp, \
            devservices.fresh_database(services, prefix="conveyor_bench_catalog") as url:
        path = Path(opts.keep_file) if opts.keep_file else Path(tmp) / "products.csv"
        started = time.perf_counter()
        pairs = generate(path, opts.rows)
        print(f"generated {opts.rows:,} products ({path.stat().st_size / 1e6:,.0f} MB) in "
              f"{time.perf_counter() - started:.1f} s", file=sys.stderr)
        migrate(url)
        plain = baseline_copy(url, path)
        first, summary = run_import(url, path)
        again, summary_again = run_import(url, path)
        search = measure_search(url, pairs, queries=opts.queries, rows=opts.rows)
    report = {
        "rows": opts.rows,
        "baseline_plain_copy_s": round(plain, 2), "baseline_rows_per_s": round(opts.rows / plain),
        "import_s": round(first, 2), "import_rows_per_s": round(opts.rows / first),
        "import_vs_plain_copy": round(first / plain, 2), "import_summary": summary,
        "reimport_s": round(again, 2), "reimport_rows_per_s": round(opts.rows / again),
        "reimport_unchanged": summary_again["unchanged"],
        "search": {k: (round(v, 2) if isinstance(v, float) else v) for k, v in search.items()},
        "search_p95_vs_pk_lookup_p95": round(search["p95_ms"] / search["pk_lookup_p95_ms"], 1),
        "targets": {"import_rows_per_s >= 50000": opts.rows / first >= 50_000,
                    "search_p95_ms <= 20": search["p95_ms"] <= 20},
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
