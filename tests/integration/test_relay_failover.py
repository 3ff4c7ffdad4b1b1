"""The relay when things die, on real PostgreSQL and RabbitMQ with relays as real processes:
killed between the broker's confirm and the delete, two relays with the active one killed
mid-burst, and the broker restarted during a burst (a throwaway broker of our own)."""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter

import pytest

from conveyor.devservices import RestartableRabbitMQ
from tests.support.relay import (
    assert_contiguous_in_order,
    change_stock,
    collect,
    current_versions,
    holder_pid,
    lease_holder,
    partner_queue,
    pending,
    relay_process,
    running_relay,
    seed_skus,
)
from tests.support.workers import event_tap, settings_for, stop_process, wait_until

pytestmark = pytest.mark.slow

# Short leases so a standby takes over within a couple of seconds.
FAST = {"lease_seconds": 1.5, "poll_interval": 0.3, "max_reconnect_delay": 0.5}


def test_a_relay_killed_between_confirm_and_delete_publishes_again_with_the_same_message_id(settings):
    # Given three changes and a relay that dies right after the broker confirmed them
    seed_skus(settings.database_url, ["A", "B", "C"])
    with event_tap(settings.amqp_url, exchange="inventory") as tap:
        doomed = relay_process(settings, die_after_confirm=True, **FAST)
        assert doomed.wait(timeout=20) == -signal.SIGKILL
        # Then the partner has them, but the outbox still holds them (nothing was deleted)
        assert pending(settings.database_url) == 3

        # When another relay starts (after the dead one's lease ran out)
        with running_relay(settings, **FAST):
            wait_until(lambda: pending(settings.database_url) == 0, timeout=10, message="outbox drained")
            received = collect(settings.amqp_url, tap, expect=3, settle_s=0.5)

    # Then each change arrived twice with the same message_id and the same body
    assert Counter(m.message_id for m in received) == {m.message_id: 2 for m in received}
    assert len({m.message_id for m in received}) == 3
    by_id: dict[str, list[dict]] = {}
    for m in received:
        by_id.setdefault(m.message_id, []).append(m.body)
    assert all(first == again for first, again in by_id.values())


def test_two_relays_publish_each_change_once_in_order_and_the_standby_takes_over(settings):
    # Given two relay processes (small batches, so any overlap between them would show)
    skus = [f"SKU-{n:02d}" for n in range(20)]
    seed_skus(settings.database_url, skus)
    with event_tap(settings.amqp_url, exchange="inventory") as tap:
        relays = [relay_process(settings, batch_size=20, **FAST) for _ in range(2)]
        try:
            wait_until(lambda: pending(settings.database_url) == 0, timeout=15, message="seed published")
            first_holder, _ = lease_holder(settings.database_url)

            # When both run through a stream of changes
            change_stock(settings.database_url, skus, 300, pause_s=0.002)
            wait_until(lambda: pending(settings.database_url) == 0, message="stream published")
            healthy = collect(settings.amqp_url, tap, expect=320)

            # Then one relay published everything, each change exactly once, in order per SKU
            assert lease_holder(settings.database_url)[0] == first_holder
            assert len(healthy) == len({m.message_id for m in healthy}) == 320
            assert_contiguous_in_order(healthy, expected_last=current_versions(settings.database_url))

            # When the active relay is killed in the middle of a burst
            writer = threading.Thread(target=change_stock, args=(settings.database_url, skus, 600),
                                      kwargs={"pause_s": 0.003})
            writer.start()
            time.sleep(0.5)
            active = next(p for p in relays if p.pid == holder_pid(first_holder))
            active.send_signal(signal.SIGKILL)
            writer.join()

            # Then the standby takes the lease and publishes the rest: nothing lost, in order
            wait_until(lambda: lease_holder(settings.database_url)[0] not in (None, first_holder),
                       timeout=10, message="standby took over")
            wait_until(lambda: pending(settings.database_url) == 0, timeout=15, message="burst published")
            after = collect(settings.amqp_url, tap, expect=600)
        finally:
            for process in relays:
                stop_process(process, timeout=20)

    assert len({m.message_id for m in after}) == 600
    assert_contiguous_in_order(healthy + after, expected_last=current_versions(settings.database_url))
    # Repeats only from the batch the killed relay had in flight
    assert len(after) - 600 <= 20


def test_a_broker_restart_during_a_burst_loses_nothing(database_url):
    with RestartableRabbitMQ() as broker:
        # Given a relay publishing to a broker we can restart, and a durable partner queue
        settings = settings_for(database_url, broker.amqp_url)
        skus = [f"SKU-{n:02d}" for n in range(20)]
        seed_skus(database_url, skus)
        with partner_queue(broker.amqp_url) as tap, running_relay(settings, **FAST) as relay:
            # When the broker restarts in the middle of a burst of changes
            writer = threading.Thread(target=change_stock, args=(database_url, skus, 500),
                                      kwargs={"pause_s": 0.002})
            writer.start()
            wait_until(lambda: relay.published > 100, message="relay publishing")
            broker.stop()
            broker.start()
            writer.join()
            wait_until(lambda: pending(database_url) == 0, timeout=20, message="burst published")
            received = collect(broker.amqp_url, tap, expect=520)

        # Then every change arrived (some more than once), in order per SKU
        assert relay.connections >= 2
        assert len({m.message_id for m in received}) == 520
        assert_contiguous_in_order(received, expected_last=current_versions(database_url))
