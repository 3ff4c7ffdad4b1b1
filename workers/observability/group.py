"""One endpoint for a ``conveyor run --processes N`` group.

The parent creates a directory and hands it to every child (``PROMETHEUS_MULTIPROC_DIR`` for
prometheus_client's multiprocess mode, ``CONVEYOR_GROUP_STATUS_DIR`` for the probes); the
children serve no HTTP themselves. Each child writes its samples there (prometheus_client)
and, every second, its two verdicts as ``status-<pid>.json``. The parent serves ``/metrics``
as the sum over the children and answers the probes for the group: alive while every child
runs and reports itself alive, ready while every child reports itself ready.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest, multiprocess

from conveyor.workers.observability.health import Health, Verdict

STATUS_DIR_ENV = "CONVEYOR_GROUP_STATUS_DIR"
METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
STATUS_EVERY_S = 1.0
STALE_AFTER_S = 10.0  # a child that wrote nothing for this long is not ready (it may be stuck)


class GroupDirectory:
    """The parent's side: the shared directory, the children's environment, their status."""

    def __init__(self) -> None:
        self.path = Path(tempfile.mkdtemp(prefix="conveyor-group-"))

    def child_environment(self) -> dict[str, str]:
        return {METRICS_DIR_ENV: str(self.path), STATUS_DIR_ENV: str(self.path), "CONVEYOR_HTTP_PORT": ""}

    def metrics(self) -> bytes:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=str(self.path))
        return generate_latest(registry)

    def child_exited(self, pid: int) -> None:
        multiprocess.mark_process_dead(pid, str(self.path))
        (self.path / f"status-{pid}.json").unlink(missing_ok=True)

    def liveness(self, children: list[subprocess.Popen]) -> Verdict:
        problems = {}
        for child in children:
            status = self._status(child.pid)
            if child.poll() is not None:
                problems[str(child.pid)] = f"exited with {child.returncode}"
            elif status is not None and not status["live"]["ok"]:
                problems[str(child.pid)] = status["live"]["detail"]
        return Verdict(not problems, {"children": problems} if problems else {"children": len(children)})

    def readiness(self, children: list[subprocess.Popen]) -> Verdict:
        problems: dict[str, object] = {}
        now = time.time()
        for child in children:
            status = self._status(child.pid)
            if child.poll() is not None:
                problems[str(child.pid)] = f"exited with {child.returncode}"
            elif status is None:
                problems[str(child.pid)] = "no status yet"
            elif now - status["written_at"] > STALE_AFTER_S:
                problems[str(child.pid)] = f"no status for {now - status['written_at']:.0f}s"
            elif not status["ready"]["ok"]:
                problems[str(child.pid)] = status["ready"]["detail"].get("missing", status["ready"]["detail"])
        return Verdict(not problems, {"missing": problems} if problems else {})

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    def _status(self, pid: int) -> dict | None:
        try:
            return json.loads((self.path / f"status-{pid}.json").read_text())
        except (OSError, ValueError):
            return None


def write_status_until(health: Health, stop: threading.Event, *, directory: str) -> None:
    """The child's side: write this process's verdicts every second until ``stop``."""
    target = Path(directory) / f"status-{os.getpid()}.json"
    while True:
        live, ready = health.liveness(), health.readiness()
        document = {"pid": os.getpid(), "written_at": time.time(),
                    "live": {"ok": live.ok, "detail": live.detail},
                    "ready": {"ok": ready.ok, "detail": ready.detail}}
        temporary = target.with_suffix(".tmp")
        temporary.write_text(json.dumps(document))
        temporary.replace(target)  # readers never see half a file
        if stop.wait(STATUS_EVERY_S):
            return
