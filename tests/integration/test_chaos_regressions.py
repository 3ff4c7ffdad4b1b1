"""Regressions found by the chaos harness (tests/chaos), each reproduced here without it."""

from __future__ import annotations

from contextlib import contextmanager

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


def test_a_batch_whose_commit_answer_is_lost_is_retried_and_recognised_as_already_done(database_url, monkeypatch):
    # Given a batch of two orders whose COMMIT reaches the server and commits, but whose answer
    # never comes back (the primary died between its commit and its reply: a failover)
    import psycopg

    from conveyor.db.errors import translate
    from conveyor.workers.runtime import processor as processor_module

    set_stock(database_url, "A", 10)
    processor = order_processor(database_url)
    real_transaction = processor_module.transaction
    lost = []

    @contextmanager
    def commit_then_lose_the_answer(conn):
        with real_transaction(conn) as inner:
            yield inner
        if not lost:  # the outermost block committed: now the connection dies
            lost.append(conn.info.backend_pid)
            conn.close()
            raise translate(psycopg.OperationalError("server closed the connection unexpectedly"),
                            connection_broken=True)

    monkeypatch.setattr(processor_module, "transaction", commit_then_lose_the_answer)
    bodies = [order_body(("A", 1)), order_body(("A", 2))]

    # When the processor runs it (the outcome of the COMMIT is unknown: an outage)
    processor.process([created_delivery(1, bodies[0]), created_delivery(2, bodies[1])])
    processor.db.close()

    # Then it waited the outage out and ran the batch again, which the inbox recognised as
    # done: both acked as duplicates, each order stored once, its stock reserved once
    assert lost, "the commit's answer was not lost"
    assert processor.stats.outcomes == {"duplicate_message": 2}
    assert all(s.copy_to_queue is None and not s.requeue for s in processor.consumer.settled)
    with psycopg.connect(database_url, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM orders").fetchone()[0] == 2
        assert conn.execute("SELECT count(*) FROM inbox").fetchone()[0] == 2
        assert conn.execute("SELECT reserved FROM stock_levels WHERE sku = 'A'").fetchone()[0] == 3
        assert conn.execute("SELECT count(*) FROM outbox WHERE routing_key = 'order.reserved'").fetchone()[0] == 2
