"""Safe start: a worker consumes nothing until the database's schema is what its code needs.

On a database whose migrations are pending (never migrated, or an older release) or edited,
every message would fail (``relation "inbox" does not exist``) and march through the retry
tiers into the DLQ. So ``conveyor run`` first compares ``schema_history`` with its own
migrations; until they match it logs one line naming what is missing (again only when that
changes; a failed check, e.g. the database unreachable, every time), consumes nothing, and
checks again every ``CONVEYOR_SCHEMA_CHECK_INTERVAL`` seconds: ``docker compose up`` heals
by itself once the migrate job finishes. A database ahead of the code (a newer release
migrated) is accepted with a warning: expand/contract deploys run the previous code on the
newer schema.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from conveyor.db.errors import DatabaseError
from conveyor.db.migrate import SchemaCheck, check_schema
from conveyor.workers.logging import get_logger
from conveyor.workers.observability.metrics import SCHEMA_PENDING

log = get_logger("conveyor.schema")


def wait_until_migrated(database_url: str, *, stop: threading.Event, interval: float,
                        check: Callable[[str], SchemaCheck] = check_schema,
                        report: Callable[[str | None], None] = lambda problem: None) -> bool:
    """Block until the schema is ready; False when ``stop`` was set first. ``report`` hears
    what is missing at every check (``None`` once ready): the readiness probe shows it."""
    reported: object = None
    while not stop.is_set():
        try:
            result = check(database_url)
        except DatabaseError as error:  # logged every time: an outage should be seen to last
            state: object = ("unreachable", type(error).__name__)
            report(f"schema unknown: the database did not answer ({type(error).__name__})")
            log.warning("schema_check_failed", error=str(error)[:300], retry_in_s=interval)
        else:
            SCHEMA_PENDING.set(len(result.pending) + len(result.modified))
            if result.ready:
                _report_ready(result, waited=reported is not None)
                report(None)
                return True
            state = (tuple(result.pending), tuple(result.modified))
            report(_missing(result))
            if state != reported:
                log.error("schema_not_ready", pending=result.pending, modified=result.modified,
                          hint="run `conveyor db migrate`; consuming nothing until then", retry_in_s=interval)
        reported = state
        stop.wait(interval)
    return False


def _missing(result: SchemaCheck) -> str:
    parts = [f"pending migrations: {', '.join(result.pending)}"] if result.pending else []
    parts += [f"edited migrations: {', '.join(result.modified)}"] if result.modified else []
    return "; ".join(parts) + " (run `conveyor db migrate`)"


def _report_ready(result: SchemaCheck, *, waited: bool) -> None:
    if result.ahead:
        log.warning("schema_ahead_of_code", applied_unknown=result.ahead)
    if waited:
        log.info("schema_ready")
