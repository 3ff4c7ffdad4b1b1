"""``conveyor stock set|show``: stock levels by SKU."""

from __future__ import annotations

import argparse

from conveyor.workers.cli.base import EXIT_NOT_FOUND, EXIT_OK, command, emit, json_flag, tenant_flag


def add_parsers(sub: argparse._SubParsersAction) -> None:
    stock = sub.add_parser("stock", help="inspect or set stock levels")
    stock_sub = stock.add_subparsers(dest="stock_command", required=True, metavar="ACTION")
    p = stock_sub.add_parser("set", help="set on-hand quantity (creates the SKU if new)")
    p.add_argument("sku")
    p.add_argument("quantity", type=int)
    tenant_flag(p)
    json_flag(p)
    p = stock_sub.add_parser("show", help="show on hand, reserved and available")
    p.add_argument("sku")
    tenant_flag(p)
    json_flag(p)


@command("stock set")
def stock_set(args: argparse.Namespace) -> int:
    from conveyor.db import views
    from conveyor.db.connection import connect, transaction
    from conveyor.db.stock import StockRepository

    tenant = args.tenant or args.settings.default_tenant
    if args.quantity < 0:
        raise ValueError("quantity must be >= 0")
    with connect(args.settings.database_url) as conn, transaction(conn):
        StockRepository(conn).set_on_hand(tenant, args.sku, args.quantity)
        shown = views.stock(conn, tenant, args.sku)
    if shown is None:  # just written in the same transaction
        raise RuntimeError(f"SKU {args.sku!r} vanished after it was set")
    emit(args, shown, _stock_text(shown))
    return EXIT_OK


@command("stock show")
def stock_show(args: argparse.Namespace) -> int:
    from conveyor.db import views
    from conveyor.db.connection import connect_reader

    tenant = args.tenant or args.settings.default_tenant
    with connect_reader(args.settings.database_read_url, args.settings.database_url) as conn:
        shown = views.stock(conn, tenant, args.sku)
    if shown is None:
        emit(args, {"error": "not_found", "sku": args.sku, "tenant_id": tenant},
             f"no SKU {args.sku!r} for tenant {tenant!r}")
        return EXIT_NOT_FOUND
    emit(args, shown, _stock_text(shown))
    return EXIT_OK


def _stock_text(s: dict) -> str:
    return (f"{s['sku']} (tenant {s['tenant_id']}): on hand {s['on_hand']}, reserved {s['reserved']}, "
            f"available {s['available']}, version {s['version']}")

