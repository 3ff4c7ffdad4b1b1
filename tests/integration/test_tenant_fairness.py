"""Tenant fairness on real RabbitMQ and PostgreSQL (issue 13): a shop flooding the queue past
its rate is deferred, not dead-lettered; the other shops' orders go ahead; every order of the
flood completes, and no deferral spends an attempt."""

from __future__ import annotations

import psycopg
import pytest

from conveyor.workers.runtime.topology import dlq_name
from tests.support.workers import (
    order_body,
    publish_orders,
    queue_depth,
    running_workers,
    scalar,
    set_stock,
    wait_until,
)


def commit_times(database_url: str, tenant: str) -> list:
    with psycopg.connect(database_url) as conn:
        return [row[0] for row in conn.execute(
            "SELECT created_at FROM orders WHERE tenant_id = %s ORDER BY created_at", (tenant,))]


@pytest.mark.settings(tenant_rate_limits="flood=10,*=1000", max_attempts=2)
def test_a_flooding_shop_waits_in_line_while_the_others_go_ahead(settings):
    # Given stock for two shops, and a limit of 10 orders/s for the one that floods
    for tenant in ("flood", "calm"):
        set_stock(settings.database_url, "A", 10_000, tenant=tenant)
    with running_workers(settings, ["orders"]) as supervisor:
        # When the flooding shop sends 60 orders at once, and the calm one 20 right after
        publish_orders(settings.amqp_url, [order_body(("A", 1), tenant_id="flood") for _ in range(60)])
        publish_orders(settings.amqp_url, [order_body(("A", 1), tenant_id="calm") for _ in range(20)])

        # Then every order completes, none through the DLQ
        wait_until(lambda: scalar(settings.database_url, "SELECT count(*) FROM orders") == 80, timeout=60,
                   message="all 80 orders recorded")
        deferred = supervisor.processors[0].stats.outcomes.get("deferred", 0)
    assert queue_depth(settings.amqp_url, dlq_name("conveyor.orders")) == 0
    assert scalar(settings.database_url, "SELECT count(*) FROM orders WHERE status = 'RESERVED'") == 80
    # And the flood was deferred (about once each past its first second), with max_attempts=2
    # it would have been dead-lettered had a deferral counted as an attempt
    assert deferred >= 40
    # And the calm shop finished while the flood was still waiting for its slots
    flood, calm = commit_times(settings.database_url, "flood"), commit_times(settings.database_url, "calm")
    assert calm[-1] < flood[40]
    # And the flood kept to its rate: its last orders ran at about 10/s, ~5 s after the first
    assert (flood[-1] - flood[0]).total_seconds() >= 3.5
