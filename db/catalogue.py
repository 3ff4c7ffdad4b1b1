"""The catalogue's SQL (docs/catalogue.md): import, search and export of ``inventory.products``.

Import: the caller's checked products are COPYed into a temporary staging table, then one
``INSERT ... ON CONFLICT DO UPDATE`` applies them in the same transaction, changing only the rows
that differ (so a second import of the same file changes nothing), and the words of the names
go to ``inventory.catalogue_words`` for typo correction. Search: each query word is widened to
its nearest catalogue words (trigrams), then a weighted full-text search in the tenant's
configuration ranks what matches, closer spellings of the name first.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import psycopg

from conveyor.schemas.catalogue import ISO_4217_MINOR_UNITS, Product

STAGE = """
CREATE TEMP TABLE catalogue_staging (
    tenant_id text NOT NULL, sku text NOT NULL, name text NOT NULL, description text NOT NULL,
    price numeric(28, 4) NOT NULL, currency char(3) NOT NULL, attributes jsonb NOT NULL
) ON COMMIT DROP
"""
COPY_STAGE = "COPY catalogue_staging (tenant_id, sku, name, description, price, currency, attributes) FROM STDIN"
ENSURE_TENANTS = """
INSERT INTO inventory.tenants (tenant_id, name)
SELECT DISTINCT tenant_id, tenant_id FROM catalogue_staging ON CONFLICT (tenant_id) DO NOTHING
"""
UPSERT = """
WITH applied AS (
    INSERT INTO inventory.products AS p
        (tenant_id, sku, name, description, price, currency, attributes, text_search_config)
    SELECT s.tenant_id, s.sku, s.name, s.description, s.price, s.currency, s.attributes, t.text_search_config
    FROM catalogue_staging s JOIN inventory.tenants t ON t.tenant_id = s.tenant_id
    ON CONFLICT (tenant_id, sku) DO UPDATE
        SET name = excluded.name, description = excluded.description, price = excluded.price,
            currency = excluded.currency, attributes = excluded.attributes,
            text_search_config = excluded.text_search_config, updated_at = now()
        WHERE (p.name, p.description, p.price, p.currency, p.attributes, p.text_search_config)
              IS DISTINCT FROM (excluded.name, excluded.description, excluded.price, excluded.currency,
                                excluded.attributes, excluded.text_search_config)
    RETURNING xmax = 0 AS inserted
)
SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM applied
"""
# The GIN indexes take new entries into a pending list, merged when it is full: larger
# merges, fewer of them, for a bulk upsert (this transaction only).
BULK_SETTINGS = "SELECT set_config('gin_pending_list_limit', '65536', true), set_config('work_mem', '64MB', true)"
ADD_WORDS = """
INSERT INTO inventory.catalogue_words (tenant_id, word)
SELECT %(tenant)s, unnest(%(words)s::text[]) ON CONFLICT DO NOTHING
"""
ESTIMATED_ROWS = "SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = 'inventory.products'::regclass"
ANALYZE = "ANALYZE inventory.products"
# Statistics matter to the search plans; autovacuum would refresh them later (or never, when off).
ANALYZE_WHEN_CHANGED = 0.1  # of the table's rows, and at least ANALYZE_MIN_ROWS
ANALYZE_MIN_ROWS = 1_000

# The money migration's table of currencies (V019); a currency without minor units (ISO's
# "N.A.": metals, funds) cannot price a product.
CURRENCIES_TABLE = "SELECT to_regclass('orders.currencies') IS NOT NULL"
CURRENCIES = "SELECT code::text, minor_units FROM orders.currencies WHERE minor_units IS NOT NULL"

CopyProgress = Callable[[int], None]


@dataclass
class ImportResult:
    rows: int = 0
    inserted: int = 0
    updated: int = 0
    analyzed: bool = False
    tenants: set[str] = field(default_factory=set)

    @property
    def unchanged(self) -> int:
        return self.rows - self.inserted - self.updated


def currency_minor_units(conn: psycopg.Connection) -> dict[str, int]:
    """Which currencies a price may be in and their minor units: the database's table of
    currencies when it has one (``orders.currencies``, V019), else ISO 4217's."""
    if conn.execute(CURRENCIES_TABLE).fetchone()[0]:  # type: ignore[index]
        return {code: int(units) for code, units in conn.execute(CURRENCIES)}
    return dict(ISO_4217_MINOR_UNITS)


def stage(conn: psycopg.Connection, products: Iterable[Product]) -> tuple[int, dict[str, set[str]]]:
    """COPY the products into the staging table (inside the caller's transaction); their count
    and the words of each tenant."""
    conn.execute(STAGE)
    words: dict[str, set[str]] = {}
    rows = 0
    with conn.cursor() as cur, cur.copy(COPY_STAGE) as copy:
        for p in products:
            copy.write_row((p.tenant_id, p.sku, p.name, p.description, p.price, p.currency, p.attributes))
            rows += 1
            if p.words:
                words.setdefault(p.tenant_id, set()).update(p.words)
    return rows, words


def apply_staged(conn: psycopg.Connection, rows: int, words: dict[str, set[str]]) -> ImportResult:
    """One upsert of the staged rows (inside the caller's transaction)."""
    conn.execute(BULK_SETTINGS)
    conn.execute(ENSURE_TENANTS)
    inserted, updated = conn.execute(UPSERT).fetchone()  # type: ignore[misc]
    for tenant, found in words.items():
        conn.execute(ADD_WORDS, {"tenant": tenant, "words": sorted(found)})
    return ImportResult(rows=rows, inserted=inserted, updated=updated, tenants=set(words))


def analyze_if_worth_it(conn: psycopg.Connection, result: ImportResult, rows_before: int) -> None:
    changed = result.inserted + result.updated
    if changed >= max(ANALYZE_MIN_ROWS, ANALYZE_WHEN_CHANGED * rows_before):
        conn.execute(ANALYZE)
        result.analyzed = True


def estimated_rows(conn: psycopg.Connection) -> int:
    return int(conn.execute(ESTIMATED_ROWS).fetchone()[0])  # type: ignore[index]


# -- search -------------------------------------------------------------------------------------
TENANT_CONFIG = "SELECT text_search_config::text FROM inventory.tenants WHERE tenant_id = %(tenant)s"
# Each query word, or (when the catalogue does not have it) its nearest catalogue words: the
# tsquery AND of one OR per word, in the tenant's configuration (stemmed, stop words out).
QUERY = """
WITH words AS (
    SELECT ord, w FROM unnest(%(words)s::text[]) WITH ORDINALITY AS q (w, ord)
), alternatives AS (
    SELECT ord, w AS alt FROM words
    UNION
    SELECT words.ord, near.word FROM words CROSS JOIN LATERAL (
        SELECT cw.word FROM inventory.catalogue_words cw
        WHERE cw.tenant_id = %(tenant)s AND cw.word OPERATOR(public.%%) words.w
          AND NOT EXISTS (SELECT FROM inventory.catalogue_words e WHERE e.tenant_id = %(tenant)s AND e.word = words.w)
        ORDER BY public.similarity(cw.word, words.w) DESC, cw.word LIMIT %(per_word)s) near
), lexemes AS (
    SELECT ord, nullif(plainto_tsquery(%(config)s::regconfig, alt)::text, '') AS lexeme FROM alternatives
), per_word AS (
    SELECT ord, '(' || string_agg(DISTINCT lexeme, ' | ') || ')' AS alternatives
    FROM lexemes WHERE lexeme IS NOT NULL GROUP BY ord
)
SELECT string_agg(alternatives, ' & ' ORDER BY ord) FROM per_word
"""
RANKED = """
SELECT p.tenant_id, p.sku, p.name, p.description, trim_scale(p.price)::text AS price, p.currency::text AS currency,
       p.attributes,
       round((ts_rank_cd('{0.1, 0.2, 0.4, 1.0}', p.search, %(tsquery)s::tsquery)
              + public.word_similarity(%(query)s, p.name))::numeric, 4)::float AS rank
FROM inventory.products p
WHERE p.tenant_id = %(tenant)s AND p.search @@ %(tsquery)s::tsquery AND p.attributes @> %(attributes)s::jsonb
ORDER BY rank DESC, p.sku LIMIT %(limit)s
"""
# Nothing in the text: names or SKUs close to the query (a SKU typed with a typo, a word the
# catalogue's words do not have), by trigrams.
FUZZY = """
SELECT p.tenant_id, p.sku, p.name, p.description, trim_scale(p.price)::text AS price, p.currency::text AS currency,
       p.attributes,
       round(greatest(public.word_similarity(%(query)s, p.name),
                      public.similarity(p.sku, %(query)s))::numeric, 4)::float AS rank
FROM inventory.products p
WHERE p.tenant_id = %(tenant)s AND (%(query)s OPERATOR(public.<%%) p.name OR p.sku OPERATOR(public.%%) %(query)s)
  AND p.attributes @> %(attributes)s::jsonb
ORDER BY rank DESC, p.sku LIMIT %(limit)s
"""
NEAR_WORDS = 3
QUERY_WORD = r"[^\W_]+"


class UnknownTenant(LookupError):
    pass


def search(conn: psycopg.Connection, tenant: str, query: str, *, attributes: dict[str, Any] | None = None,
           limit: int = 20) -> list[dict[str, Any]]:
    """Products of ``tenant`` matching ``query`` (and containing ``attributes``), best first."""
    import re

    from psycopg.rows import dict_row

    row = conn.execute(TENANT_CONFIG, {"tenant": tenant}).fetchone()
    if row is None:
        raise UnknownTenant(tenant)
    words = [w.lower() for w in re.findall(QUERY_WORD, query)][:16]
    params = {"tenant": tenant, "query": query, "attributes": json.dumps(attributes or {}), "limit": limit}
    with conn.cursor(row_factory=dict_row) as cur:
        tsquery = None
        if words:
            tsquery = cur.execute(QUERY, {"words": words, "tenant": tenant, "config": row[0],
                                          "per_word": NEAR_WORDS}).fetchone()["string_agg"]  # type: ignore[index]
        found = cur.execute(RANKED, {**params, "tsquery": tsquery}).fetchall() if tsquery else []
        if not found and query.strip():
            found = cur.execute(FUZZY, params).fetchall()
    return found


# -- export -------------------------------------------------------------------------------------
EXPORT_COLUMNS = "tenant_id, sku, name, description, trim_scale(price)::text AS price, currency, attributes"
EXPORT_CSV = f"""
COPY (SELECT {EXPORT_COLUMNS} FROM inventory.products WHERE {{where}} ORDER BY tenant_id, sku)
TO STDOUT WITH (FORMAT csv, HEADER)
"""
EXPORT_JSON = """
SELECT jsonb_build_object('tenant_id', tenant_id, 'sku', sku, 'name', name, 'description', description,
                          'price', trim_scale(price)::text, 'currency', currency::text, 'attributes', attributes)::text
FROM inventory.products WHERE {where} ORDER BY tenant_id, sku
"""


def export(conn: psycopg.Connection, out: IO[bytes], *, file_format: str, tenant: str | None) -> int:
    """Write the catalogue (one tenant's, or every tenant's) as CSV or JSON Lines; the rows written."""
    where, params = ("tenant_id = %(tenant)s", {"tenant": tenant}) if tenant else ("true", {})
    if file_format == "csv":
        with conn.cursor() as cur:
            with cur.copy(EXPORT_CSV.format(where=where), params) as copy:
                for chunk in copy:
                    out.write(bytes(chunk))
            return max(cur.rowcount, 0)
    rows = 0
    with conn.transaction(), conn.cursor(name="catalogue_export") as cur:
        cur.itersize = 5_000
        cur.execute(EXPORT_JSON.format(where=where), params)
        for (document,) in _rows(cur):
            out.write(document.encode() + b"\n")
            rows += 1
    return rows


def _rows(cur: psycopg.Cursor) -> Iterator[tuple[Any, ...]]:
    yield from cur
