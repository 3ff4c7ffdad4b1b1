"""A shop's integration test against a real Conveyor on throwaway servers (docs/clients.md).

    pytest -p conveyor.workers.kit.pytest_plugin docs/examples/conveyor_service_test.py

Servers: CONVEYOR_DATABASE_URL/CONVEYOR_AMQP_URL if they answer, else containers, else local
binaries; each test gets a fresh database and vhost.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone


def test_an_order_we_publish_is_reserved(conveyor_service):
    conveyor_service.set_stock("SKU-1", 5)
    order_id = str(uuid.uuid4())

    conveyor_service.publisher.order_created({
        "order_id": order_id, "customer_id": "customer-42", "currency": "EUR",
        "items": [{"sku": "SKU-1", "quantity": 2, "unit_price": "19.90"}],
        "placed_at": datetime.now(timezone.utc).isoformat()})

    shown = conveyor_service.wait_for_order(order_id)
    assert shown["status"] == "RESERVED"
    assert conveyor_service.stock("SKU-1")["reserved"] == 2
