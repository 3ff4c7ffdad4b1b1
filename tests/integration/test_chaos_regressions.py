"""Regressions found by the chaos harness (tests/chaos), each reproduced here without it."""

from __future__ import annotations

from tests.support.workers import created_delivery, order_body, order_processor, set_stock


def test_a_redelivered_batch_of_orders_all_processed_before_stays_on_the_set_based_path(database_url):
    # Given two orders processed as one batch, whose ack was lost (a worker killed between
    # commit and ack, a reset broker connection): the broker delivers the same batch again
    set_stock(database_url, "A", 10)
    processor = order_processor(database_url)
    bodies = [order_body(("A", 1)), order_body(("A", 2))]
    processor.process([created_delivery(1, bodies[0]), created_delivery(2, bodies[1])])

    # When the redelivered batch is processed
    processor.process([created_delivery(3, bodies[0], redelivered=True),
                       created_delivery(4, bodies[1], redelivered=True)])
    processor.db.close()

    # Then both are acknowledged as duplicates by the set-based path itself: the batch
    # handler is not run on nothing (it used to fail and fall back message by message)
    assert processor.stats.outcomes == {"reserved": 2, "duplicate_message": 2}
    assert processor.stats.batch_fallbacks == 0
    assert all(s.copy_to_queue is None and not s.requeue for s in processor.consumer.settled)
