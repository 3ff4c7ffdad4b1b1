"""Money at the database edge: loading exchange rates and tax rules from CSV files (validated
whole, applied in one transaction or not at all), completing the orders recorded without a
rate, and the revenue report from the daily summaries. docs/money.md."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation

import psycopg

from conveyor.schemas import money

Progress = Callable[[int, int], None]


class LoadRefused(ValueError):
    """The file breaks the rules: ``problems`` lists each with its line; nothing was applied."""

    def __init__(self, what: str, problems: list[str]) -> None:
        self.problems = problems
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(f"{what} refused, nothing applied: {problems[0]}{more}")


@dataclass(frozen=True, slots=True)
class Validity:
    line: int
    valid_from: date
    valid_to: date | None

    def overlaps(self, other_from: date, other_to: date | None) -> bool:
        return ((other_to is None or self.valid_from < other_to)
                and (self.valid_to is None or other_from < self.valid_to))


@dataclass(frozen=True, slots=True)
class FxRow(Validity):
    from_currency: str
    to_currency: str
    rate: Decimal
    source: str


@dataclass(frozen=True, slots=True)
class TaxRow(Validity):
    jurisdiction: str
    category: str
    rate_percent: Decimal
    source: str


# --- parsing ------------------------------------------------------------------------------------

def _rows(text: str) -> tuple[list[str], list[tuple[int, list[str]]]]:
    reader = csv.reader(io.StringIO(text))
    lines = [(reader.line_num, [cell.strip() for cell in row]) for row in reader if any(c.strip() for c in row)]
    if not lines:
        raise LoadRefused("the file", ["line 1: empty file, a header was expected"])
    return [h.lower() for h in lines[0][1]], lines[1:]


def _date(text: str, what: str) -> date:
    for form in ("%Y-%m-%d", "%d %B %Y"):
        try:
            return datetime.strptime(text, form).date()
        except ValueError:
            continue
    raise ValueError(f"{what} {text!r} is not a date (YYYY-MM-DD)")


def _decimal(text: str, what: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"{what} {text!r} is not a decimal number") from None
    if not value.is_finite():
        raise ValueError(f"{what} {text!r} is not a decimal number")
    return value


def _range(cells: dict[str, str]) -> tuple[date, date | None]:
    start = _date(cells.get("valid_from", ""), "valid_from")
    end = _date(cells["valid_to"], "valid_to") if cells.get("valid_to") else None
    if end is not None and end <= start:
        raise ValueError(f"valid_to {end} is not after valid_from {start}")
    return start, end


FX_HEADER = ["from", "to", "rate", "valid_from", "valid_to", "source"]
TAX_HEADER = ["jurisdiction", "category", "rate_percent", "valid_from", "valid_to", "source"]


def parse_fx(text: str, *, source: str = "file") -> list[FxRow]:
    """Rows of ``from,to,rate,valid_from[,valid_to][,source]``, or an ECB-style daily file
    (``Date,USD,JPY,...`` then one line per day: 1 EUR = rate of each column)."""
    header, lines = _rows(text)
    rows, problems = [], []
    ecb = header[:1] == ["date"]
    if not ecb and header[:4] != FX_HEADER[:4]:
        raise LoadRefused("the file", [f"line 1: header {','.join(header)!r}: expected {','.join(FX_HEADER)}"
                                       " or an ECB daily file (Date,USD,JPY,...)"])
    for line, cells in lines:
        try:
            if ecb:
                day = _date(cells[0], "Date")
                for code, value in zip(header[1:], cells[1:]):
                    if code and value and value.upper() != "N/A":
                        rows.append(_fx_row(line, "EUR", code.upper(), value, day, None, source or "ECB"))
            else:
                named = dict(zip(header, cells))
                start, end = _range(named)
                rows.append(_fx_row(line, named.get("from", ""), named.get("to", ""), named.get("rate", ""),
                                    start, end, named.get("source") or source))
        except (ValueError, money.MoneyError) as error:
            problems.append(f"line {line}: {error}")
    problems += _overlaps_within(rows, lambda r: (r.from_currency, r.to_currency),
                                 lambda k: f"{k[0]}->{k[1]}")
    if problems:
        raise LoadRefused("fx rates", problems)
    return rows


def _fx_row(line: int, frm: str, to: str, rate_text: str, start: date, end: date | None, source: str) -> FxRow:
    money.minor_units(frm)
    money.minor_units(to)
    if frm == to:
        raise ValueError(f"a rate from {frm} to itself")
    rate = _decimal(rate_text, "rate")
    if rate <= 0:
        raise ValueError(f"rate {rate_text} for {frm}->{to} must be greater than zero")
    return FxRow(line, start, end, frm, to, rate, source[:200])


def parse_tax(text: str, *, source: str = "file") -> list[TaxRow]:
    """Rows of ``jurisdiction,category,rate_percent,valid_from[,valid_to][,source]``."""
    header, lines = _rows(text)
    if header[:4] != TAX_HEADER[:4]:
        raise LoadRefused("the file", [f"line 1: header {','.join(header)!r}: expected {','.join(TAX_HEADER)}"])
    rows, problems = [], []
    for line, cells in lines:
        named = dict(zip(header, cells))
        try:
            jurisdiction, category = named.get("jurisdiction", ""), named.get("category", "")
            money.check_country(jurisdiction.split("-", 1)[0])
            if not _JURISDICTION(jurisdiction):
                raise ValueError(f"jurisdiction {jurisdiction!r}: expected CC or CC-REGION (ISO 3166)")
            if not _CATEGORY(category):
                raise ValueError(f"category {category!r}: expected [a-z0-9_.-]{{1,64}}")
            rate = _decimal(named.get("rate_percent", ""), "rate_percent")
            if not Decimal(0) <= rate <= Decimal(100):
                raise ValueError(f"rate_percent {rate} is outside 0..100 %")
            if rate != rate.quantize(Decimal("1e-6")):
                raise ValueError(f"rate_percent {rate} has more than 6 decimals")
            start, end = _range(named)
            rows.append(TaxRow(line, start, end, jurisdiction, category, rate, (named.get("source") or source)[:200]))
        except (ValueError, money.MoneyError) as error:
            problems.append(f"line {line}: {error}")
    problems += _overlaps_within(rows, lambda r: (r.jurisdiction, r.category), lambda k: f"{k[0]}/{k[1]}")
    if problems:
        raise LoadRefused("tax rules", problems)
    return rows


def _matcher(pattern: str) -> Callable[[str], bool]:
    import re
    compiled = re.compile(pattern)
    return lambda text: compiled.fullmatch(text) is not None


_JURISDICTION = _matcher(r"[A-Z]{2}(-[A-Z0-9]{1,3})?")
_CATEGORY = _matcher(r"[a-z0-9_.-]{1,64}")


def _overlaps_within(rows: list, key: Callable, name: Callable) -> list[str]:
    problems: list[str] = []
    seen: dict = {}
    for row in rows:
        for other in seen.get(key(row), ()):
            if row.overlaps(other.valid_from, other.valid_to):
                problems.append(f"line {row.line}: {name(key(row))} from {row.valid_from} overlaps line {other.line}"
                                f" ({other.valid_from} to {other.valid_to or 'open'})")
        seen.setdefault(key(row), []).append(row)
    return problems


# --- applying -----------------------------------------------------------------------------------

EXISTING_FX = """
SELECT id, from_currency, to_currency, valid_from, valid_to, source FROM orders.fx_rates
WHERE (from_currency, to_currency) IN (SELECT * FROM unnest(%(froms)s::text[], %(tos)s::text[]))
"""
EXISTING_TAX = """
SELECT id, jurisdiction, category, valid_from, valid_to, source FROM inventory.tax_rules
WHERE tenant_id = %(tenant)s
"""


def load_fx(conn: psycopg.Connection, rows: list[FxRow], *, progress: Progress | None = None) -> dict:
    """Insert the rates in one transaction. An open-ended rate of a pair (valid_to empty) is
    closed by a later one that starts after it (a daily file's next day); any other overlap
    with a stored rate refuses the whole file."""
    with conn.transaction():
        conn.execute("LOCK TABLE orders.fx_rates IN SHARE ROW EXCLUSIVE MODE")  # loads one at a time
        stored = conn.execute(EXISTING_FX, {"froms": [r.from_currency for r in rows],
                                            "tos": [r.to_currency for r in rows]}).fetchall()
        closes = _against_stored(rows, stored, lambda r: (r.from_currency, r.to_currency), "fx rates",
                                 lambda k: f"{k[0]}->{k[1]}")
        for rate_id, new_end in closes:
            conn.execute("UPDATE orders.fx_rates SET valid_to = %s WHERE id = %s", (new_end, rate_id))
        _copy(conn, "orders.fx_rates (from_currency, to_currency, rate, valid_from, valid_to, source)",
              ((r.from_currency, r.to_currency, r.rate, r.valid_from, r.valid_to, r.source) for r in rows),
              len(rows), progress)
    return {"loaded": len(rows), "closed": len(closes)}


def load_tax(conn: psycopg.Connection, tenant: str, rows: list[TaxRow], *, progress: Progress | None = None) -> dict:
    with conn.transaction():
        conn.execute("INSERT INTO inventory.tenants (tenant_id, name) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                     (tenant, tenant))
        conn.execute("LOCK TABLE inventory.tax_rules IN SHARE ROW EXCLUSIVE MODE")
        stored = conn.execute(EXISTING_TAX, {"tenant": tenant}).fetchall()
        closes = _against_stored(rows, stored, lambda r: (r.jurisdiction, r.category), "tax rules",
                                 lambda k: f"{k[0]}/{k[1]}")
        for rule_id, new_end in closes:
            conn.execute("UPDATE inventory.tax_rules SET valid_to = %s WHERE id = %s", (new_end, rule_id))
        _copy(conn, "inventory.tax_rules (tenant_id, jurisdiction, category, rate_percent, valid_from, valid_to,"
                    " source)",
              ((tenant, r.jurisdiction, r.category, r.rate_percent, r.valid_from, r.valid_to, r.source) for r in rows),
              len(rows), progress)
    return {"loaded": len(rows), "closed": len(closes)}


def _against_stored(rows: list, stored: list[tuple], key: Callable, what: str,
                    name: Callable) -> list[tuple[int, date]]:
    by_key: dict = {}
    for row_id, k1, k2, start, end, source in stored:
        by_key.setdefault((k1.strip(), k2.strip()), []).append((row_id, start, end, source))
    problems, closes = [], []
    for row in sorted(rows, key=lambda r: r.valid_from):
        for row_id, start, end, source in by_key.get(key(row), ()):
            if not row.overlaps(start, end):
                continue
            if end is None and start < row.valid_from:  # the next rate of an open-ended one
                closes.append((row_id, row.valid_from))
                continue
            problems.append(f"line {row.line}: {name(key(row))} from {row.valid_from} overlaps the stored range"
                            f" {start} to {end or 'open'} (id {row_id}, source {source!r})")
    if problems:
        raise LoadRefused(what, problems)
    return closes


def _copy(conn: psycopg.Connection, target: str, rows: Iterable[tuple], total: int, progress: Progress | None) -> None:
    with conn.cursor().copy(f"COPY {target} FROM STDIN") as copy:  # noqa: S608 - fixed names
        for n, row in enumerate(rows, start=1):
            copy.write_row(row)
            if progress is not None and (n % 5000 == 0 or n == total):
                progress(n, total)


# --- completing orders recorded without a rate ---------------------------------------------------

# The same arithmetic as the intake (conveyor.schemas.money.convert): round() on numeric is
# half away from zero, i.e. half-up for amounts >= 0. Each order's rate is the one valid on its
# day (placed_at, UTC), quoted either way, the direct quote first.
BACKFILL = """
WITH done AS (
    UPDATE orders.orders o
    SET base_total = round(CASE WHEN f.inverse THEN o.total / f.rate ELSE o.total * f.rate END, f.units),
        fx_rate = CASE WHEN f.inverse THEN round(1 / f.rate, 12) ELSE f.rate END,
        fx_rate_id = f.id, fx_missing = false, updated_at = now()
    FROM (SELECT o2.order_id, o2.created_at, r.id, r.rate, r.inverse, coalesce(c.minor_units, 4) AS units
          FROM orders.orders o2
          JOIN orders.currencies c ON c.code = o2.base_currency
          CROSS JOIN LATERAL (
              SELECT r.id, r.rate, r.to_currency <> o2.base_currency AS inverse FROM orders.fx_rates r
              WHERE ((r.from_currency, r.to_currency) = (o2.currency, o2.base_currency)
                     OR (r.from_currency, r.to_currency) = (o2.base_currency, o2.currency))
                AND r.valid_from <= (o2.placed_at AT TIME ZONE 'UTC')::date
                AND (r.valid_to IS NULL OR r.valid_to > (o2.placed_at AT TIME ZONE 'UTC')::date)
              ORDER BY 3 LIMIT 1) r
          WHERE o2.fx_missing AND (%(tenant)s::text IS NULL OR o2.tenant_id = %(tenant)s)) f
    WHERE o.order_id = f.order_id AND o.created_at = f.created_at
    RETURNING o.created_at
)
SELECT count(*), (min(created_at) AT TIME ZONE 'UTC')::date FROM done
"""
STILL_MISSING = ("SELECT count(*) FROM orders.orders"
                 " WHERE fx_missing AND (%(tenant)s::text IS NULL OR tenant_id = %(tenant)s)")


def backfill(conn: psycopg.Connection, *, tenant: str | None = None) -> dict:
    """Give every flagged order whose rate is now loaded its base total, and refresh the
    daily summaries from the first day touched. Orders still without a rate stay flagged."""
    with conn.transaction():
        row = conn.execute(BACKFILL, {"tenant": tenant}).fetchone()
        completed, since = (row[0], row[1]) if row else (0, None)
        if since is not None:
            conn.execute("SELECT maintenance.conveyor_refresh_summaries(%s)", (since,))
        missing = conn.execute(STILL_MISSING, {"tenant": tenant}).fetchone()
    return {"completed": completed, "still_missing": missing[0] if missing else 0,
            "summaries_refreshed_from": since}


# --- tenants' settings ---------------------------------------------------------------------------

def set_tenant(conn: psycopg.Connection, tenant: str, *, base_currency: str | None = None,
               prices_include_tax: bool | None = None) -> None:
    if base_currency is not None:
        money.minor_units(base_currency)
    with conn.transaction():
        conn.execute("INSERT INTO inventory.tenants (tenant_id, name) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                     (tenant, tenant))
        conn.execute("UPDATE inventory.tenants SET base_currency = coalesce(%s, base_currency),"
                     " prices_include_tax = coalesce(%s, prices_include_tax) WHERE tenant_id = %s",
                     (base_currency, prices_include_tax, tenant))


# --- the revenue report --------------------------------------------------------------------------

REVENUE = """
SELECT s.day, s.tenant_id, s.status, coalesce(s.base_currency, t.base_currency)::text AS base_currency,
       sum(s.orders)::bigint, sum(s.base_amount), sum(s.unconverted)::bigint, sum(s.tax_amount)
FROM orders.daily_summaries s JOIN inventory.tenants t USING (tenant_id)
WHERE (%(since)s::date IS NULL OR s.day >= %(since)s) AND (%(until)s::date IS NULL OR s.day <= %(until)s)
  AND (%(tenant)s::text IS NULL OR s.tenant_id = %(tenant)s)
GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3
"""


@dataclass(frozen=True, slots=True)
class RevenueRow:
    day: date
    tenant_id: str
    status: str
    base_currency: str
    orders: int
    amount: Decimal           # in the base currency; the orders still without a rate are left out
    unconverted: int          # orders without a rate (fx_missing, or recorded before V019)
    tax: Decimal | None


def revenue(conn: psycopg.Connection, *, since: date | None = None, until: date | None = None,
            tenant: str | None = None) -> list[RevenueRow]:
    rows = conn.execute(REVENUE, {"since": since, "until": until, "tenant": tenant}).fetchall()
    return [RevenueRow(d, t, s, b, n, a if a is not None else Decimal(0), u, x) for d, t, s, b, n, a, u, x in rows]
