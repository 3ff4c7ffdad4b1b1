"""The probes' verdicts and the endpoint's answers, without servers (issue 13)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from conveyor.workers.observability.group import GroupDirectory, write_status_until
from conveyor.workers.observability.health import Health
from conveyor.workers.observability.http import Endpoints


def test_a_fresh_process_is_alive_and_becomes_ready_once_nothing_is_missing():
    health = Health(liveness_timeout=60)
    health.set_problem("schema", "pending migrations: V011")
    health.set_problem("broker:orders", "not consuming yet")
    assert health.liveness().ok
    assert health.readiness().detail == {"missing": {"schema": "pending migrations: V011",
                                                     "broker:orders": "not consuming yet"}}

    health.set_problem("schema", None)
    health.set_problem("broker:orders", None)

    assert health.readiness().ok and health.readiness().detail == {}


def test_a_loop_that_stopped_ticking_or_a_dead_thread_is_not_alive():
    health = Health(liveness_timeout=0.05)
    health.beat("orders-processor")
    time.sleep(0.1)
    assert not health.liveness().ok and "orders-processor" in health.liveness().detail["stale_loops_s"]

    health.forget("orders-processor")  # it ended on purpose
    health.watch_threads(lambda: ["relay"])
    assert health.liveness().detail == {"dead_threads": ["relay"]}


def test_the_endpoint_answers_each_path_with_its_status_and_json():
    health = Health()
    health.set_problem("database:orders", "database unavailable")
    endpoints = Endpoints(metrics=lambda: b"conveyor_ready 0\n", liveness=health.liveness,
                          readiness=health.readiness)

    assert endpoints.answer("/metrics")[::2] == (200, b"conveyor_ready 0\n")
    status, content_type, body = endpoints.answer("/readyz")
    assert (status, content_type) == (503, "application/json")
    assert json.loads(body) == {"status": "not ready", "missing": {"database:orders": "database unavailable"}}
    assert json.loads(endpoints.answer("/healthz")[2]) == {"status": "alive"}
    assert endpoints.answer("/nothing")[0] == 404


def test_a_group_is_ready_only_when_every_child_reports_ready():
    group = GroupDirectory()
    children = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]) for _ in range(2)]
    try:
        assert group.readiness(children).detail["missing"] == {str(c.pid): "no status yet" for c in children}
        for child, ready in zip(children, (True, False), strict=True):
            _fake_status(group, child.pid, ready=ready)
        verdict = group.readiness(children)
        assert not verdict.ok and list(verdict.detail["missing"]) == [str(children[1].pid)]

        _fake_status(group, children[1].pid, ready=True)
        assert group.readiness(children).ok and group.liveness(children).ok

        children[0].kill()
        children[0].wait()
        assert not group.liveness(children).ok and not group.readiness(children).ok
    finally:
        for child in children:
            child.kill()
            child.wait()
        group.remove()


def _fake_status(group: GroupDirectory, pid: int, *, ready: bool) -> None:
    health = Health()
    if not ready:
        health.set_problem("broker:orders", "not consuming yet")
    stop = _SetAfterOne()
    write_status_until(health, stop, directory=str(group.path))
    os.replace(group.path / f"status-{os.getpid()}.json", group.path / f"status-{pid}.json")


class _SetAfterOne:
    """A stop event that is already set: write the status once and return."""

    def wait(self, _timeout: float) -> bool:
        return True
