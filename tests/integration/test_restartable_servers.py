"""The servers a fault test may crash (workers/devservices.py): a PostgreSQL stopped the way a
crash stops it comes back on the same port with every committed row, and rabbitmqctl
reaches our own broker node (never the machine's)."""

from __future__ import annotations

import json

import pika
import psycopg
import pytest

from conveyor.devservices import RestartablePostgres, RestartableRabbitMQ

pytestmark = pytest.mark.slow


def test_a_postgres_stopped_immediately_restarts_on_its_port_with_every_committed_row():
    with RestartablePostgres() as server:
        # Given a committed row
        with psycopg.connect(server.database_url, autocommit=True) as conn:
            conn.execute("CREATE TABLE t (n int)")
            conn.execute("INSERT INTO t VALUES (1)")
        port = server.port

        # When the server is stopped like a crash (no shutdown checkpoint) and started again
        server.stop(mode="immediate")
        assert not server.running
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(server.database_url, connect_timeout=2)
        server.start()

        # Then it recovered the row from its WAL, on the same port
        assert server.port == port
        with psycopg.connect(server.database_url) as conn:
            assert conn.execute("SELECT n FROM t").fetchall() == [(1,)]


def test_rabbitmqctl_raises_and_clears_a_memory_alarm_on_our_own_node():
    with RestartableRabbitMQ() as broker:
        # When the memory watermark is set below what the node uses
        broker.rabbitmqctl("set_vm_memory_high_watermark", "0.0000001")
        alarms = broker.rabbitmqctl("eval", "rabbit_alarm:get_alarms().")
        status = json.loads(broker.rabbitmqctl("status", "--formatter", "json"))
        broker.rabbitmqctl("set_vm_memory_high_watermark", "0.4")

        # Then that node (and no other) raised a memory alarm, and lifting it clears it
        assert "resource_limit,memory" in alarms and status["pid"]
        assert broker.node in alarms
        assert broker.rabbitmqctl("eval", "rabbit_alarm:get_alarms().").strip() == "[]"
        connection = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
        connection.close()
