"""Payments and shipments as received: one row per payment id and per (shipment id, event),
so a repeated message about the same payment or shipment has no second effect."""

from __future__ import annotations

from decimal import Decimal
from uuid import UUID

import psycopg

RECORD_PAYMENT = """
INSERT INTO payments (payment_id, order_id, outcome, amount, currency, detail)
VALUES (%(payment_id)s, %(order_id)s, %(outcome)s, %(amount)s, %(currency)s, %(detail)s)
ON CONFLICT (payment_id) DO NOTHING
RETURNING 1
"""
RECORD_SHIPMENT = """
INSERT INTO shipments (shipment_id, event, order_id, carrier, tracking_reference)
VALUES (%(shipment_id)s, %(event)s, %(order_id)s, %(carrier)s, %(tracking_reference)s)
ON CONFLICT (shipment_id, event) DO NOTHING
RETURNING 1
"""


class FulfilmentRepository:
    def __init__(self, conn: psycopg.Connection) -> None:
        self._conn = conn

    def record_payment(self, payment_id: str, order_id: UUID, *, outcome: str,
                       amount: Decimal | None = None, currency: str | None = None,
                       detail: str | None = None) -> bool:
        """False when this payment id was seen before."""
        row = self._conn.execute(RECORD_PAYMENT, {
            "payment_id": payment_id, "order_id": order_id, "outcome": outcome, "amount": amount,
            "currency": currency, "detail": detail})
        return row.fetchone() is not None

    def record_shipment(self, shipment_id: str, event: str, order_id: UUID, *,
                        carrier: str | None = None, tracking_reference: str | None = None) -> bool:
        """False when this (shipment id, event) was seen before. ``tracking_reference`` is the
        message's ``tracking_number`` (the column was renamed by V015-V017; the message kept its name)."""
        row = self._conn.execute(RECORD_SHIPMENT, {
            "shipment_id": shipment_id, "event": event, "order_id": order_id, "carrier": carrier,
            "tracking_reference": tracking_reference})
        return row.fetchone() is not None
