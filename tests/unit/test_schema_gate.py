"""The safe-start gate's loop (runtime/schema_gate.py), with a scripted schema check."""

from __future__ import annotations

import threading

from conveyor.db.errors import DatabaseError
from conveyor.db.migrate import SchemaCheck
from conveyor.workers.runtime.schema_gate import wait_until_migrated


def scripted(*results):
    calls = iter(results)

    def check(_url: str) -> SchemaCheck:
        result = next(calls)
        if isinstance(result, Exception):
            raise result
        return result
    return check


PENDING = SchemaCheck(pending=["V009__outbox_rotation.sql"], modified=[], ahead=[])
READY = SchemaCheck(pending=[], modified=[], ahead=[])


def test_waits_while_migrations_are_pending_then_returns_true(capsys):
    check = scripted(PENDING, PENDING, DatabaseError("connection refused"), DatabaseError("connection refused"),
                     PENDING, READY)
    assert wait_until_migrated("db", stop=threading.Event(), interval=0.001, check=check)
    out = capsys.readouterr().out
    # one line per change of state, not one per check; a failing check every time
    assert out.count("schema_not_ready") == 2 and out.count("schema_check_failed") == 2
    assert "V009__outbox_rotation.sql" in out and "schema_ready" in out


def test_a_database_ahead_of_the_code_is_accepted_with_a_warning(capsys):
    ahead = SchemaCheck(pending=[], modified=[], ahead=["V099__newer.sql"])
    assert wait_until_migrated("db", stop=threading.Event(), interval=0.001, check=scripted(ahead))
    assert "schema_ahead_of_code" in capsys.readouterr().out


def test_an_edited_migration_keeps_the_worker_waiting_until_stopped():
    stop = threading.Event()
    edited = SchemaCheck(pending=[], modified=["V001__create_inventory.sql"], ahead=[])
    timer = threading.Timer(0.05, stop.set)
    timer.start()
    assert not wait_until_migrated("db", stop=stop, interval=0.005, check=lambda _url: edited)
