"""Money commands (docs/money.md): ``conveyor fx load|backfill|base``, ``conveyor tax load|prices``,
``conveyor report revenue``.

Exit codes: 0 done; 1 the file breaks the rules (each problem with its line, nothing applied);
2 bad usage (an unknown currency on the command line, a bad date); 3 the database is
unreachable; 4 the file does not exist.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path

from conveyor.workers.cli.base import (
    EXIT_FAILED,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_USAGE,
    command,
    emit,
    json_flag,
    tenant_flag,
)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    fx = sub.add_parser("fx", help="exchange rates: load a file, complete orders recorded without a rate")
    fx_sub = fx.add_subparsers(dest="fx_command", required=True, metavar="ACTION")
    p = fx_sub.add_parser("load", help="load rates from a CSV (from,to,rate,valid_from,valid_to,source) "
                                       "or an ECB daily file")
    p.add_argument("file", type=Path)
    p.add_argument("--source", default=None, help="the source recorded when the file has no source column")
    json_flag(p)
    p = fx_sub.add_parser("backfill", help="give orders flagged fx_missing their base total, now that rates exist")
    tenant_flag(p)
    json_flag(p)
    p = fx_sub.add_parser("base", help="set a tenant's base currency")
    p.add_argument("tenant")
    p.add_argument("currency")
    json_flag(p)

    tax = sub.add_parser("tax", help="tax rules per tenant and the tenant's price model")
    tax_sub = tax.add_subparsers(dest="tax_command", required=True, metavar="ACTION")
    p = tax_sub.add_parser("load", help="load rules from a CSV (jurisdiction,category,rate_percent,"
                                        "valid_from,valid_to,source)")
    p.add_argument("file", type=Path)
    tenant_flag(p)
    json_flag(p)
    p = tax_sub.add_parser("prices", help="whether a tenant's prices include tax")
    p.add_argument("tenant")
    p.add_argument("model", choices=("inclusive", "exclusive"))
    json_flag(p)

    report = sub.add_parser("report", help="business reports from the daily summaries")
    report_sub = report.add_subparsers(dest="report_command", required=True, metavar="ACTION")
    p = report_sub.add_parser("revenue", help="revenue per day and status in each tenant's base currency")
    p.add_argument("--from", dest="since", type=date.fromisoformat, default=None, help="first day (YYYY-MM-DD)")
    p.add_argument("--to", dest="until", type=date.fromisoformat, default=None, help="last day, included")
    p.add_argument("--tenant", default=None, help="one tenant (default: all)")
    json_flag(p)


def _progress(args: argparse.Namespace):
    if getattr(args, "json", False) or not sys.stderr.isatty():
        return lambda done, total: print(f"loaded {done}/{total} rows", file=sys.stderr) if done == total else None
    return lambda done, total: print(f"\rloaded {done}/{total} rows", end="\n" if done == total else "",
                                     file=sys.stderr, flush=True)


def _load(args: argparse.Namespace, parse, apply) -> int:
    from conveyor.db.connection import connect
    from conveyor.db.money import LoadRefused

    if not args.file.is_file():
        emit(args, {"error": "not_found", "file": str(args.file)}, f"no file {args.file}")
        return EXIT_NOT_FOUND
    try:
        rows = parse(args.file.read_text(encoding="utf-8-sig"))
        print(f"{args.file}: {len(rows)} valid rows", file=sys.stderr)
        with connect(args.settings.database_url) as conn:
            result = apply(conn, rows, _progress(args))
    except LoadRefused as refused:
        emit(args, {"error": "refused", "applied": 0, "problems": refused.problems},
             "\n".join([f"{args.file}: refused, nothing applied:", *(f"  {p}" for p in refused.problems)]))
        return EXIT_FAILED
    except UnicodeDecodeError as error:
        emit(args, {"error": "refused", "problems": [f"not UTF-8: {error}"]}, f"{args.file}: not UTF-8: {error}")
        return EXIT_FAILED
    emit(args, {"file": str(args.file), **result},
         f"{args.file}: loaded {result['loaded']} rows"
         + (f", closed {result['closed']} open-ended ones" if result["closed"] else ""))
    return EXIT_OK


@command("fx load")
def fx_load(args: argparse.Namespace) -> int:
    from conveyor.db import money

    return _load(args, lambda text: money.parse_fx(text, source=args.source or args.file.name),
                 lambda conn, rows, progress: money.load_fx(conn, rows, progress=progress))


@command("tax load")
def tax_load(args: argparse.Namespace) -> int:
    from conveyor.db import money

    tenant = args.tenant or args.settings.default_tenant
    return _load(args, lambda text: money.parse_tax(text, source=args.file.name),
                 lambda conn, rows, progress: money.load_tax(conn, tenant, rows, progress=progress))


@command("fx backfill")
def fx_backfill(args: argparse.Namespace) -> int:
    from conveyor.db import money
    from conveyor.db.connection import connect

    with connect(args.settings.database_url) as conn:
        result = money.backfill(conn, tenant=args.tenant)
    emit(args, result, f"completed {result['completed']} orders; {result['still_missing']} still without a rate")
    return EXIT_OK


@command("fx base")
def fx_base(args: argparse.Namespace) -> int:
    return _set_tenant(args, base_currency=args.currency.upper())


@command("tax prices")
def tax_prices(args: argparse.Namespace) -> int:
    return _set_tenant(args, prices_include_tax=args.model == "inclusive")


def _set_tenant(args: argparse.Namespace, **settings) -> int:
    from conveyor.db import money
    from conveyor.db.connection import connect
    from conveyor.schemas.money import MoneyError

    try:
        with connect(args.settings.database_url) as conn:
            money.set_tenant(conn, args.tenant, **settings)
    except MoneyError as error:
        emit(args, {"error": "usage", "detail": str(error)}, str(error))
        return EXIT_USAGE
    emit(args, {"tenant": args.tenant, **settings}, f"tenant {args.tenant}: {settings}")
    return EXIT_OK


@command("report revenue")
def report_revenue(args: argparse.Namespace) -> int:
    from conveyor.db import money
    from conveyor.db.connection import connect_reader

    with connect_reader(args.settings.database_read_url, args.settings.database_url) as conn:
        rows = money.revenue(conn, since=args.since, until=args.until, tenant=args.tenant)
    data = [{"day": r.day.isoformat(), "tenant_id": r.tenant_id, "status": r.status,
             "currency": r.base_currency, "orders": r.orders, "amount": f"{r.amount:f}",
             "unconverted_orders": r.unconverted, "tax": None if r.tax is None else f"{r.tax:f}"} for r in rows]
    text = "\n".join([f"{'day':<10} {'tenant':<16} {'status':<10} {'orders':>8} {'amount':>18} cur  unconverted",
                      *(f"{d['day']:<10} {d['tenant_id']:<16} {d['status']:<10} {d['orders']:>8} {d['amount']:>18} "
                        f"{d['currency']}  {d['unconverted_orders']}" for d in data)]) if data else "no summaries"
    emit(args, data, text)
    return EXIT_OK
