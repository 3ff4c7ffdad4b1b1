"""What Conveyor publishes on the ``inventory`` exchange for integration partners: one
``stock.changed`` message per change of a SKU's stock, and its routing key.

Routing key ``stock.changed.<tenant>.<sku>``: each part is exactly one topic word, so a
partner binds ``stock.changed.shop-1.*`` (a tenant), ``stock.changed.*.SKU-1`` (a SKU in
every tenant) or ``stock.changed.shop-1.SKU-1``. Letters, digits, ``_`` and ``-`` stay as
they are; every other character becomes ``%XX`` per UTF-8 byte (``.`` → ``%2E``, space →
``%20``, ``*`` → ``%2A``, ``#`` → ``%23``). A key longer than AMQP's 255 bytes carries
``=`` and 32 hex digits of the SKU's SHA-256 instead of the SKU. The database builds the
same key (``conveyor_stock_routing_key`` in V003); a test holds the two together.
"""

from __future__ import annotations

import hashlib

from pydantic import BaseModel, Field

from conveyor.schemas.names import INVENTORY_EXCHANGE
from conveyor.schemas.types import MESSAGE_CONFIG, Reason, Sku, TenantId, Timestamp

EXCHANGE = INVENTORY_EXCHANGE
MESSAGE_TYPE = "stock.changed"
ROUTING_KEY_TEMPLATE = "stock.changed.{tenant}.{sku}"
MAX_ROUTING_KEY_BYTES = 255
_KEPT = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


def routing_word(text: str) -> str:
    """One topic word: letters, digits, '_' and '-' kept, anything else %XX per UTF-8 byte."""
    return "".join(c if c in _KEPT else "".join(f"%{b:02X}" for b in c.encode()) for c in text)


def routing_key(tenant_id: str, sku: str) -> str:
    prefix = f"stock.changed.{routing_word(tenant_id)}."
    key = prefix + routing_word(sku)
    if len(key.encode()) <= MAX_ROUTING_KEY_BYTES:
        return key
    return prefix + "=" + hashlib.sha256(sku.encode()).hexdigest()[:32]


class StockChanged(BaseModel):
    """``stock.changed.<tenant>.<sku>`` (exchange ``inventory``): a SKU's stock level right
    after one change, whoever made it. At least once (de-duplicate by ``message_id``), in
    order per SKU; ``version`` grows by exactly one per change, so a gap means a missed
    change and a version at or below the last one applied is a repeat."""

    model_config = MESSAGE_CONFIG

    sku: Sku
    tenant_id: TenantId
    on_hand: int = Field(ge=0, description="units in the warehouse")
    reserved: int = Field(ge=0, description="units held for orders not yet shipped")
    available: int = Field(ge=0, description="on_hand - reserved: what can still be ordered")
    version: int = Field(ge=1, description="1 when the SKU's stock was created, +1 per change")
    occurred_at: Timestamp = Field(description="when the change was written (UTC)")
    cause: Reason | None = Field(
        default=None,
        description="what made the change, when known: e.g. 'order.reserved:<order id>', "
                    "'stock-set:<id>'; 'direct-sql' for a change made outside Conveyor")
