"""The reference the benchmark compares Conveyor with: a plain pika consumer doing one
transaction and one ack per message, with the same SQL as the order worker (inbox claim,
advisory locks, the same handler). Run: python -m bench.reference_consumer (env: CONVEYOR_*).
"""

from __future__ import annotations

import signal
import uuid

import pika

from conveyor.db.connection import connect
from conveyor.db.locks import lock_stock
from conveyor.db.uow import PostgresUnitOfWork
from conveyor.schemas.orders import OrderCreated
from conveyor.schemas.parsing import parse_message
from conveyor.workers.config import load_settings
from conveyor.workers.handlers.orders import handle_order_created, lock_pairs
from conveyor.workers.runtime.spec import HandlerContext


def main() -> None:
    settings = load_settings()
    conn = connect(settings.database_url)
    connection = pika.BlockingConnection(pika.URLParameters(settings.amqp_url))
    channel = connection.channel()
    channel.basic_qos(prefetch_count=50)

    def on_message(ch, method, properties, body) -> None:
        message = parse_message(body, OrderCreated, max_bytes=settings.max_message_bytes)
        ctx = HandlerContext(message_id=properties.message_id or str(uuid.uuid4()),
                             routing_key=method.routing_key, attempt=1,
                             default_tenant=settings.default_tenant)
        with conn.transaction():
            uow = PostgresUnitOfWork(conn)
            lock_stock(conn, lock_pairs(message, ctx))
            if uow.inbox.claim(ctx.message_id, handler="reference"):
                handle_order_created(message, uow, ctx)
        ch.basic_ack(method.delivery_tag)

    channel.basic_consume("conveyor.orders", on_message)
    signal.signal(signal.SIGTERM, lambda *_: channel.stop_consuming())
    channel.start_consuming()
    connection.close()


if __name__ == "__main__":
    main()
