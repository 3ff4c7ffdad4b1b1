"""The same partner consumer with aio-pika (asyncio), to show nothing in the contract is pika's.

    CONVEYOR_AMQP_URL=amqp://... python partner_consumer_aio_pika.py [--queue NAME] [--max N] [--idle SECONDS]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys

import aio_pika


async def consume(amqp_url: str, *, queue_name: str, max_messages: int, idle: float) -> None:
    connection = await aio_pika.connect_robust(amqp_url)  # reconnects and re-binds by itself
    async with connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=50)
        queue = await channel.declare_queue(queue_name, durable=True, arguments={"x-queue-type": "quorum"})
        await queue.bind("order-events", routing_key="order.*")
        await queue.bind("inventory", routing_key="stock.changed.#")
        print(json.dumps({"ready": queue_name}), flush=True)
        seen: set[str] = set()
        handled = 0
        async with queue.iterator(timeout=idle or None) as messages:
            try:
                async for message in messages:
                    async with message.process():  # ack when the block ends, reject on an exception
                        if message.message_id not in seen:
                            seen.add(message.message_id or "")
                            print(json.dumps({
                                "exchange": message.exchange, "routing_key": message.routing_key,
                                "message_id": message.message_id, "type": message.type,
                                "content_type": message.content_type, "correlation_id": message.correlation_id,
                                "delivery_mode": int(message.delivery_mode or 0), "app_id": message.app_id,
                                "headers": {k: str(v) for k, v in (message.headers or {}).items()},
                                "body": json.loads(message.body)}), flush=True)
                    handled += 1
                    if max_messages and handled >= max_messages:
                        break
            except asyncio.TimeoutError:
                pass  # idle


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--queue", default="partner-example.aio-pika")
    parser.add_argument("--max", type=int, default=0, help="stop after this many messages (0: never)")
    parser.add_argument("--idle", type=float, default=0, help="stop after this long without a message (0: never)")
    args = parser.parse_args(argv)
    asyncio.run(consume(os.environ["CONVEYOR_AMQP_URL"], queue_name=args.queue, max_messages=args.max,
                        idle=args.idle))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
