"""RabbitMQ exchange names, defined once: every Python module imports them from here.

(The database spells ``inventory`` in SQL too: the ``stock_movements_changes`` trigger (V011)
writes the rows the relay publishes there; V003/V007 before it.)
"""

from __future__ import annotations

# What partners publish to Conveyor (consumed).
ORDERS_EXCHANGE = "orders"
PAYMENTS_EXCHANGE = "payments"
SHIPMENTS_EXCHANGE = "shipments"
# What Conveyor publishes (through the outbox relay).
ORDER_EVENTS_EXCHANGE = "order-events"
INVENTORY_EXCHANGE = "inventory"

INBOUND_EXCHANGES = (ORDERS_EXCHANGE, PAYMENTS_EXCHANGE, SHIPMENTS_EXCHANGE)
OUTBOUND_EXCHANGES = (ORDER_EVENTS_EXCHANGE, INVENTORY_EXCHANGE)
