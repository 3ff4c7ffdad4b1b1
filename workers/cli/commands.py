"""What each ``conveyor`` sub-command does (the parser lives in ``conveyor.workers.cli``)."""

from __future__ import annotations

import argparse

from conveyor.workers.cli import EXIT_FAILED, EXIT_NOT_FOUND, EXIT_OK, EXIT_UNAVAILABLE, command, emit


@command("db migrate")
def db_migrate(args: argparse.Namespace) -> int:
    from conveyor.db.migrate import ensure_partitions, migrate

    applied = migrate(args.settings.database_url)
    partitions = ensure_partitions(args.settings.database_url)
    text = "\n".join([f"applied {name}" for name in applied] or ["database is up to date"])
    emit(args, {"applied": applied, "partitions_created": partitions}, text)
    return EXIT_OK


@command("db status")
def db_status(args: argparse.Namespace) -> int:
    from conveyor.db.migrate import status

    states = status(args.settings.database_url)
    rows = [{"version": s.migration.version, "file": s.migration.filename, "status": s.status,
             "applied_at": s.applied_at} for s in states]
    text = "\n".join(f"{r['version']:>4}  {r['status']:<8}  {r['file']}  {r['applied_at'] or ''}"
                     for r in rows) or "no migrations"
    emit(args, rows, text)
    return EXIT_FAILED if any(s.status == "modified" for s in states) else EXIT_OK


@command("db partitions")
def db_partitions(args: argparse.Namespace) -> int:
    from conveyor.db.migrate import ensure_partitions

    created = ensure_partitions(args.settings.database_url, months_ahead=args.months)
    emit(args, {"created": created}, "\n".join(f"created {p}" for p in created) or "partitions exist")
    return EXIT_OK


@command("topology declare")
def topology_declare(args: argparse.Namespace) -> int:
    from conveyor.workers.bootstrap import WORKERS, declare_topology

    declare_topology(args.settings)
    print(f"declared exchanges and queues for {', '.join(WORKERS)}")
    return EXIT_OK


@command("run")
def run(args: argparse.Namespace) -> int:
    from conveyor.workers.bootstrap import check_names, run as run_workers
    from conveyor.workers.runtime.processes import run_copies

    if args.processes > 1:
        check_names(args.workers)
        return run_copies(args.workers, processes=args.processes)
    return run_workers(args.workers, args.settings)


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
    emit(args, shown, _stock_text(shown))
    return EXIT_OK


@command("stock show")
def stock_show(args: argparse.Namespace) -> int:
    from conveyor.db import views
    from conveyor.db.connection import connect

    tenant = args.tenant or args.settings.default_tenant
    with connect(args.settings.database_url) as conn:
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


@command("order show")
def order_show(args: argparse.Namespace) -> int:
    from conveyor.db import views
    from conveyor.db.connection import connect

    with connect(args.settings.database_url) as conn:
        order = views.order(conn, args.order_id)
    if order is None:
        emit(args, {"error": "not_found", "order_id": str(args.order_id)}, f"no order {args.order_id}")
        return EXIT_NOT_FOUND
    lines = "\n".join(f"  {l['line_no']:>3} {l['sku']:<20} x{l['quantity']:<5} {l['unit_price']:>10}"
                      f"  {l['status']}{' (' + l['reason'] + ')' if l['reason'] else ''}"
                      for l in order["lines"])
    text = (f"order {order['order_id']} [{order['status']}] tenant {order['tenant_id']} "
            f"total {order['total']} {order['currency']}\n{lines}")
    if order["status_reason"]:
        text += f"\n  reason: {order['status_reason']}"
    emit(args, order, text)
    return EXIT_OK


@command("health")
def health(args: argparse.Namespace) -> int:
    from conveyor.workers.cli.health import check

    results = check(args.settings, database=args.database or not args.broker,
                    broker=args.broker or not args.database)
    ok = all(r["ok"] for r in results.values())
    emit(args, {"ok": ok, "checks": results},
         "\n".join(f"{name}: {'ok' if r['ok'] else 'FAIL ' + r['error']}" for name, r in results.items()))
    return EXIT_OK if ok else EXIT_UNAVAILABLE


@command("demo")
def demo(args: argparse.Namespace) -> int:
    from conveyor.workers.demo import run_demo

    return run_demo(args)


@command("reconcile")
def reconcile(args: argparse.Namespace) -> int:
    from conveyor.db.connection import connect
    from conveyor.db.reconcile import run_checks, totals

    with connect(args.settings.database_url) as conn:
        drift = run_checks(conn, limit=args.limit)
        summary = totals(conn)
    drifted = {name: rows for name, rows in drift.items() if rows}
    report = {"ok": not drifted, "totals": summary, "drift": drift}
    lines = [f"{summary['skus']} SKUs, on hand {summary['on_hand']}, reserved {summary['reserved']}"]
    lines += [f"{name}: {'ok' if not rows else f'{len(rows)} drifted'}" for name, rows in drift.items()]
    lines += [f"  {name}: {row}" for name, rows in drifted.items() for row in rows[:10]]
    lines.append("no drift" if not drifted else "DRIFT FOUND")
    emit(args, report, "\n".join(lines))
    return EXIT_OK if not drifted else EXIT_FAILED
