"""Liveness of the dependencies: can we reach the database and the broker right now."""

from __future__ import annotations

from conveyor.workers.config import Settings
from conveyor.workers.logging import redact_url


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
