"""Publish one order.created with the kit's publisher (docs/clients.md).

    CONVEYOR_AMQP_URL=amqp://guest:guest@localhost:5672/%2F python publish_order.py SKU-1 2

Prints the order id and the message id. The document is checked by the worker's own parser
first: a document a worker would dead-letter raises DocumentRefused and nothing is sent.
"""

from __future__ import annotations

import os
import sys
import uuid
from datetime import datetime, timezone

from conveyor.workers.kit.publisher import ConveyorPublisher, DocumentRefused, NotDelivered


def main(argv: list[str]) -> int:
    sku, quantity = argv[0], int(argv[1])
    order = {
        "order_id": str(uuid.uuid4()),
        "tenant_id": os.environ.get("SHOP_TENANT", "default"),
        "customer_id": "customer-42",
        "currency": "EUR",
        "items": [{"sku": sku, "quantity": quantity, "unit_price": "19.90"}],  # money as a string
        "placed_at": datetime.now(timezone.utc).isoformat(),
    }
    with ConveyorPublisher(os.environ["CONVEYOR_AMQP_URL"]) as publisher:
        try:
            # Keep the message id with the order: re-sending it with the same id is harmless.
            message_id = publisher.order_created(order)
        except DocumentRefused as refused:
            print(f"refused: {refused.verdict.reason}", file=sys.stderr)
            return 1
        except NotDelivered as error:  # nacked (queue full) or no queue bound: try again later
            print(f"not delivered: {error}", file=sys.stderr)
            return 1
    print(f"order_id={order['order_id']} message_id={message_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
