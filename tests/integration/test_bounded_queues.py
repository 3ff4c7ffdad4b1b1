"""Bounded inbound queues (issue 13) on a real RabbitMQ with its management API (a throwaway
node from the installed binaries): past the bound a publisher with confirms is refused, and
every message the broker confirmed is processed, nothing else."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pika
import pika.exceptions
import pytest

from conveyor.devservices import RestartableRabbitMQ
from tests.support.workers import ROOT, order_body, running_workers, scalar, set_stock, settings_for, wait_until

pytestmark = pytest.mark.slow


def publish_each(amqp_url: str, bodies: list[dict]) -> tuple[list[str], list[str]]:
    """Publish one at a time with confirms: (order ids confirmed, order ids refused)."""
    confirmed, refused = [], []
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        for body in bodies:
            properties = pika.BasicProperties(message_id=str(uuid.uuid4()), content_type="application/json",
                                              type="order.created", delivery_mode=2)
            try:
                channel.basic_publish("orders", "order.created", json.dumps(body).encode(), properties,
                                      mandatory=True)
                confirmed.append(body["order_id"])
            except pika.exceptions.NackError:
                refused.append(body["order_id"])
    finally:
        connection.close()
    return confirmed, refused


def test_past_the_bound_publishes_are_refused_and_every_confirmed_order_is_processed(database_url):
    with RestartableRabbitMQ(management=True) as broker:
        settings = settings_for(database_url, broker.amqp_url)
        set_stock(database_url, "A", 1_000)
        # Given the inbound queues bounded to 50 messages by the policy `topology declare` applies
        env = {**os.environ, "CONVEYOR_DATABASE_URL": database_url, "CONVEYOR_AMQP_URL": broker.amqp_url,
               "CONVEYOR_QUEUE_MAX_LENGTH": "50", "CONVEYOR_MANAGEMENT_URL": broker.management_url or ""}
        declared = subprocess.run([sys.executable, "-m", "conveyor", "topology", "declare", "--json"], env=env,
                                  cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert declared.returncode == 0, declared.stderr
        assert json.loads(declared.stdout)["policy"]["definition"] == {"max-length": 50, "overflow": "reject-publish"}
        policies = broker.rabbitmqctl("list_policies", "--formatter", "json")
        assert "conveyor-inbound-bound" in policies

        # When 80 orders are published while no worker consumes
        bodies = [order_body(("A", 1)) for _ in range(80)]
        confirmed, refused = publish_each(broker.amqp_url, bodies)

        # Then about 50 were confirmed (a quorum queue refuses once it holds more than the bound:
        # measured, it takes the 51st) and the rest refused with a nack
        assert len(confirmed) in (50, 51) and len(confirmed) + len(refused) == 80

        # And once a worker runs, exactly the confirmed orders are processed
        with running_workers(settings, ["orders"]):
            wait_until(lambda: scalar(database_url, "SELECT count(*) FROM orders") == len(confirmed), timeout=30,
                       message="the confirmed orders processed")
        stored = {str(row) for row in _order_ids(database_url)}
        assert stored == set(confirmed)


def _order_ids(database_url: str) -> list:
    import psycopg

    with psycopg.connect(database_url) as conn:
        return [row[0] for row in conn.execute("SELECT order_id FROM orders")]
