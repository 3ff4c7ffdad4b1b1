"""Customers' personal data at the storage edge (V013 ``privacy`` schema, docs/privacy.md).

Each customer gets a data key of their own (``privacy.customer_keys``), wrapped by the current
key of ``CONVEYOR_PII_KEY_FILE`` (``conveyor.db.crypto``); each order's ``customer`` object is
sealed with it (``privacy.order_customers``, the order id as associated data). Erasing a
customer deletes their data key, which makes every sealed copy unreadable, the archived ones
included. Plaintext never leaves this module for SQL: only sealed bytes and wrapped keys do.
"""

from __future__ import annotations

import base64
import os
from collections import OrderedDict
from dataclasses import dataclass
from uuid import UUID

import psycopg
from pydantic import TypeAdapter

from conveyor.db.crypto import Keyring, PiiError, load_keyring, new_data_key, open_sealed, seal
from conveyor.db.errors import IntegrityViolation, TransientDatabaseError

# Every customer of the batch gets the data key it already has, or the candidate sent along.
# A key another transaction inserted after this statement's snapshot is missing from the
# result (ON CONFLICT waited for that transaction to commit): KEYS_OF reads it right after.
KEYS_FOR = """
WITH wanted AS (
    SELECT * FROM jsonb_to_recordset(%(keys)s::jsonb) AS w(tenant_id text, customer_id text, key_id text,
                                                           wrapped_key text)
), inserted AS (
    INSERT INTO customer_keys (tenant_id, customer_id, key_id, wrapped_key)
    SELECT tenant_id, customer_id, key_id, decode(wrapped_key, 'base64') FROM wanted ORDER BY 1, 2
    ON CONFLICT (tenant_id, customer_id) DO NOTHING
    RETURNING tenant_id, customer_id, key_id, wrapped_key
)
SELECT tenant_id, customer_id, key_id, wrapped_key FROM inserted
UNION ALL
SELECT k.tenant_id, k.customer_id, k.key_id, k.wrapped_key
FROM customer_keys k JOIN wanted w USING (tenant_id, customer_id)
"""
KEYS_OF = """
SELECT k.tenant_id, k.customer_id, k.key_id, k.wrapped_key
FROM customer_keys k JOIN unnest(%(tenants)s::text[], %(customers)s::text[]) AS w(tenant_id, customer_id)
     USING (tenant_id, customer_id)
"""


@dataclass(slots=True)
class NewCustomer:
    """The personal data of one new order (sealed before it is stored)."""

    order_id: UUID
    tenant_id: str
    customer_id: str
    fields: dict[str, str]


class PersonalDataRefused(IntegrityViolation):
    """Personal data Conveyor may not store as sent (no key configured, key file unusable):
    refused like a constraint violation, so the message is dead-lettered with the reason."""


_KEYS_JSON = TypeAdapter(list[dict[str, str]])
_keyrings: dict[str, tuple[float, Keyring]] = {}


def keyring(path: str | None) -> Keyring:
    """The key file's keyring, read again when the file changed (a rotation adds a key)."""
    if not path:
        raise PersonalDataRefused("the order carries customer data but no PII key is configured "
                                  "(CONVEYOR_PII_KEY_FILE)")
    try:
        mtime = os.stat(path).st_mtime
        cached = _keyrings.get(path)
        if cached is None or cached[0] != mtime:
            _keyrings[path] = (mtime, load_keyring(path))
        return _keyrings[path][1]
    except (OSError, PiiError) as error:
        raise PersonalDataRefused(f"customer data not stored: {error}") from None


# Data keys this process unwrapped lately, by subject: a returning customer's batch needs no
# round trip for its key. A cached key that was rotated or shredded since no longer matches the
# database's row: the intake's statement stores nothing for it, and the batch is retried.
_DATA_KEY_CACHE_SIZE = 20_000
Subject = tuple[str, str]  # (tenant_id, customer_id)
_data_keys: OrderedDict[Subject, tuple[bytes, bytes]] = OrderedDict()  # subject -> (wrapped, data key)


@dataclass(frozen=True)
class Sealed:
    """A batch's customer data, sealed: the JSON the intake's statement inserts (each row with
    the wrapped key it was sealed under, which must still be the customer's) and its count."""

    rows_json: str
    count: int


class PersonalData:
    def __init__(self, conn: psycopg.Connection, key_file: str | None) -> None:
        self._conn = conn
        self._key_file = key_file

    def seal(self, customers: list[NewCustomer]) -> Sealed:
        """Each order's customer data sealed with its customer's data key (one statement for the
        keys of customers this process has not seen lately; none when it has seen them all)."""
        ring = keyring(self._key_file)
        keys = self.data_keys(ring, {(c.tenant_id, c.customer_id) for c in customers})
        rows = [{"order_id": str(c.order_id), "tenant_id": c.tenant_id, "customer_id": c.customer_id,
                 "wrapped": _b64(keys[(c.tenant_id, c.customer_id)][0]),
                 "sealed": _b64(seal(keys[(c.tenant_id, c.customer_id)][1], c.fields, context=str(c.order_id)))}
                for c in customers]
        return Sealed(_KEYS_JSON.dump_json(rows).decode(), len(rows))

    def data_keys(self, ring: Keyring, subjects: set[Subject]) -> dict[Subject, tuple[bytes, bytes]]:
        """(wrapped, data key) per subject: cached, or the database's (created if new)."""
        found = {s: _data_keys[s] for s in subjects if s in _data_keys}
        missing = subjects - set(found)
        if missing:
            for subject, (key_id, wrapped) in self._fetch_or_create(ring, missing).items():
                found[subject] = (wrapped, _unwrap(ring, key_id, wrapped))
                _remember(subject, found[subject])
        return found

    def _fetch_or_create(self, ring: Keyring, subjects: set[Subject]) -> dict[Subject, tuple[str, bytes]]:
        candidates = []
        for tenant_id, customer_id in sorted(subjects):
            key_id, wrapped = ring.wrap(new_data_key())
            candidates.append({"tenant_id": tenant_id, "customer_id": customer_id, "key_id": key_id,
                               "wrapped_key": _b64(wrapped)})
        rows = self._conn.execute(KEYS_FOR, {"keys": _KEYS_JSON.dump_json(candidates).decode()}).fetchall()
        found = {(t, c): (k, bytes(w)) for t, c, k, w in rows}
        late = sorted(subjects - set(found))
        if late:  # created by a concurrent batch, committed while ours waited on it
            rows = self._conn.execute(KEYS_OF, {"tenants": [t for t, _ in late],
                                                "customers": [c for _, c in late]}).fetchall()
            found |= {(t, c): (k, bytes(w)) for t, c, k, w in rows}
        if set(found) != subjects:
            raise TransientDatabaseError("a customer's data key is missing after its creation; retrying")
        return found


def forget(customers: list[NewCustomer]) -> None:
    """Drop the cached keys of a batch whose keys no longer matched (rotated, shredded)."""
    for c in customers:
        _data_keys.pop((c.tenant_id, c.customer_id), None)


def _remember(subject: Subject, entry: tuple[bytes, bytes]) -> None:
    _data_keys[subject] = entry
    _data_keys.move_to_end(subject)
    while len(_data_keys) > _DATA_KEY_CACHE_SIZE:
        _data_keys.popitem(last=False)


def _unwrap(ring: Keyring, key_id: str, wrapped: bytes) -> bytes:
    try:
        return ring.unwrap(key_id, wrapped)
    except PiiError as error:
        raise PersonalDataRefused(f"customer data not stored: {error}") from None


def open_record(ring: Keyring, key_id: str, wrapped: bytes, sealed: bytes, order_id: str) -> dict[str, str]:
    """One order's customer data in clear (``conveyor gdpr export``)."""
    return open_sealed(ring.unwrap(key_id, wrapped), sealed, context=order_id)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# -- privacy requests (``conveyor gdpr``, ``conveyor pii``) -----------------------------------

CUSTOMER_ORDERS = """
SELECT o.order_id::text, o.status, o.total::text, o.currency, o.placed_at, o.created_at
FROM orders o WHERE o.tenant_id = %(tenant)s AND o.customer_id = %(customer)s ORDER BY o.created_at, o.order_id
"""
CUSTOMER_RECORDS = """
SELECT c.order_id::text, k.key_id, k.wrapped_key, c.sealed, c.recorded_at
FROM order_customers c
LEFT JOIN customer_keys k ON k.tenant_id = c.tenant_id AND k.customer_id = c.customer_id
WHERE c.tenant_id = %(tenant)s AND c.customer_id = %(customer)s ORDER BY c.recorded_at, c.order_id
"""
HAS_KEY = "SELECT EXISTS (SELECT FROM customer_keys WHERE tenant_id = %(tenant)s AND customer_id = %(customer)s)"
ERASE_KEY = "DELETE FROM customer_keys WHERE tenant_id = %(tenant)s AND customer_id = %(customer)s"
ERASE_RECORDS = "DELETE FROM order_customers WHERE tenant_id = %(tenant)s AND customer_id = %(customer)s"
PSEUDONYMISE_ORDERS = """
UPDATE orders SET customer_id = %(erased)s WHERE tenant_id = %(tenant)s AND customer_id = %(customer)s
"""
PSEUDONYMISE_OUTBOX = """
UPDATE outbox SET payload = jsonb_set(payload, '{customer_id}', to_jsonb(%(erased)s::text))
WHERE payload->>'customer_id' = %(customer)s AND payload->>'tenant_id' = %(tenant)s
"""
AUDIT = """
INSERT INTO audit.privacy_requests (action, tenant_id, subject_hash, operator, detail)
VALUES (%(action)s, %(tenant)s, %(subject)s, %(operator)s, %(detail)s::jsonb)
"""
ERASED_BEFORE = """
SELECT EXISTS (SELECT FROM audit.privacy_requests WHERE action = 'erase' AND subject_hash = %(subject)s)
"""
KEYS_NOT_CURRENT = """
SELECT tenant_id, customer_id, key_id, wrapped_key FROM customer_keys WHERE key_id <> %(current)s
ORDER BY tenant_id, customer_id LIMIT %(batch)s FOR UPDATE SKIP LOCKED
"""
REWRAP = """
UPDATE customer_keys SET key_id = %(key_id)s, wrapped_key = %(wrapped)s
WHERE tenant_id = %(tenant)s AND customer_id = %(customer)s
"""
KEYS_PER_ID = "SELECT key_id, count(*) FROM customer_keys GROUP BY 1 ORDER BY 1"
SAMPLE_KEYS = "SELECT key_id, wrapped_key FROM customer_keys WHERE key_id = ANY(%(ids)s) LIMIT %(limit)s"
UNKNOWN_KEY_IDS = "SELECT DISTINCT key_id FROM customer_keys WHERE NOT (key_id = ANY(%(ids)s))"


def audit(conn: psycopg.Connection, action: str, *, tenant: str | None, subject: str | None,
          operator: str, detail: str) -> None:
    conn.execute(AUDIT, {"action": action, "tenant": tenant, "subject": subject, "operator": operator,
                         "detail": detail})


def customer_orders(conn: psycopg.Connection, tenant: str, customer: str) -> list[dict]:
    rows = conn.execute(CUSTOMER_ORDERS, {"tenant": tenant, "customer": customer}).fetchall()
    return [{"order_id": o, "status": s, "total": t, "currency": c, "placed_at": p.isoformat(),
             "recorded_at": r.isoformat()} for o, s, t, c, p, r in rows]


def customer_records(conn: psycopg.Connection, ring: Keyring | None, tenant: str, customer: str) -> list[dict]:
    """Each order's customer data in clear (a ring is needed when there is any)."""
    records = []
    for order_id, key_id, wrapped, sealed, recorded_at in conn.execute(
            CUSTOMER_RECORDS, {"tenant": tenant, "customer": customer}).fetchall():
        if ring is None:
            raise PiiError("stored customer data cannot be read: no PII key is configured (CONVEYOR_PII_KEY_FILE)")
        data = open_record(ring, key_id, bytes(wrapped), bytes(sealed), order_id) if key_id else None
        records.append({"order_id": order_id, "recorded_at": recorded_at.isoformat(), "customer": data})
    return records


def has_data_key(conn: psycopg.Connection, tenant: str, customer: str) -> bool:
    row = conn.execute(HAS_KEY, {"tenant": tenant, "customer": customer}).fetchone()
    return bool(row and row[0])


def erased_before(conn: psycopg.Connection, subject: str) -> bool:
    row = conn.execute(ERASED_BEFORE, {"subject": subject}).fetchone()
    return bool(row and row[0])


def erase(conn: psycopg.Connection, tenant: str, customer: str, *, erased_id: str) -> dict[str, int]:
    """Shred the data key, delete the sealed data, replace the id on orders and pending events;
    the caller's transaction makes it all or nothing. Rows touched per step."""
    params = {"tenant": tenant, "customer": customer, "erased": erased_id}
    return {step: conn.execute(statement, params).rowcount for step, statement in (
        ("data_keys", ERASE_KEY), ("customer_records", ERASE_RECORDS),
        ("orders", PSEUDONYMISE_ORDERS), ("outbox_events", PSEUDONYMISE_OUTBOX))}


def keys_per_id(conn: psycopg.Connection) -> dict[str, int]:
    return {key_id: int(n) for key_id, n in conn.execute(KEYS_PER_ID).fetchall()}


def check_keyring(conn: psycopg.Connection, ring: Keyring, *, sample: int = 20) -> None:
    """Refuse a key file that does not hold (or does not decrypt) the keys the data uses."""
    unknown = [k for (k,) in conn.execute(UNKNOWN_KEY_IDS, {"ids": list(ring.key_ids)}).fetchall()]
    if unknown:
        raise PiiError(f"{ring.path} lacks key(s) {', '.join(sorted(unknown))} that stored data keys use")
    for key_id, wrapped in conn.execute(SAMPLE_KEYS, {"ids": list(ring.key_ids), "limit": sample}).fetchall():
        ring.unwrap(key_id, bytes(wrapped))  # PiiKeyError names the key that does not decrypt


def rewrap_batch(conn: psycopg.Connection, ring: Keyring, *, batch: int = 500) -> int:
    """Re-wrap up to ``batch`` data keys held under other keys with the current one (call in a
    transaction; repeat until 0)."""
    rows = conn.execute(KEYS_NOT_CURRENT, {"current": ring.current, "batch": batch}).fetchall()
    for tenant, customer, key_id, wrapped in rows:
        new_id, new_wrapped = ring.wrap(ring.unwrap(key_id, bytes(wrapped)))
        conn.execute(REWRAP, {"key_id": new_id, "wrapped": new_wrapped, "tenant": tenant, "customer": customer})
    return len(rows)
