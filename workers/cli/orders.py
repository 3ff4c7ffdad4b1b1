"""``conveyor order show``: one order with its lines and reservations."""

from __future__ import annotations

import argparse
from uuid import UUID

from conveyor.workers.cli.base import EXIT_NOT_FOUND, EXIT_OK, command, emit, json_flag


def add_parsers(sub: argparse._SubParsersAction) -> None:
    order = sub.add_parser("order", help="inspect orders")
    order_sub = order.add_subparsers(dest="order_command", required=True, metavar="ACTION")
    p = order_sub.add_parser("show", help="an order with its lines and reservations")
    p.add_argument("order_id", type=UUID)
    json_flag(p)


@command("order show")
def order_show(args: argparse.Namespace) -> int:
    from conveyor.db import views
    from conveyor.db.connection import connect_reader

    with connect_reader(args.settings.database_read_url, args.settings.database_url) as conn:
        order = views.order(conn, args.order_id)
    if order is None:
        emit(args, {"error": "not_found", "order_id": str(args.order_id)}, f"no order {args.order_id}")
        return EXIT_NOT_FOUND
    lines = "\n".join(f"  {ln['line_no']:>3} {ln['sku']:<20} x{ln['quantity']:<5} {ln['unit_price']:>10}"
                      f"  {ln['status']}{' (' + ln['reason'] + ')' if ln['reason'] else ''}"
                      for ln in order["lines"])
    text = (f"order {order['order_id']} [{order['status']}] tenant {order['tenant_id']} "
            f"total {order['total']} {order['currency']}\n{lines}")
    if order["status_reason"]:
        text += f"\n  reason: {order['status_reason']}"
    emit(args, order, text)
    return EXIT_OK

