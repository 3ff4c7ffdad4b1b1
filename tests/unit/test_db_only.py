"""The database-only yardstick's pure parts (bench/db_only.py): grouping recorded statements
into transaction blocks, the deliveries built from the benchmark's bodies, and sending a
recorded block (against a fake connection). The recording and replay themselves run in
``python -m bench.db_only``."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any

import pytest

from bench import db_only, harness
from conveyor.workers.bootstrap import WORKERS
from conveyor.workers.config import load_settings
from conveyor.workers.runtime.messages import parse_delivery


def _statement(name: str, rowcount: int = 1) -> db_only.Statement:
    return db_only.Statement(f"SELECT {name}", {"x": name}, rowcount)


def test_statements_are_grouped_by_transaction_with_savepoints_nested() -> None:
    recorder = db_only.Recorder()
    recorder.statement(_statement("outside"))
    with recorder.block():
        recorder.statement(_statement("a"))
        with pytest.raises(ValueError), recorder.block():
            recorder.statement(_statement("b"))
            raise ValueError("savepoint rolled back")
        recorder.statement(_statement("c"))
    with pytest.raises(ValueError), recorder.block():
        raise ValueError("transaction rolled back")

    outside, batch, failed = recorder.blocks
    assert not outside.explicit and outside.statements() == 1
    assert batch.explicit and batch.committed and batch.statements() == 3
    assert [type(step).__name__ for step in batch.steps] == ["Statement", "Block", "Statement"]
    assert not batch.steps[1].committed  # type: ignore[union-attr]
    assert not failed.committed


def test_a_forced_rollback_is_not_a_commit() -> None:
    recorder = db_only.Recorder()
    with recorder.block(rolls_back=True):
        recorder.statement(_statement("a"))
    assert not recorder.blocks[0].committed


def test_deliveries_carry_what_the_benchmark_publishes_and_the_worker_parses() -> None:
    bodies = [harness.order(["SKU-1", "SKU-2"]), harness.order(["SKU-3"])]
    deliveries = db_only.deliveries(bodies)
    assert [d.delivery_tag for d in deliveries] == [1, 2]
    parsed = parse_delivery(deliveries[0], WORKERS[db_only.WORKER], settings=load_settings())
    assert str(parsed.message.order_id) == bodies[0]["order_id"]
    assert parsed.lock_pairs == [("default", "SKU-1"), ("default", "SKU-2")]
    assert len({d.properties.message_id for d in deliveries}) == 2


class _Cursor:
    def __init__(self, rowcount: int) -> None:
        self.rowcount = rowcount


class _Connection:
    """Answers every statement with the row count its name ends in ("SELECT r3": 3 rows)."""

    broken = False

    def __init__(self) -> None:
        self.sent: list[str] = []

    @contextmanager
    def transaction(self) -> Any:
        self.sent.append("BEGIN")
        yield self
        self.sent.append("COMMIT")

    def execute(self, query: str, params: Any, *, prepare: bool | None, binary: bool) -> _Cursor:
        self.sent.append(query)
        return _Cursor(int(query[-1]))


def test_a_block_is_sent_as_recorded_skipping_rolled_back_savepoints_and_counting_mismatches() -> None:
    block = db_only.Block([_statement("r1", 1), db_only.Block([_statement("r2", 2)], committed=False),
                           db_only.Block([_statement("r3", 4)])])
    conn = _Connection()
    mismatched = db_only._send(conn, block)  # type: ignore[arg-type]
    assert conn.sent == ["BEGIN", "SELECT r1", "BEGIN", "SELECT r3", "COMMIT", "COMMIT"]
    assert mismatched == 1
