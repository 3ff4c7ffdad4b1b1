"""Session settings that hold whether or not a transaction-pooling PgBouncer sits in front.

Conveyor's connections want a lock timeout, a statement timeout, its search path and a
random_page_cost (``connection.session_settings``). Straight to PostgreSQL they travel as the
libpq startup parameter ``options``, once per connection. PgBouncer refuses that parameter
(``unsupported startup parameter: options``) or, told to ignore it, drops it silently; and in
transaction pooling a plain ``SET`` would leak to whichever client gets the server
connection next. So the mode is found out per URL, the first time Conveyor connects to it:

- ``direct``: the server took ``options`` and a look at ``lock_timeout`` shows it applied;
- ``pooled``: the server refused ``options``, or applied none of it. Then every outermost
  transaction starts by setting the values with ``set_config(..., true)`` (``SET LOCAL``: they
  end with the transaction, on whichever server connection it ran), and psycopg's automatic
  prepared statements are off (PgBouncer 1.18, Debian's, does not carry them between server
  connections; 1.21 would). A statement outside any transaction runs with the database's own
  settings (its search path is set on the database too, V013).

``ConveyorConnection`` is the psycopg connection class that does the per-transaction part;
``open_connection`` connects the right way for the URL.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import structlog
from psycopg import Transaction
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import TransactionStatus
from psycopg.rows import TupleRow

log = structlog.get_logger("conveyor.db")

SET_LOCAL = ("SELECT set_config('lock_timeout', %(lock_timeout)s, true), "
             "set_config('statement_timeout', %(statement_timeout)s, true), "
             "set_config('search_path', %(search_path)s, true), "
             "set_config('random_page_cost', %(random_page_cost)s, true)")
APPLIED = "SELECT (SELECT setting FROM pg_settings WHERE name = 'lock_timeout'), current_setting('search_path')"
REFUSED_OPTIONS = "unsupported startup parameter"

_modes: dict[str, str] = {}   # URL -> "direct" | "pooled", found at the first connect
_modes_lock = threading.Lock()


class ConveyorConnection(psycopg.Connection[TupleRow]):
    """A psycopg connection that, behind a pooler, sets Conveyor's session settings at the
    start of every outermost transaction (``local_settings``; None straight to the server)."""

    local_settings: dict[str, str] | None = None

    @contextmanager
    def transaction(self, savepoint_name: str | None = None,
                    force_rollback: bool = False) -> Iterator[Transaction]:
        outermost = self.info.transaction_status == TransactionStatus.IDLE
        with super().transaction(savepoint_name, force_rollback) as tx:
            if outermost and self.local_settings is not None:
                self.execute(SET_LOCAL, self.local_settings)
            yield tx


def local_settings_of(conn: psycopg.Connection) -> dict[str, str] | None:
    """The per-transaction settings of a pooled connection; None for a direct one."""
    return conn.local_settings if isinstance(conn, ConveyorConnection) else None


def pooled(url: str) -> bool:
    """Whether Conveyor found a pooler between it and the server at ``url`` (False if unknown)."""
    return _modes.get(url) == "pooled"


def open_connection(url: str, kwargs: dict[str, Any], settings: dict[str, str]) -> ConveyorConnection:
    """Connect to ``url`` with ``kwargs`` (``options`` among them), as its mode needs."""
    mode = _modes.get(url)
    if mode == "pooled":
        return _pooled_connection(url, kwargs, settings)
    try:
        conn = ConveyorConnection.connect(url, **kwargs)
    except psycopg.OperationalError as error:
        if REFUSED_OPTIONS not in str(error):
            raise
        _found(url, "pooled", "the server refused the startup parameter `options` (a pooler such as PgBouncer)")
        return _pooled_connection(url, kwargs, settings)
    if mode is None and not _options_applied(conn, settings):
        conn.close()
        _found(url, "pooled", "the startup parameter `options` was dropped (PgBouncer's ignore_startup_parameters)")
        return _pooled_connection(url, kwargs, settings)
    _found(url, "direct", "")
    return conn


def pool_kwargs(url: str, kwargs: dict[str, Any], settings: dict[str, str]) -> dict[str, Any]:
    """The kwargs a connection pool should open ``url``'s connections with (its mode found first)."""
    open_connection(url, kwargs, settings).close()
    if not pooled(url):
        return kwargs
    return {key: value for key, value in kwargs.items() if key != "options"} | {"prepare_threshold": None}


def configure_pooled(url: str, settings: dict[str, str]) -> Any:
    """The pool's ``configure`` callback: a new connection gets its per-transaction settings."""
    def configure(conn: psycopg.Connection) -> None:
        if pooled(url) and isinstance(conn, ConveyorConnection):
            conn.local_settings = settings
    return configure


def _pooled_connection(url: str, kwargs: dict[str, Any], settings: dict[str, str]) -> ConveyorConnection:
    safe = {key: value for key, value in kwargs.items() if key != "options"}
    conn = ConveyorConnection.connect(url, **safe, prepare_threshold=None)
    conn.local_settings = settings
    return conn


def _options_applied(conn: psycopg.Connection, settings: dict[str, str]) -> bool:
    row = conn.execute(APPLIED).fetchone()
    return row is not None and (row[0], row[1]) == (
        settings["lock_timeout"].removesuffix("ms"), settings["search_path"])


def _found(url: str, mode: str, why: str) -> None:
    with _modes_lock:
        known = _modes.get(url)
        _modes[url] = mode
    if known != mode and mode == "pooled":
        log.warning("database_pooler_detected", url=_without_password(url), why=why,
                    effect="session settings are set per transaction; prepared statements are off")


def _without_password(url: str) -> str:
    try:
        parts = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "(unparsable URL)"
    return f"{parts.get('host', '?')}:{parts.get('port', '5432')}/{parts.get('dbname', '?')}"
