"""The one advisory-lock key scheme: a signed 64-bit key per (tenant, SKU).

Every locker uses ``pg_advisory_xact_lock(bigint)`` with these keys, taken in one
sorted pass per transaction, so two transactions can never wait on each other in a cycle.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from functools import lru_cache

import psycopg

from conveyor.db.arrays import int_array

LOCK_MANY = "SELECT pg_advisory_xact_lock(k) FROM unnest(%(keys)s::bigint[]) AS k"  # one literal: conveyor.db.arrays


@lru_cache(maxsize=65_536)  # a hash per pair is most of a batch's locking cost in Python
def stock_lock_key(tenant_id: str, sku: str) -> int:
    digest = hashlib.blake2b(f"stock\x1f{tenant_id}\x1f{sku}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def sorted_keys(pairs: Iterable[tuple[str, str]]) -> list[int]:
    return sorted({stock_lock_key(tenant, sku) for tenant, sku in pairs})


def lock_stock(conn: psycopg.Connection, pairs: Iterable[tuple[str, str]]) -> None:
    """Take the transaction-scoped locks of every (tenant, SKU) in key order, in one round trip."""
    keys = sorted_keys(pairs)
    if keys:
        # unnest yields the array in order, so the locks are taken in sorted key order.
        conn.execute(LOCK_MANY, {"keys": int_array(keys)})
