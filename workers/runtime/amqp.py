"""pika connection set-up: parameters from the URL plus heartbeat, blocked-connection
timeout and a connection name; the exceptions that mean "reconnect"; a queue's depth."""

from __future__ import annotations

import pika
import pika.exceptions

from conveyor.workers.config import Settings

# Everything that means the connection or channel is gone and a new one is needed.
CONNECTION_ERRORS = (
    pika.exceptions.AMQPConnectionError,
    pika.exceptions.AMQPChannelError,
    pika.exceptions.StreamLostError,
    pika.exceptions.ConnectionWrongStateError,
    pika.exceptions.ChannelWrongStateError,
    ConnectionError,
    OSError,
)


def parameters(settings: Settings, *, name: str) -> pika.URLParameters:
    params = pika.URLParameters(settings.amqp_url)
    params.heartbeat = settings.heartbeat_seconds
    # Without it, a publish during a broker memory/disk alarm waits forever.
    params.blocked_connection_timeout = settings.blocked_connection_timeout
    params.connection_attempts = 1
    params.socket_timeout = 5
    params.client_properties = {"connection_name": f"conveyor-{name}"}
    return params


def connect(settings: Settings, *, name: str) -> pika.BlockingConnection:
    return pika.BlockingConnection(parameters(settings, name=name))


def queue_figures(connection: pika.BlockingConnection, queues: list[str]) -> dict[str, tuple[int, int]]:
    """(messages, consumers) of each queue that exists, by passive declares on one channel
    (a missing queue closes the channel with 404: it is left out and a new channel opened)."""
    figures: dict[str, tuple[int, int]] = {}
    channel = connection.channel()
    for name in queues:
        try:
            method = channel.queue_declare(name, passive=True).method
        except pika.exceptions.ChannelClosedByBroker:
            channel = connection.channel()
            continue
        figures[name] = (method.message_count, method.consumer_count)
    if channel.is_open:
        channel.close()
    return figures


def queue_depth(amqp_url: str, queue: str) -> int:
    """Messages ready in ``queue`` (a passive declare on a short-lived connection)."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        return connection.channel().queue_declare(queue, passive=True).method.message_count
    finally:
        connection.close()
