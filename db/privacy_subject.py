"""Who a privacy request is about, without naming them: the subject hash.

``audit.privacy_requests.subject_hash`` (V013) is the sha256, in lowercase hex, of
``tenant_id || ':' || customer_id`` (UTF-8): the audit trail can say a customer was erased
without keeping their id. The privacy code writes it with ``subject_hash``; SQL that must
find the orders of a hashed subject (the archive's restore, ``db/archive.py``) uses
``SUBJECT_HASH_SQL``, the same definition in the database.
"""

from __future__ import annotations

import hashlib

# The SQL twin of subject_hash() over columns `tenant_id` and `customer_id` of the row in scope.
SUBJECT_HASH_SQL = "encode(sha256(convert_to(tenant_id || ':' || customer_id, 'UTF8')), 'hex')"
# What an erased customer id becomes in the rows kept (orders.orders.customer_id).
ERASED_PREFIX, ERASED_HASH_CHARS = "erased:", 12


def subject_hash(tenant_id: str, customer_id: str) -> str:
    """sha256 hex of ``tenant_id:customer_id``: the stored name of a privacy request's subject."""
    return hashlib.sha256(f"{tenant_id}:{customer_id}".encode()).hexdigest()


def erased_customer_id(hashed: str) -> str:
    """The customer id an erased customer's kept orders carry: ``erased:`` and 12 hex digits."""
    return ERASED_PREFIX + hashed[:ERASED_HASH_CHARS]
