"""``conveyor health``: can we reach the database and the broker right now (exit 0 or 3)."""

from __future__ import annotations

import argparse

from conveyor.workers.cli.base import EXIT_OK, EXIT_UNAVAILABLE, command, emit, json_flag
from conveyor.workers.config import Settings
from conveyor.workers.logging import redact_url


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("health", help="exit 0 when the database and/or broker answer")
    p.add_argument("--database", action="store_true", help="check the database")
    p.add_argument("--broker", action="store_true", help="check the broker")
    json_flag(p)


@command("health")
def health(args: argparse.Namespace) -> int:
    results = check(args.settings, database=args.database or not args.broker,
                    broker=args.broker or not args.database)
    ok = all(r["ok"] for r in results.values())
    emit(args, {"ok": ok, "checks": results},
         "\n".join(f"{name}: {'ok' if r['ok'] else 'FAIL ' + r['error']}" for name, r in results.items()))
    return EXIT_OK if ok else EXIT_UNAVAILABLE


def check(settings: Settings, *, database: bool = True, broker: bool = True) -> dict[str, dict]:
    results: dict[str, dict] = {}
    if database:
        results["database"] = _probe(lambda: _database(settings))
    if broker:
        results["broker"] = _probe(lambda: _broker(settings))
    return results


def _probe(fn) -> dict:
    try:
        fn()
        return {"ok": True, "error": ""}
    except Exception as error:  # noqa: BLE001 - reported, not raised
        return {"ok": False, "error": redact_url(f"{type(error).__name__}: {error}".splitlines()[0])[:300]}


def _database(settings: Settings) -> None:
    from conveyor.db import views
    from conveyor.db.connection import connect

    with connect(settings.database_url) as conn:
        views.ping(conn)


def _broker(settings: Settings) -> None:
    from conveyor.workers.runtime import amqp

    connection = amqp.connect(settings, name="health")
    connection.close()
