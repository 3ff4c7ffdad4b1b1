"""Isolation on PostgreSQL: a fresh, uniquely named database per user (optionally cloned from a
sealed template), dropped afterwards."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import psycopg
from psycopg import sql

from conveyor.devservices.base import _NAME_PREFIX, DevServicesError, Services


def database_name(database_url: str) -> str:
    """The database a postgresql:// URL points at."""
    return unquote(urlsplit(database_url).path.lstrip("/"))


def database_url_for(database_url: str, name: str) -> str:
    """The same server, credentials and query string, another database."""
    parts = urlsplit(database_url)
    return urlunsplit(parts._replace(path="/" + quote(name, safe="")))


def create_database(services: Services, *, prefix: str = "conveyor_test", template: str | None = None) -> str:
    """CREATE DATABASE with a unique name (cloned from ``template`` if given); return its URL.

    A template must have no open connections: see :func:`seal_template`.
    """
    name = _unique_name(prefix, "_")
    statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template is not None:
        statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
    with _admin_connection(services) as conn:
        try:
            conn.execute(statement)
        except psycopg.errors.ObjectInUse as exc:
            raise DevServicesError(
                f"cannot clone {template!r}: it has open connections (seal_template() it after migrating)"
            ) from exc
        if template is not None:
            _copy_settings(conn, template, name)
    return database_url_for(services.database_url, name)


def create_database_from_template(services: Services, template: str, *, prefix: str = "conveyor_test") -> str:
    """CREATE DATABASE <unique> TEMPLATE <template>; return its URL (a block copy: ~50-150 ms here)."""
    return create_database(services, prefix=prefix, template=template)


def drop_database(services: Services, database_url_or_name: str) -> None:
    """DROP DATABASE IF EXISTS ... WITH (FORCE): open connections are terminated."""
    name = database_name(database_url_or_name) if "://" in database_url_or_name else database_url_or_name
    with _admin_connection(services) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def seal_template(services: Services, name: str) -> None:
    """Forbid new connections to ``name`` and end the open ones, so it can be cloned."""
    with _admin_connection(services) as conn:
        conn.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(sql.Identifier(name)))
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )


@contextmanager
def fresh_database(
    services: Services, *, prefix: str = "conveyor_test", template: str | None = None
) -> Iterator[str]:
    """Yield the URL of a new, uniquely named database; drop it (WITH (FORCE)) afterwards."""
    url = create_database(services, prefix=prefix, template=template)
    try:
        yield url
    finally:
        drop_database(services, url)


def _copy_settings(conn: psycopg.Connection, template: str, name: str) -> None:
    """CREATE DATABASE ... TEMPLATE copies the data, not the database's own settings (the
    search_path a migration set with ALTER DATABASE): copy those too."""
    row = conn.execute("SELECT s.setconfig FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase"
                       " WHERE d.datname = %(template)s AND s.setrole = 0", {"template": template}).fetchone()
    for setting in (row[0] if row else None) or []:
        key, _, value = setting.partition("=")
        conn.execute(sql.SQL("ALTER DATABASE {} SET {} = {}").format(
            sql.Identifier(name), sql.Identifier(key), sql.SQL(value)))


def _admin_connection(services: Services) -> psycopg.Connection:
    return psycopg.connect(services.database_url, autocommit=True, connect_timeout=10)


def _unique_name(prefix: str, separator: str) -> str:
    if not _NAME_PREFIX.match(prefix):
        raise ValueError(f"prefix {prefix!r} must match {_NAME_PREFIX.pattern}")
    return f"{prefix}{separator}{secrets.token_hex(6)}"
