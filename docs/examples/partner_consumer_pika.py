"""A partner consuming Conveyor's order events and the inventory topic with pika (docs/clients.md).

    CONVEYOR_AMQP_URL=amqp://... python partner_consumer_pika.py [--queue NAME] [--max N] [--idle SECONDS]

Declares its own durable quorum queue, binds it to `order-events` (every order event) and to
`inventory` (every stock change), prints one JSON line per message, acks after handling, and
stops after --max messages or --idle seconds without one. De-duplicate by message_id: delivery
is at least once.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import pika


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--queue", default="partner-example.pika")
    parser.add_argument("--max", type=int, default=0, help="stop after this many messages (0: never)")
    parser.add_argument("--idle", type=float, default=0, help="stop after this long without a message (0: never)")
    args = parser.parse_args(argv)

    connection = pika.BlockingConnection(pika.URLParameters(os.environ["CONVEYOR_AMQP_URL"]))
    channel = connection.channel()
    channel.queue_declare(args.queue, durable=True, arguments={"x-queue-type": "quorum"})
    channel.queue_bind(args.queue, "order-events", routing_key="order.*")
    channel.queue_bind(args.queue, "inventory", routing_key="stock.changed.#")
    channel.basic_qos(prefetch_count=50)
    print(json.dumps({"ready": args.queue}), flush=True)

    seen: set[str] = set()  # a real partner keeps this (or the last stock version per SKU) durably
    handled = 0
    for method, properties, body in channel.consume(args.queue, inactivity_timeout=args.idle or None):
        if method is None:
            break  # idle
        if properties.message_id not in seen:
            seen.add(properties.message_id)
            print(json.dumps({"exchange": method.exchange, "routing_key": method.routing_key,
                              "message_id": properties.message_id, "type": properties.type,
                              "content_type": properties.content_type, "correlation_id": properties.correlation_id,
                              "headers": properties.headers or {}, "body": json.loads(body)}), flush=True)
        channel.basic_ack(method.delivery_tag)
        handled += 1
        if args.max and handled >= args.max:
            break
    channel.cancel()
    connection.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
