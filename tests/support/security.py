"""Throwaway login roles for the security tests, and what "the tables are intact" means.

Roles are cluster-wide: each login gets a unique name and is dropped at the end, while the
group roles it joins (conveyor_owner, conveyor_worker, conveyor_readonly; V005) stay.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
from psycopg import sql


@contextmanager
def login_role(admin_url: str, group: str) -> Iterator[tuple[str, str]]:
    """A LOGIN role with a password, member of ``group``; yields (name, password)."""
    name, password = f"conveyor_t_{secrets.token_hex(5)}", f"pw-{secrets.token_hex(12)}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} IN ROLE {}").format(
            sql.Identifier(name), sql.Literal(password), sql.Identifier(group)))
    try:
        yield name, password
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (name,))
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


def url_as(database_url: str, user: str, password: str) -> str:
    """The same database, logged in as ``user``."""
    parts = urlsplit(database_url)
    host = parts.hostname + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"))


SCHEMA = """
SELECT c.relname, c.relkind, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull
FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')
ORDER BY 1, 3
"""
CATALOGUE = """
SELECT (SELECT count(*) FROM tenants), (SELECT count(*) FROM products), (SELECT count(*) FROM stock_levels),
       (SELECT coalesce(sum(on_hand), 0) FROM stock_levels WHERE sku NOT LIKE 'seed-%%'),
       (SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal),
       (SELECT count(*) FROM pg_policy), (SELECT count(*) FROM pg_proc WHERE pronamespace = 'public'::regnamespace)
"""


def schema_snapshot(database_url: str) -> tuple:
    """Every table and column, triggers, policies, functions, and the catalogue's row counts:
    a dropped, truncated or altered table changes it."""
    with psycopg.connect(database_url) as conn:
        return tuple(conn.execute(SCHEMA).fetchall()), conn.execute(CATALOGUE).fetchone()
